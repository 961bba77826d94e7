"""uvicorn's HTTP protocol with the ASGI TLS extension: the client certificate a request came with, as PEM.

uvicorn does not put the peer certificate in the scope. ``TlsHttpToolsProtocol`` (httptools, what
uvicorn[standard] uses) and ``TlsH11Protocol`` (h11, when httptools is missing) read it once per
connection, after the handshake (``transport.get_extra_info("ssl_object").getpeercert(binary_form=True)``),
and add ``scope["extensions"]["tls"]`` to each of its requests, as the ASGI TLS extension describes it:
``client_cert_chain`` (the verified client certificate as PEM, or empty), ``tls_version`` (0x0303,
0x0304), and None for ``server_cert``, ``client_cert_name``, ``client_cert_error`` and ``cipher_suite``.
The same dictionary serves every request of a keep-alive connection, so the certificate's text is built
once per connection. On a plain connection nothing is added. On shutdown an idle TLS connection is
aborted rather than closed: a TLS close waits (up to 30 s) for the client's close_notify, which an idle
keep-alive client never sends, and would hold the hub's graceful shutdown that long. ``protocol_class()``
picks the class. Leaves out what a certificate means (hub.auth).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["TlsH11Protocol", "TlsHttpToolsProtocol", "protocol_class", "tls_extension"]

TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension of a connection; None when it is not TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def _abort_if_idle(protocol: Any) -> None:
    """After uvicorn's own shutdown step: drop an idle TLS connection at once (see the module docstring)."""
    if protocol._tls is not None and (protocol.cycle is None or protocol.cycle.response_complete):
        protocol.transport.abort()


class TlsH11Protocol(H11Protocol):
    """h11 builds its scope inside its event loop: the connection's app is wrapped to add the extension."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = tls = tls_extension(transport)
        if tls is not None:
            app = self.app

            async def with_tls(scope: Any, receive: Any, send: Any) -> None:
                scope["extensions"] = {**scope.get("extensions", {}), "tls": tls}
                await app(scope, receive, send)

            self.app = with_tls

    def shutdown(self) -> None:
        super().shutdown()
        _abort_if_idle(self)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover (uvicorn without httptools)
    TlsHttpToolsProtocol: type[asyncio.Protocol] | None = None
else:

    class TlsHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[no-redef]
        """httptools: the extension goes into each request's scope as the request begins."""

        _tls: dict[str, Any] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._tls = tls_extension(transport)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._tls is not None:
                self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]  # ASGI's loose typing

        def shutdown(self) -> None:
            super().shutdown()
            _abort_if_idle(self)


def protocol_class() -> type[asyncio.Protocol]:
    """The httptools protocol when httptools is installed (faster), else h11's."""
    return TlsHttpToolsProtocol or TlsH11Protocol
