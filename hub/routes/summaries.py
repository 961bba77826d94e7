"""``POST /v1/devices/{device_id}/summaries``: a device in aggregates-only mode lands one summary document.

A summary is one JSON object (counts, histograms, accuracy: whatever the runner aggregates instead of
sending rows). Checks, cheapest first: auth (hub.auth: 401/403, device id 422), ``Idempotency-Key`` is a
sha256 (422 ``bad_key``), ``Content-Type: application/json`` (415), at most ``SUMMARY_MAX_BYTES`` (413,
announced or streamed), then hub.intake: a summary already stored is answered as stored; else non-empty
(422 ``empty``), key == sha256(body) (422 ``key_mismatch``), strict UTF-8 JSON whose top level is an
object (422 ``unreadable``). Same idempotency as uploads: the first success is 201, the same key again
(sequential or racing) is 200 with the same body and ``"deduplicated": true``. Stored byte for byte by
hub.store.summaries. Leaves out metrics of its own and reading summaries back (the cloud reads them).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from edge.contracts.wire import IDEMPOTENCY_KEY, JSON, SUMMARY_MAX_BYTES, device_path
from hub.auth import Caller, device_itself
from hub.checks.decoding import BoundedBody
from hub.checks.headers import idempotency_key, media_type, within_announced_limit
from hub.checks.refusal import Refused
from hub.intake import Intake
from hub.routes.bodies import read_body, refusal_response
from hub.schemas.summaries import OPENAPI_EXTRA, RESPONSES, SummaryResult

router = APIRouter(tags=["uploads"])

WHAT = "summary"


@router.post(
    device_path("{device_id}", "summaries"),
    status_code=201,
    response_model=SummaryResult,
    summary="Upload one summary document (aggregates-only mode, idempotent)",
    description=(
        "Stores one JSON object at `summaries/<device_id>/<sha256>.json`. `Idempotency-Key` must be the body's "
        "sha256. The first success is 201; the same key again returns 200 with the same body and "
        "`deduplicated: true`, never 409. Refusals: 401/403 auth, 413 larger than 1 MiB, 415 not "
        "application/json, 422 bad key, empty body, key mismatch or not a JSON object."
    ),
    responses=RESPONSES,
    openapi_extra=OPENAPI_EXTRA,
)
async def upload_summary(request: Request, caller: Caller = Depends(device_itself)) -> JSONResponse:  # noqa: B008
    """Store one summary for the calling device; see the module docstring for every check and status."""
    intake: Intake = request.app.state.intake
    headers = request.headers
    try:
        key = idempotency_key(headers.get(IDEMPOTENCY_KEY))
        media_type(headers.get("content-type"), (JSON,))
        within_announced_limit(headers.get("content-length"), SUMMARY_MAX_BYTES, WHAT)
        body = await read_body(request, BoundedBody(SUMMARY_MAX_BYTES, WHAT))
        result, created = await run_in_threadpool(intake.summary, caller.device_id, key, body)
    except Refused as refused:
        return refusal_response(refused)
    return JSONResponse(result.model_dump(), status_code=201 if created else 200)
