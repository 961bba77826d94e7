"""``POST /v1/devices/{device_id}/summaries``: the result body and the OpenAPI documentation.

``SummaryResult`` is the same for the first success (201) and every retry (200, ``deduplicated``);
refusals share the uploads' ``UploadError`` body. Leaves out the checks (hub.checks) and storage.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edge.contracts.wire import JSON, SUMMARY_MAX_BYTES
from hub.checks.refusal import CONTENT_TYPE, TOO_LARGE, UNREADABLE
from hub.schemas.uploads import EXAMPLE_KEY, key_parameter, refusal

__all__ = ["OPENAPI_EXTRA", "RESPONSES", "SummaryResult"]

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


OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [key_parameter()],
    "requestBody": {
        "required": True,
        "description": "One summary: a JSON object, stored byte for byte (the key is the sha256 of these bytes).",
        "content": {JSON: {"schema": {"type": "object"}, "example": {"rows": 5000, "accuracy": 0.93}}},
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SummaryResult, "description": "Already stored: the first success's body, deduplicated=true.",
          "content": {JSON: {"example": {**EXAMPLE_RESULT, "deduplicated": True}}}},
    401: {"description": "No, a wrong, or a revoked token (same body whatever was wrong)."},
    403: {"description": "The token belongs to another device."},
    413: refusal(f"Body larger than {SUMMARY_MAX_BYTES // 2**20} MiB.",
                 f"summary larger than {SUMMARY_MAX_BYTES} bytes", TOO_LARGE),
    415: refusal(f"Content-Type is not {JSON}.", f"Content-Type must be {JSON}", CONTENT_TYPE),
    422: refusal("Bad key, empty body, key/body mismatch, or not a JSON object.",
                 "the summary must be a JSON object", UNREADABLE),
}
