"""``POST /v1/devices/{device_id}/uploads``: a device lands one ground-truth batch (Parquet or CSV) in the hub.

Checks, cheapest first, each refusal counted in ``edgeloop_hub_uploads{outcome="rejected",reason=...}``:
auth (hub.auth: 401/403, device id pattern 422), ``Idempotency-Key`` is a sha256 (422 ``bad_key``),
content type (415 ``content_type``), size from Content-Length and then while streaming (413
``too_large``; reading stops at the limit), ``Content-Encoding`` gzip or absent (415
``content_encoding``; gzip is decoded while it streams and the limit applies to the decoded bytes),
then, in a worker thread so the event loop keeps serving other devices, hub.intake: empty body (422
``empty``), key == sha256(body) (422 ``key_mismatch``), structure against params.yaml's schema (422
``schema``/``unreadable``/``no_rows``, naming the column or the parse problem; hub.checks.batches).

The first success is 201; the same key again (sequential or racing) gets the *same success* (200, the
first response's body plus ``"deduplicated": true``), never 409, so a device that lost an
acknowledgement simply retries. A batch lands as ``uploads/<device_id>/<sha256>.parquet`` or ``.csv`` by
its content type.

The work is ``receive_batch``, in plain ASGI: an upload is the hub's most expensive request, and
hub.hot_paths answers it before FastAPI's routing and dependency solving; the FastAPI route below
documents it (OpenAPI) and answers through the same function. Errors from hub.auth are answered by
FastAPI's own HTTPException handler, so both ways give the same bodies. Leaves out resumable uploads.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from edge.contracts.wire import IDEMPOTENCY_KEY, UPLOAD_MEDIA_TYPES, device_path
from hub.checks.batches import extension_for
from hub.checks.decoding import BoundedBody
from hub.checks.headers import idempotency_key, is_gzip, media_type, within_announced_limit
from hub.checks.refusal import Refused
from hub.intake import Intake
from hub.metrics import HubMetrics
from hub.routes.bodies import read_body, refusal_response
from hub.routes.caller import device_caller
from hub.schemas.uploads import OPENAPI_EXTRA, RESPONSES, UploadResult

__all__ = ["UPLOAD_ROUTE", "receive_batch", "router"]

router = APIRouter(tags=["uploads"])

WHAT = "batch"
UPLOAD_ROUTE = device_path("{device_id}", "uploads")  # the route template (metrics label it so)


async def receive_batch(scope: Scope, receive: Receive, send: Send, device_id: str) -> None:
    """Answer one upload of ``device_id``'s batch; see the module docstring for every check and status."""
    request = Request(scope, receive)
    try:
        caller = await device_caller(request, device_id)
    except HTTPException as refused_caller:
        await (await http_exception_handler(request, refused_caller))(scope, receive, send)
        return
    state = scope["app"].state
    intake: Intake = state.intake
    metrics: HubMetrics = state.metrics
    limit: int = state.settings.section.max_upload_bytes
    headers = request.headers
    try:
        key = idempotency_key(headers.get(IDEMPOTENCY_KEY))
        media = media_type(headers.get("content-type"), UPLOAD_MEDIA_TYPES)
        within_announced_limit(headers.get("content-length"), limit, WHAT)
        body = await read_body(request, BoundedBody(limit, WHAT, gzip=is_gzip(headers.get("content-encoding"))))
        result, created = await run_in_threadpool(intake.batch, caller.device_id, key, body, extension_for(media))
    except Refused as refused:
        metrics.uploads.labels("rejected", refused.reason).inc()
        await refusal_response(refused)(scope, receive, send)
        return
    if created:
        metrics.stored.inc()
        metrics.upload_bytes.inc(result.bytes)
    else:
        metrics.deduplicated.inc()
    await JSONResponse(result.model_dump(), status_code=201 if created else 200)(scope, receive, send)


class _Upload(Response):
    """Answers with ``receive_batch`` when FastAPI sends it."""

    def __init__(self, device_id: str) -> None:
        super().__init__()
        self.device_id = device_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive_batch(scope, receive, send, self.device_id)


@router.post(
    UPLOAD_ROUTE,
    status_code=201,
    response_model=UploadResult,
    summary="Upload one ground-truth batch (idempotent)",
    description=(
        "Lands one batch at `uploads/<device_id>/<sha256>.parquet` (Parquet) or `.csv` (`text/csv`: UTF-8, "
        "header row with every schema column; extra columns allowed). `Idempotency-Key` must be the "
        "body's sha256 (64 lowercase hex). The first success is 201; the same key again (sequential or "
        "racing) returns 200 with the same body and `deduplicated: true`, never 409, and stores nothing "
        "twice. Refusals: 401/403 auth, 413 too large, 415 content type, 422 bad key, empty body, key "
        "mismatch, unreadable Parquet/CSV, no rows or schema mismatch (the detail names the column)."
    ),
    responses=RESPONSES,
    openapi_extra=OPENAPI_EXTRA,
)
async def upload_batch(device_id: str) -> Response:
    """Store one batch for the calling device; see the module docstring for every check and status."""
    return _Upload(device_id)
