"""``Refused``: why the hub will not take a request's body, as a machine-readable reason and a message.

The reason is the response's ``reason`` field and the ``reason`` label of the upload metrics; the
detail is shown to the device and never contains the body or a token. Leaves out status codes
(hub.routes maps reasons to 413/415/422).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BAD_KEY",
    "CONTENT_ENCODING",
    "CONTENT_TYPE",
    "EMPTY",
    "KEY_MISMATCH",
    "NO_ROWS",
    "SCHEMA",
    "TOO_LARGE",
    "UNREADABLE",
    "Refused",
]

BAD_KEY: Final = "bad_key"  # the Idempotency-Key is not 64 lowercase hex digits
CONTENT_TYPE: Final = "content_type"  # a media type the route does not take
CONTENT_ENCODING: Final = "content_encoding"  # neither gzip nor absent
TOO_LARGE: Final = "too_large"  # announced or streamed past the limit (decoded bytes)
EMPTY: Final = "empty"
KEY_MISMATCH: Final = "key_mismatch"  # the key is not the body's sha256
UNREADABLE: Final = "unreadable"  # not Parquet / CSV / gzip / JSON as announced
SCHEMA: Final = "schema"  # a column missing, repeated or of a type that cannot hold its values
NO_ROWS: Final = "no_rows"


class Refused(Exception):
    """A request the hub will not take: ``reason`` (one of the names above) and ``detail`` (the message)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
