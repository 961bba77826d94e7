"""The hub's server TLS context, reloaded for new connections when its files change (rotation without restart).

``ReloadingContext(cert_file, key_file, client_ca)`` builds the context with
``edge.contracts.tls.server_context`` (TLS 1.2+, ECDHE AEAD ciphers; with ``client_ca`` the plant CA
verifies client certificates, CERT_OPTIONAL: the application decides per route). Its SNI callback runs
on every handshake (also when the client sends no server name): it compares the files' (inode, size,
mtime) with what was loaded (three ``stat`` calls) and, when one changed, builds a fresh context and
hands it to this connection and every later one. Connections already open keep theirs. A half-written
rotation (a new key beside the old certificate) fails to load: the working context stays, the failure
is logged once (file names only, never key material), and the next change is tried again. Leaves out
issuing the files (hub.pki, ``edgeloop hub cert``).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

from edge.contracts.tls import server_context

__all__ = ["ReloadingContext"]

log = logging.getLogger("edgeloop.hub.tls")

Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: tuple[Path, ...]) -> Stamp:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(out)


class ReloadingContext:
    """``context`` is what the server listens with; it swaps in a fresh one per handshake after a change."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca: Path | None = None) -> None:
        self.files = (cert_file, key_file) + ((client_ca,) if client_ca is not None else ())
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._loaded = _stamp(self.files)
        self.context = self._build()  # errors here are the caller's (start-up: a bad file is a user mistake)
        self.context.sni_callback = self._on_client_hello
        self._active = self.context
        self.reloads = 0

    def _build(self) -> ssl.SSLContext:
        return server_context(self.files[0], self.files[1], self.client_ca)

    def current(self) -> ssl.SSLContext:
        """The context for a new connection: reloaded first when a file changed since the last load."""
        stamp = _stamp(self.files)
        if stamp == self._loaded:
            return self._active
        with self._lock:
            if stamp != self._loaded:
                try:
                    fresh = self._build()
                except (OSError, ssl.SSLError, ValueError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                    log.warning("TLS files changed but do not load (%s): keeping the previous certificate; files: %s",
                                reason, ", ".join(str(f) for f in self.files))
                else:
                    self._active = fresh
                    self.reloads += 1
                    log.info("TLS certificate reloaded for new connections: %s", self.files[0])
                self._loaded = stamp
        return self._active

    def _on_client_hello(self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                         context: ssl.SSLContext) -> None:
        active = self.current()
        if active is not context:
            ssl_object.context = active
