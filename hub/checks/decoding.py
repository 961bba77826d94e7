"""A request body collected chunk by chunk, decoded from gzip when it says so, bounded in *decoded* bytes.

``BoundedBody(limit, what, gzip)`` takes the body's chunks as they stream in (``feed``) and refuses
(``too_large``) as soon as more than ``limit`` decoded bytes arrived, so a small gzip bomb cannot expand
and an oversize body is not read to its end. ``finish`` returns the bytes; a corrupt or truncated gzip
stream is ``unreadable``. Only the first gzip member is decoded (what ``gzip.compress`` writes). Leaves
out reading the stream (hub.routes) and what the bytes mean (hub.checks.batches, hub.checks.summaries).
"""

from __future__ import annotations

import zlib

from edge.contracts.wire import GZIP
from hub.checks.headers import too_large
from hub.checks.refusal import UNREADABLE, Refused

__all__ = ["BoundedBody"]

GZIP_WBITS = 31  # zlib's window bits for the gzip container


class BoundedBody:
    def __init__(self, limit: int, what: str, gzip: bool = False) -> None:
        self.limit, self.what = limit, what
        self._decoder = zlib.decompressobj(wbits=GZIP_WBITS) if gzip else None
        self._body = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add one received chunk; Refused once the decoded body passes the limit."""
        if self._decoder is None:
            self._body += chunk
        else:
            try:  # never decode more than one byte past the limit
                self._body += self._decoder.decompress(chunk, self.limit + 1 - len(self._body))
            except zlib.error as exc:
                raise Refused(UNREADABLE, f"{GZIP} body cannot be decoded: {exc}") from None
        if len(self._body) > self.limit:
            raise too_large(self.what, self.limit)

    def finish(self) -> bytes:
        """The decoded body, once every chunk was fed."""
        if self._decoder is not None and not self._decoder.eof:
            raise Refused(UNREADABLE, f"{GZIP} body is truncated")
        return bytes(self._body)
