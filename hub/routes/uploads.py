"""``POST /v1/devices/{device_id}/uploads``: a device lands one ground-truth batch (Parquet or CSV) in the hub.

Checks, cheapest first, each refusal counted in ``edgeloop_hub_uploads{outcome="rejected",reason=...}``:
auth (hub.auth: 401/403, device id pattern 422), ``Idempotency-Key`` is 64 lowercase hex (422
``bad_key``), content type (415 ``content_type``), size from Content-Length and then while streaming
(413 ``too_large``; reading stops at the limit), empty body (422 ``empty``), key == sha256(body) (422
``key_mismatch``), then a structural check against params.yaml's schema (422 ``schema``/``unreadable``/
``no_rows``, naming the column or the parse problem):

- Parquet (``application/vnd.apache.parquet``, ``application/octet-stream``): only the footer is read:
  every schema column present with a type that can hold it, and at least one row;
- CSV (``text/csv``, what edge runners send: they have no pyarrow): strict UTF-8 (a BOM is allowed), a
  header row naming every schema column once (extra columns such as the record columns or context
  fields are allowed), rows counted with the csv module (quoted newlines are one row; blank lines are
  skipped, as ingest does), no row with more fields than the header, and at least one row.

Values (ranges, classes, timestamps, CSV cell types) are the ingest stage's job, which quarantines bad
batches. A batch lands as ``uploads/<device_id>/<sha256>.parquet`` or ``.csv`` by its content type.

A body may travel gzip-compressed (``Content-Encoding: gzip``, what edge runners send): it is decoded
while it streams in, the size limit applies to the *decoded* bytes (413, so a small bomb cannot expand),
a corrupt or truncated stream is 422 ``unreadable``, another encoding 415. The key, the checks and the
stored file are those of the decoded batch.

Idempotency: the same key again gets the *same success* (200, the first response's body plus
``"deduplicated": true``), never 409, so a device that lost an acknowledgement simply retries. Racing
identical requests are safe: the file is content-addressed and written atomically (identical bytes
whoever wins), then the row is inserted under the UNIQUE (device_id, batch_id) constraint; the loser's
IntegrityError turns into the deduplicated success. Hashing, parsing, fsync and SQL run in the
threadpool so the event loop keeps serving other devices. Leaves out resumable uploads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from edge.contracts.schema import DataSchema
from hub.auth import Caller, device_itself
from hub.db import Upload, utc_now
from hub.metrics import HubMetrics
from hub.settings import HubSettings
from hub.storage import BatchStorage, LocalStorage

router = APIRouter(tags=["uploads"])

KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CSV = "text/csv"
MEDIA_TYPES: tuple[str, ...] = ("application/vnd.apache.parquet", "application/octet-stream", CSV)
EXAMPLE_KEY = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
EXAMPLE_RESULT: dict[str, Any] = {
    "device_id": "press-07", "batch_id": EXAMPLE_KEY, "bytes": 48213, "rows": 1000,
    "stored_at": "2026-03-01T12:00:00.123456+00:00", "location": f"uploads/press-07/{EXAMPLE_KEY}.parquet",
    "deduplicated": False,
}


class Rejected(Exception):
    """An upload refused with ``status``; ``reason`` is the metric label, ``detail`` the message."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class UploadResult(BaseModel):
    """What was stored: the same body for the first success (201) and every retry (200)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})

    device_id: str
    batch_id: str = Field(description="sha256 of the body (the Idempotency-Key)")
    bytes: int
    rows: int
    stored_at: str = Field(description="when the batch was first stored (ISO 8601, UTC)")
    location: str = Field(description="logical storage key of the batch, not a server path")
    deduplicated: bool = Field(description="true when this key was already stored (nothing was written again)")


class UploadError(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"detail": "Idempotency-Key does not match the body's sha256", "reason": "key_mismatch"}
    ]})

    detail: str
    reason: str | None = Field(None, description="machine-readable cause (absent on auth and id errors)")


@dataclass(frozen=True)
class Stored:
    result: dict[str, Any]
    created: bool


def _error(status: int, description: str, detail: str, reason: str) -> dict[str, Any]:
    example = {"detail": detail, "reason": reason}
    return {"model": UploadError, "description": description,
            "content": {"application/json": {"example": example}}}


BINARY = {"schema": {"type": "string", "format": "binary"}}
OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [{  # read from request.headers so that a bad key is refused (and counted) by this route
        "name": "Idempotency-Key", "in": "header", "required": True, "example": EXAMPLE_KEY,
        "description": "sha256 of the body: 64 lowercase hex digits. The same key again is deduplicated.",
        "schema": {"type": "string", "pattern": KEY_PATTERN.pattern, "minLength": 64, "maxLength": 64},
    }],
    "requestBody": {
        "required": True,
        "description": "One ground-truth batch: Parquet (what `edgeloop simulate` writes) or CSV with a header row "
                       "(what edge runners send; probabilities as JSON list text).",
        "content": {media: BINARY for media in MEDIA_TYPES},
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": UploadResult, "description": "Already stored: the first success's body, deduplicated=true.",
          "content": {"application/json": {"example": {**EXAMPLE_RESULT, "deduplicated": True}}}},
    401: {"description": "No, a wrong, or a revoked token (same body whatever was wrong)."},
    403: {"description": "The token belongs to another device."},
    413: _error(413, "Body larger than hub.max_upload_bytes.", "batch larger than 67108864 bytes", "too_large"),
    415: _error(415, "Content-Type is neither Parquet nor CSV.",
                "Content-Type must be one of: application/vnd.apache.parquet, application/octet-stream, text/csv",
                "content_type"),
    422: _error(422, "Bad key, empty body, key/body mismatch, unreadable Parquet/CSV, no rows or a schema mismatch.",
                "missing column 'torque_nm'", "schema"),
}


def _storage(request: Request) -> BatchStorage:
    """The app's batch storage: ``app.state.storage`` when set, else the local landing zone."""
    state = request.app.state
    if getattr(state, "storage", None) is None:
        settings: HubSettings = state.settings
        state.storage = LocalStorage(settings.landing)
    storage: BatchStorage = state.storage
    return storage


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, the same whichever database gave it back (SQLite returns naive datetimes)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat()


