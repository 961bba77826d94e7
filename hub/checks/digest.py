"""The body is what its key says: not empty, and its sha256 is the ``Idempotency-Key``.

Leaves out the key's form (hub.checks.headers) and the body's contents (hub.checks.batches, .summaries).
"""

from __future__ import annotations

import hashlib

from edge.contracts.wire import IDEMPOTENCY_KEY
from hub.checks.refusal import EMPTY, KEY_MISMATCH, Refused

__all__ = ["check_digest"]


def check_digest(body: bytes, key: str, send: str) -> None:
    """Refuses an empty body (the message says to ``send`` one ...) or one whose sha256 is not ``key``."""
    if not body:
        raise Refused(EMPTY, f"empty body: send one {send}")
    if hashlib.sha256(body).hexdigest() != key:
        raise Refused(KEY_MISMATCH, f"{IDEMPOTENCY_KEY} does not match the body's sha256")
