"""``POST /v1/devices/{device_id}/summaries``: a device in aggregates-only mode lands one summary document.

A summary is one JSON object (counts, histograms, accuracy: whatever the runner aggregates instead of
sending rows). Checks, cheapest first: auth (hub.auth: 401/403, device id 422), ``Idempotency-Key`` is
64 lowercase hex (422 ``bad_key``), ``Content-Type: application/json`` (415), at most
``MAX_SUMMARY_BYTES`` (413, announced or streamed), non-empty (422 ``empty``), key == sha256(body) (422
``key_mismatch``), strict UTF-8 JSON whose top level is an object (422 ``unreadable``).

The body is stored byte for byte at ``data/hub/summaries/<device_id>/<key>.json`` (under the hub
root, ``HubSettings.summaries``): written to a temp file, fsynced, then hard-linked to its name, which
fails if the name exists, so exactly one writer creates it and it never changes afterwards. Same
idempotency as uploads: the first success is 201, the same key again (sequential or racing) is 200 with
the same body and ``"deduplicated": true``; ``stored_at`` is the stored file's modification time.
Leaves out a database table (the file is the record), metrics of its own and reading summaries back
(the cloud reads the folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.atomic import fsync_dir
from edge.contracts.names import is_valid_device_id
from hub.auth import Caller, device_itself
from hub.routes.uploads import EXAMPLE_KEY, KEY_PATTERN, Rejected, UploadError
from hub.settings import HubSettings

router = APIRouter(tags=["uploads"])

MAX_SUMMARY_BYTES = 1 << 20  # 1 MiB: a summary aggregates rows, it is never large
MEDIA_TYPE = "application/json"
EXAMPLE_RESULT: dict[str, Any] = {
    "device_id": "press-07", "summary_id": EXAMPLE_KEY, "bytes": 812,
    "stored_at": "2026-03-01T12:00:00.123456+00:00", "location": f"summaries/press-07/{EXAMPLE_KEY}.json",
    "deduplicated": False,
}


class SummaryResult(BaseModel):
    """What was stored: the same body for the first success (201) and every retry (200)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})

    device_id: str
    summary_id: str = Field(description="sha256 of the body (the Idempotency-Key)")
    bytes: int
    stored_at: str = Field(description="when the summary was first stored (ISO 8601, UTC)")
    location: str = Field(description="logical storage key of the summary, not a server path")
    deduplicated: bool = Field(description="true when this key was already stored (nothing was written again)")


def _error(description: str, detail: str, reason: str) -> dict[str, Any]:
    return {"model": UploadError, "description": description,
            "content": {"application/json": {"example": {"detail": detail, "reason": reason}}}}


OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [{
        "name": "Idempotency-Key", "in": "header", "required": True, "example": EXAMPLE_KEY,
        "description": "sha256 of the body: 64 lowercase hex digits. The same key again is deduplicated.",
        "schema": {"type": "string", "pattern": KEY_PATTERN.pattern, "minLength": 64, "maxLength": 64},
    }],
    "requestBody": {
        "required": True,
        "description": "One summary: a JSON object, stored byte for byte (the key is the sha256 of these bytes).",
        "content": {MEDIA_TYPE: {"schema": {"type": "object"}, "example": {"rows": 5000, "accuracy": 0.93}}},
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SummaryResult, "description": "Already stored: the first success's body, deduplicated=true.",
          "content": {"application/json": {"example": {**EXAMPLE_RESULT, "deduplicated": True}}}},
    401: {"description": "No, a wrong, or a revoked token (same body whatever was wrong)."},
    403: {"description": "The token belongs to another device."},
    413: _error("Body larger than 1 MiB.", "summary larger than 1048576 bytes", "too_large"),
    415: _error("Content-Type is not application/json.", "Content-Type must be application/json", "content_type"),
    422: _error("Bad key, empty body, key/body mismatch, or not a JSON object.",
                "the summary must be a JSON object", "unreadable"),
}


def _check_headers(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None or not KEY_PATTERN.match(key):
        raise Rejected(422, "bad_key", "Idempotency-Key must be the body's sha256: 64 lowercase hex digits")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != MEDIA_TYPE:
        raise Rejected(415, "content_type", f"Content-Type must be {MEDIA_TYPE}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_SUMMARY_BYTES:
        raise Rejected(413, "too_large", f"summary larger than {MAX_SUMMARY_BYTES} bytes")
    return key


async def _read_body(request: Request) -> bytes:
    """The body, refusing (413) as soon as more than MAX_SUMMARY_BYTES arrived."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SUMMARY_BYTES:
            raise Rejected(413, "too_large", f"summary larger than {MAX_SUMMARY_BYTES} bytes")
    return bytes(body)


def _check_body(body: bytes, key: str) -> None:
    if not body:
        raise Rejected(422, "empty", "empty body: send one JSON object")
    if hashlib.sha256(body).hexdigest() != key:
        raise Rejected(422, "key_mismatch", "Idempotency-Key does not match the body's sha256")
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected(422, "unreadable", "the summary is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise Rejected(422, "unreadable", "the summary must be a JSON object")


def _result(path: Path, device_id: str, key: str, deduplicated: bool) -> dict[str, Any]:
    stat = path.stat()
    stored_at = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, UTC).isoformat()
    return {"device_id": device_id, "summary_id": key, "bytes": stat.st_size, "stored_at": stored_at,
            "location": f"summaries/{device_id}/{key}.json", "deduplicated": deduplicated}


def store_summary(folder: Path, device_id: str, key: str, body: bytes) -> tuple[dict[str, Any], bool]:
    """Check and store one summary under ``folder``; (result, created). Blocking: run in a thread."""
    if not is_valid_device_id(device_id) or not KEY_PATTERN.match(key):
        raise ValueError("unsafe device id or key")
    path = folder / device_id / f"{key}.json"
    if path.is_file():
        return _result(path, device_id, key, True), False
    _check_body(body, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)  # fails when the name exists: exactly one racing writer creates it
        except FileExistsError:
            return _result(path, device_id, key, True), False
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return _result(path, device_id, key, False), True


@router.post(
    "/v1/devices/{device_id}/summaries",
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
    settings: HubSettings = request.app.state.settings
    try:
        key = _check_headers(request)
        body = await _read_body(request)
        result, created = await run_in_threadpool(store_summary, settings.summaries, caller.device_id, key, body)
    except Rejected as rejected:
        return JSONResponse({"detail": rejected.detail, "reason": rejected.reason}, status_code=rejected.status)
    return JSONResponse(result, status_code=201 if created else 200)
