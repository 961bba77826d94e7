"""Reading a device's body off the wire, and answering a refusal with its status code.

``read_body`` streams the request into a ``hub.checks.decoding.BoundedBody`` (which decodes gzip and
stops at the limit); ``refusal_response`` maps a ``Refused`` reason to its status (413 too large, 415
content type or encoding, 422 everything else) with the body ``{"detail", "reason"}``
(``hub.schemas.uploads.UploadError``). Leaves out what is checked (hub.checks) and metrics (the routes).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from hub.checks.decoding import BoundedBody
from hub.checks.refusal import CONTENT_ENCODING, CONTENT_TYPE, TOO_LARGE, Refused

__all__ = ["read_body", "refusal_response", "status_for"]

STATUS_BY_REASON: dict[str, int] = {TOO_LARGE: 413, CONTENT_TYPE: 415, CONTENT_ENCODING: 415}
DEFAULT_STATUS = 422  # the body is there but not acceptable


def status_for(reason: str) -> int:
    return STATUS_BY_REASON.get(reason, DEFAULT_STATUS)


def refusal_response(refused: Refused) -> JSONResponse:
    return JSONResponse({"detail": refused.detail, "reason": refused.reason}, status_code=status_for(refused.reason))


async def read_body(request: Request, body: BoundedBody) -> bytes:
    """The whole (decoded) body; Refused as soon as it passes the limit, before the rest is read."""
    async for chunk in request.stream():
        body.feed(chunk)
    return body.finish()