def _check_headers(request: Request, key: str | None, limit: int) -> tuple[str, str]:
    """The validated key and the batch's file extension; refuses bad keys (422), content types (415) and
    announced oversize (413)."""
    if key is None or not KEY_PATTERN.match(key):
        raise Rejected(422, "bad_key", "Idempotency-Key must be the body's sha256: 64 lowercase hex digits")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise Rejected(415, "content_type", f"Content-Type must be one of: {', '.join(MEDIA_TYPES)}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Rejected(413, "too_large", f"batch larger than {limit} bytes")
    return key, "csv" if media == CSV else "parquet"


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as more than ``limit`` bytes arrived; a gzip-encoded body
    (``Content-Encoding: gzip``) is decoded, and refused once its *decoded* size passes ``limit``."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise Rejected(415, "content_encoding", "Content-Encoding must be gzip or absent")
    decoder = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
    body = bytearray()
    async for chunk in request.stream():
        if decoder is None:
            body += chunk
        else:
            try:
                body += decoder.decompress(chunk, limit + 1 - len(body))
            except zlib.error as exc:
                raise Rejected(422, "unreadable", f"gzip body cannot be decoded: {exc}") from None
        if len(body) > limit:
            raise Rejected(413, "too_large", f"batch larger than {limit} bytes")
    if decoder is not None and not decoder.eof:
        raise Rejected(422, "unreadable", "gzip body is truncated")
    return bytes(body)


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _column_problem(name: str, kind: pa.DataType, role: str, schema: DataSchema) -> str | None:
    """Why column ``name`` of Arrow type ``kind`` cannot hold ``role`` values, else None."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if role == "feature" and not (_is_number(kind) or pa.types.is_null(kind)):
        return f"feature column {name!r} is {kind}, expected a number"
    if role == "label":
        numeric_classes = not isinstance(schema.label.classes[0], str)
        ok = _is_number(kind) if numeric_classes else (_is_text(kind) or pa.types.is_integer(kind))
        if not ok:
            expected = "numbers" if numeric_classes else "strings"
            return f"label column {name!r} is {kind}, expected {expected} like {list(schema.label.classes)}"
    if role == "event_time" and not (pa.types.is_timestamp(kind) or _is_text(kind)):
        return f"event time column {name!r} is {kind}, expected a timestamp or ISO 8601 text"
    return None


def check_structure(body: bytes, schema: DataSchema) -> int:
    """Rows of a Parquet ``body`` whose footer fits ``schema``; Rejected(422) naming the problem otherwise."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(body))
        arrow, rows = parquet.schema_arrow, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for garbage; all mean the same here
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise Rejected(422, "unreadable", f"not a readable Parquet file: {reason}") from None
    roles = {f.name: "feature" for f in schema.features}
    roles |= {schema.label.name: "label", schema.event_time: "event_time"}
    _missing(list(arrow.names), schema)
    for name, role in roles.items():
        problem = _column_problem(name, arrow.field(name).type, role, schema)
        if problem:
            raise Rejected(422, "schema", problem)
    if rows < 1:
        raise Rejected(422, "no_rows", "the batch has no rows")
    return int(rows)


def _missing(names: list[str], schema: DataSchema) -> None:
    missing = [name for name in schema.column_names if name not in names]
    if missing:
        raise Rejected(422, "schema", f"missing column{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(repr(m) for m in missing)}")


def check_csv_structure(body: bytes, schema: DataSchema) -> int:
    """Rows of a CSV ``body`` whose header fits ``schema``; Rejected(422) naming the problem otherwise."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Rejected(422, "unreadable", f"not a UTF-8 CSV file: byte 0x{body[exc.start:exc.start + 1].hex()} "
                                          f"at offset {exc.start}") from None
    if "\x00" in text:
        raise Rejected(422, "unreadable", "not a UTF-8 CSV file: it contains NUL characters")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, [])
        if not any(cell.strip() for cell in header):
            raise Rejected(422, "unreadable", "not a CSV batch: the first line is not a header row")
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise Rejected(422, "schema", f"column {duplicated[0]!r} appears more than once in the header")
        _missing(header, schema)
        rows = 0
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line: ingest skips these too
            if len(record) > len(header):
                raise Rejected(422, "unreadable", f"CSV line {reader.line_num} has {len(record)} fields, "
                                                  f"the header has {len(header)}")
            rows += 1
    except csv.Error as exc:
        raise Rejected(422, "unreadable", f"not a readable CSV file: line {reader.line_num}: {exc}"[:300]) from None
    if rows < 1:
        raise Rejected(422, "no_rows", "the batch has no rows")
    return rows


def _result(row: Upload, location: str, deduplicated: bool) -> dict[str, Any]:
    return {"device_id": row.device_id, "batch_id": row.batch_id, "bytes": row.bytes, "rows": row.rows,
            "stored_at": _iso(row.stored_at), "location": location, "deduplicated": deduplicated}


def _existing(sessions: Any, device_id: str, batch_id: str) -> Upload | None:
    with sessions() as session:
        query = select(Upload).where(Upload.device_id == device_id, Upload.batch_id == batch_id)
        row: Upload | None = session.scalars(query).first()
        return row


def _accept(state: Any, storage: BatchStorage, device_id: str, key: str, body: bytes, extension: str) -> Stored:
    """Blocking part (threadpool): verify the body, store the file, record the row."""
    if not body:
        raise Rejected(422, "empty", "empty body: send one Parquet or CSV batch")
    if hashlib.sha256(body).hexdigest() != key:
        raise Rejected(422, "key_mismatch", "Idempotency-Key does not match the body's sha256")
    sessions = state.sessions
    # The file exists before its row does, so no file means no row: the common path skips the query.
    known = _existing(sessions, device_id, key) if storage.exists(device_id, key, extension) else None
    if known is not None:  # a retry: same bytes (same hash), already validated; heal a lost file
        return Stored(_result(known, storage.put(device_id, key, body, extension), True), created=False)
    settings: HubSettings = state.settings
    check = check_csv_structure if extension == "csv" else check_structure
    rows = check(body, settings.schema)
    location = storage.put(device_id, key, body, extension)  # file first: idempotent, content-addressed, atomic
    row = Upload(device_id=device_id, batch_id=key, path=location, bytes=len(body), rows=rows, stored_at=utc_now())
    try:
        with state.write_lock, state.engine.begin() as connection:  # Core insert: a third of the ORM's cost
            connection.execute(insert(Upload).values(
                device_id=row.device_id, batch_id=row.batch_id, path=row.path, bytes=row.bytes, rows=row.rows,
                stored_at=row.stored_at,
            ))
    except IntegrityError:  # a racing identical request recorded it first
        winner = _existing(sessions, device_id, key)
        if winner is None:
            raise
        return Stored(_result(winner, location, True), created=False)
    return Stored(_result(row, location, False), created=True)


def _reject(metrics: HubMetrics, rejected: Rejected) -> JSONResponse:
    metrics.uploads.labels("rejected", rejected.reason).inc()
    return JSONResponse({"detail": rejected.detail, "reason": rejected.reason}, status_code=rejected.status)


@router.post(
    "/v1/devices/{device_id}/uploads",
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
    state = request.app.state
    settings: HubSettings = state.settings
    metrics: HubMetrics = state.metrics
    try:
        key, extension = _check_headers(request, request.headers.get("idempotency-key"), settings.max_upload_bytes)
        body = await _read_body(request, settings.max_upload_bytes)
        stored = await run_in_threadpool(_accept, state, _storage(request), caller.device_id, key, body, extension)
    except Rejected as rejected:
        return _reject(metrics, rejected)
    if stored.created:
        metrics.uploads.labels("stored", "").inc()
        metrics.upload_bytes.inc(stored.result["bytes"])
        return JSONResponse(stored.result, status_code=201)
    metrics.uploads.labels("deduplicated", "").inc()
    return JSONResponse(stored.result, status_code=200)
