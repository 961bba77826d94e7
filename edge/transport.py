"""The one TLS client context the runner uses for every request to the hub, rebuilt after a renewal.

``ClientTls(ca_file, cert_file, key_file, system_store)`` builds ``edge.contracts.tls.client_context``
(TLS 1.2+, the hub verified against the plant CA only, hostname checked, the device's certificate
presented). The certificate and key are read from one resolved folder (edge.credentials.resolve_pair),
so a renewal switching ``identity/current`` can never pair one certificate with another key.
``context`` is the current context; ``reload()`` builds a new one from the files (after a renewal
installed a new pair) and hands it to every ``on_reload`` listener (the hub client swaps its
connection pool; the TUF fetcher asks for ``context`` at each poll). ``certificate_expires`` is when
the client certificate in use ends (read when the context was built).

Leaves out: the policy itself (edge.contracts.tls), installing certificates (edge.credentials),
renewing them (edge.cert_renewal).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from edge.config import TlsConfig
from edge.contracts.tls import client_context
from edge.credentials import resolve_pair
from edge.device_keys import CertificateError, load_certificate, not_after

__all__ = ["ClientTls", "TlsSetupError"]


class TlsSetupError(ValueError):
    """The TLS files cannot be loaded; the message names the key (never key material)."""


class ClientTls:
    """See the module docstring. Thread safe."""

    def __init__(self, ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None,
                 system_store: bool = False) -> None:
        self.ca_file, self.cert_file, self.key_file, self.system_store = ca_file, cert_file, key_file, system_store
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ssl.SSLContext], None]] = []
        self._context, self._expires = self._build()

    @classmethod
    def from_config(cls, tls: TlsConfig) -> ClientTls:
        return cls(tls.ca_file, tls.cert_file, tls.key_file, tls.system_store)

    def __repr__(self) -> str:
        return f"ClientTls(ca_file={self.ca_file!r}, cert_file={self.cert_file!r})"

    @property
    def context(self) -> ssl.SSLContext:
        with self._lock:
            return self._context

    @property
    def certificate_expires(self) -> datetime | None:
        with self._lock:
            return self._expires

    def on_reload(self, listener: Callable[[ssl.SSLContext], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def reload(self) -> ssl.SSLContext:
        """Build the context again from the files and hand it to the listeners."""
        context, expires = self._build()
        with self._lock:
            self._context, self._expires = context, expires
            listeners = list(self._listeners)
        for listener in listeners:
            listener(context)
        return context

    def _build(self) -> tuple[ssl.SSLContext, datetime | None]:
        if self.cert_file is None or self.key_file is None:
            return self._context_from(None, None), None
        for attempt in (1, 2):  # a prune between resolving and opening: resolve again once
            cert, key = resolve_pair(self.cert_file, self.key_file)
            try:
                context = self._context_from(cert, key)
                expires = not_after(load_certificate(cert.read_bytes()))
                return context, expires
            except FileNotFoundError:
                if attempt == 2:
                    raise TlsSetupError(f"tls.cert_file: {self.cert_file} or its key is missing") from None
            except CertificateError as exc:
                raise TlsSetupError(f"tls.cert_file: {self.cert_file}: {exc}") from None
        raise AssertionError("unreachable")

    def _context_from(self, cert: Path | None, key: Path | None) -> ssl.SSLContext:
        try:
            context = client_context(self.ca_file, None, None, use_system_store=self.system_store)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsSetupError(f"tls.ca_file: cannot load {self.ca_file}: {_reason(exc)}") from None
        if cert is None:
            return context
        try:  # the CA loaded: a problem now is the certificate's or the key's
            return client_context(self.ca_file, cert, key, use_system_store=self.system_store)
        except FileNotFoundError:
            raise
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(f"tls.cert_file: cannot load the client certificate and its key "
                                f"(tls.key_file): {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
