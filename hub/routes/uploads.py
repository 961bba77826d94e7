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
its content type. Leaves out resumable uploads.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from edge.contracts.wire import IDEMPOTENCY_KEY, UPLOAD_MEDIA_TYPES, device_path
from hub.auth import Caller, device_itself
from hub.checks.batches import extension_for
from hub.checks.decoding import BoundedBody
from hub.checks.headers import idempotency_key, is_gzip, media_type, within_announced_limit
from hub.checks.refusal import Refused
from hub.intake import Intake
from hub.metrics import HubMetrics
from hub.routes.bodies import read_body, refusal_response
from hub.schemas.uploads import OPENAPI_EXTRA, RESPONSES, UploadResult

router = APIRouter(tags=["uploads"])

WHAT = "batch"


@router.post(
    device_path("{device_id}", "uploads"),
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
async def upload_batch(
    request: Request,
    caller: Caller = Depends(device_itself),  # noqa: B008
) -> JSONResponse:
    """Store one batch for the calling device; see the module docstring for every check and status."""
    intake: Intake = request.app.state.intake
    metrics: HubMetrics = request.app.state.metrics
    limit: int = request.app.state.settings.section.max_upload_bytes
    headers = request.headers
    try:
        key = idempotency_key(headers.get(IDEMPOTENCY_KEY))
        media = media_type(headers.get("content-type"), UPLOAD_MEDIA_TYPES)
        within_announced_limit(headers.get("content-length"), limit, WHAT)
        body = await read_body(request, BoundedBody(limit, WHAT, gzip=is_gzip(headers.get("content-encoding"))))
        result, created = await run_in_threadpool(intake.batch, caller.device_id, key, body, extension_for(media))
    except Refused as refused:
        metrics.uploads.labels("rejected", refused.reason).inc()
        return refusal_response(refused)
    if created:
        metrics.uploads.labels("stored", "").inc()
        metrics.upload_bytes.inc(result.bytes)
        return JSONResponse(result.model_dump(), status_code=201)
    metrics.uploads.labels("deduplicated", "").inc()
    return JSONResponse(result.model_dump(), status_code=200)
