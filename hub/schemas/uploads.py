"""``POST /v1/devices/{device_id}/uploads``: the result body, the refusal body and the OpenAPI documentation.

``UploadResult`` is the same for the first success (201) and every retry (200, ``deduplicated``);
``UploadError`` is every refusal's body (``detail`` and a machine-readable ``reason``), summaries' too.
``OPENAPI_EXTRA`` documents what the route reads itself (the ``Idempotency-Key`` header and the raw
Parquet/CSV body), ``RESPONSES`` every refusal with an example. Leaves out the checks (hub.checks).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edge.contracts.names import BATCH_ID_PATTERN
from edge.contracts.wire import IDEMPOTENCY_KEY, JSON, UPLOAD_MAX_BYTES, UPLOAD_MEDIA_TYPES
from hub.checks.refusal import CONTENT_TYPE, KEY_MISMATCH, SCHEMA, TOO_LARGE

__all__ = ["EXAMPLE_KEY", "OPENAPI_EXTRA", "RESPONSES", "UploadError", "UploadResult", "key_parameter", "refusal"]

EXAMPLE_KEY = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
EXAMPLE_RESULT: dict[str, Any] = {
    "device_id": "press-07", "batch_id": EXAMPLE_KEY, "bytes": 48213, "rows": 1000,
    "stored_at": "2026-03-01T12:00:00.123456+00:00", "location": f"uploads/press-07/{EXAMPLE_KEY}.parquet",
    "deduplicated": False,
}


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
        {"detail": f"{IDEMPOTENCY_KEY} does not match the body's sha256", "reason": KEY_MISMATCH}
    ]})

    detail: str
    reason: str | None = Field(None, description="machine-readable cause (absent on auth and id errors)")


def refusal(description: str, detail: str, reason: str) -> dict[str, Any]:
    """The OpenAPI entry of one refusal status, with an example body."""
    return {"model": UploadError, "description": description,
            "content": {JSON: {"example": {"detail": detail, "reason": reason}}}}


def key_parameter() -> dict[str, Any]:
    """The ``Idempotency-Key`` header as OpenAPI describes it (the route reads it from the request itself,
    so that a bad key is refused, and counted, by the route)."""
    return {
        "name": IDEMPOTENCY_KEY, "in": "header", "required": True, "example": EXAMPLE_KEY,
        "description": "sha256 of the body: 64 lowercase hex digits. The same key again is deduplicated.",
        "schema": {"type": "string", "pattern": BATCH_ID_PATTERN.pattern, "minLength": 64, "maxLength": 64},
    }


BINARY = {"schema": {"type": "string", "format": "binary"}}
OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [key_parameter()],
    "requestBody": {
        "required": True,
        "description": "One ground-truth batch: Parquet (what `edgeloop simulate` writes) or CSV with a header row "
                       "(what edge runners send; probabilities as JSON list text).",
        "content": {media: BINARY for media in UPLOAD_MEDIA_TYPES},
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": UploadResult, "description": "Already stored: the first success's body, deduplicated=true.",
          "content": {JSON: {"example": {**EXAMPLE_RESULT, "deduplicated": True}}}},
    401: {"description": "No, a wrong, or a revoked token (same body whatever was wrong)."},
    403: {"description": "The token belongs to another device."},
    413: refusal("Body larger than hub.max_upload_bytes.", f"batch larger than {UPLOAD_MAX_BYTES} bytes", TOO_LARGE),
    415: refusal("Content-Type is neither Parquet nor CSV.",
                 f"Content-Type must be one of: {', '.join(UPLOAD_MEDIA_TYPES)}", CONTENT_TYPE),
    422: refusal("Bad key, empty body, key/body mismatch, unreadable Parquet/CSV, no rows or a schema mismatch.",
                 "missing column 'torque_nm'", SCHEMA),
}
