"""``POST /v1/enroll`` (a device's first certificate, for a one-time code) and ``POST
/v1/devices/{device_id}/certificate`` (renewal, authenticated by the device's current certificate).

Each reads a bounded JSON body itself (``application/json``, at most a CSR's limit plus room for the
code: else 415/413), validates it (422, without echoing what was sent: a code is a secret), and hands it
to hub.enrollment in a worker thread (signing takes a few milliseconds). Enrollment needs no other
credential; renewal needs a client certificate of the path's device (401 without one, 403 for another
device's; a bearer token does not renew). 201 with ``EnrollmentResult`` on success. Leaves out the rules
(hub.enrollment) and issuing codes (hub.registry, the ``edgeloop devices`` CLI).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from edge.contracts.wire import CSR_MAX_BYTES, ENROLL_PATH, JSON, device_path
from hub.auth import Caller, certified_device_itself
from hub.checks.decoding import BoundedBody
from hub.checks.headers import media_type, within_announced_limit
from hub.checks.refusal import Refused
from hub.enrollment import Desk, Enrolled, enroll, renew
from hub.enrollment import Refused as NotIssued
from hub.routes.bodies import read_body, refusal_response
from hub.schemas.enrollment import EnrollmentRequest, EnrollmentResult, RenewalRequest, openapi_body, responses

router = APIRouter(tags=["enrollment"])

BODY_MAX_BYTES = CSR_MAX_BYTES + 2048  # the CSR (JSON-escaped newlines) and the code
WHAT = "enrollment request"
M = TypeVar("M", bound=BaseModel)


def desk(request: Request) -> Desk:
    hub = request.app.state
    return Desk(hub.engine, hub.write_lock, hub.clock, hub.settings.ca_dir, hub.settings.releases,
                timedelta(days=hub.settings.section.tls.device_cert_days))


async def _body(request: Request, model: type[M]) -> M | JSONResponse:
    headers = request.headers
    try:
        media_type(headers.get("content-type"), (JSON,))
        within_announced_limit(headers.get("content-length"), BODY_MAX_BYTES, WHAT)
        raw = await read_body(request, BoundedBody(BODY_MAX_BYTES, WHAT))
    except Refused as refused:
        return refusal_response(refused)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in error["loc"]) or "body" for error in exc.errors()})
        return JSONResponse({"detail": f"not a valid {WHAT}: check {', '.join(fields)} (expected "
                                       f"{sorted(model.model_fields)})"}, status_code=422)


def _answer(enrolled: Enrolled) -> JSONResponse:
    result = EnrollmentResult(device_id=enrolled.device_id, channel=enrolled.channel, certificate=enrolled.certificate,
                              ca=enrolled.ca, trusted_root=enrolled.trusted_root, not_after=enrolled.not_after)
    return JSONResponse(result.model_dump(mode="json"), status_code=201)


@router.post(ENROLL_PATH, status_code=201, response_model=EnrollmentResult,
             summary="Enroll a device: a one-time code and a CSR over its own key get its client certificate",
             responses=responses(401, 409, 413, 415, 422), openapi_extra=openapi_body(EnrollmentRequest))
async def enroll_device(request: Request) -> JSONResponse:
    """The certificate of the device the code was issued to; the code is used up (single use, also when
    two requests race). 401 for an unknown, used or expired code (one body whatever was wrong)."""
    body = await _body(request, EnrollmentRequest)
    if isinstance(body, JSONResponse):
        return body
    try:
        enrolled = await run_in_threadpool(enroll, desk(request), body.code, body.csr)
    except NotIssued as refused:
        return JSONResponse({"detail": refused.detail}, status_code=refused.status)
    return _answer(enrolled)


@router.post(device_path("{device_id}", "certificate"), status_code=201, response_model=EnrollmentResult,
             summary="Renew the calling device's client certificate (authenticated by its current certificate)",
             responses=responses(401, 403, 409, 413, 415, 422), openapi_extra=openapi_body(RenewalRequest))
async def renew_certificate(request: Request, caller: Caller = Depends(certified_device_itself)) -> JSONResponse:  # noqa: B008
    """A new certificate for the calling device; its earlier certificates stay valid until they expire."""
    body = await _body(request, RenewalRequest)
    if isinstance(body, JSONResponse):
        return body
    try:
        enrolled = await run_in_threadpool(renew, desk(request), caller.device_id, caller.channel, body.csr)
    except NotIssued as refused:
        return JSONResponse({"detail": refused.detail}, status_code=refused.status)
    return _answer(enrolled)
