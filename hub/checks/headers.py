"""Checks of an upload's headers, cheapest first, before any body byte is read.

The ``Idempotency-Key`` must match ``edge.contracts.names.BATCH_ID_PATTERN`` (a sha256: 64 lowercase
hex digits), the media type must be one the route takes, an announced ``Content-Length`` must not pass
the limit and ``Content-Encoding`` must be gzip or absent. Functions take the raw header values (None
when absent). Leaves out reading headers from a request (hub.routes) and the body (hub.checks.decoding).
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.contracts.names import BATCH_ID_PATTERN
from edge.contracts.wire import GZIP, IDEMPOTENCY_KEY
from hub.checks.refusal import BAD_KEY, CONTENT_ENCODING, CONTENT_TYPE, TOO_LARGE, Refused

__all__ = ["idempotency_key", "is_gzip", "media_type", "too_large", "within_announced_limit"]

IDENTITY = "identity"


def idempotency_key(value: str | None) -> str:
    """``value`` when it is a well-formed key (the body's sha256)."""
    if value is None or not BATCH_ID_PATTERN.match(value):
        raise Refused(BAD_KEY, f"{IDEMPOTENCY_KEY} must be the body's sha256: 64 lowercase hex digits")
    return value


def media_type(content_type: str | None, allowed: Sequence[str]) -> str:
    """The bare, lower-cased media type of ``content_type`` when it is one of ``allowed``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in allowed:
        expected = allowed[0] if len(allowed) == 1 else f"one of: {', '.join(allowed)}"
        raise Refused(CONTENT_TYPE, f"Content-Type must be {expected}")
    return media


def too_large(what: str, limit: int) -> Refused:
    """The refusal of a body over ``limit`` bytes (``what``: "batch", "summary")."""
    return Refused(TOO_LARGE, f"{what} larger than {limit} bytes")


def within_announced_limit(content_length: str | None, limit: int, what: str) -> None:
    """Refuses a body whose announced length already passes ``limit`` (a missing or odd header passes:
    the streamed size is checked anyway)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large(what, limit)


def is_gzip(content_encoding: str | None) -> bool:
    """True for ``Content-Encoding: gzip``, False when absent or ``identity``; refuses anything else."""
    encoding = (IDENTITY if content_encoding is None else content_encoding).strip().lower()
    if encoding not in (IDENTITY, GZIP):
        raise Refused(CONTENT_ENCODING, f"Content-Encoding must be {GZIP} or absent")
    return encoding == GZIP
