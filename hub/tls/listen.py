"""How the hub listens: HTTPS, or plain HTTP on loopback (alone or behind a TLS-terminating proxy); never
plain HTTP on an address other machines reach.

``plan(settings, host, port, cert_file, key_file)`` decides, from params.yaml ``hub:`` (and the
``--host/--port/--cert/--key`` flags that override it), and returns a ``Listening``: the scheme and
URL, the one start-up line saying which it is, and uvicorn's options (``uvicorn_options``: the
reloading TLS context (hub.tls.context) through uvicorn's ``ssl_context_factory`` and the HTTP protocol
that puts the client certificate in the scope (hub.tls.protocol)). Refused, as one-line ``UserError``s:
plain HTTP on a non-loopback address (saying how to configure TLS); client certificates without a
plant CA to verify them; ``client_certificates: required`` where no certificate can ever arrive (no
TLS and no trusted proxy); a certificate or key that does not load. Leaves out running uvicorn (the
callers: edgeloop.hub_cli, hub.embedded).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.hub_section import LOOPBACK
from hub.settings import HubSettings
from hub.tls.context import ReloadingContext
from hub.tls.protocol import protocol_class

__all__ = ["ContextFactory", "Listening", "TlsConfigError", "is_loopback", "plan"]

HOW_TO_TLS = ("set hub.tls.cert_file and hub.tls.key_file (`edgeloop hub ca init`, then `edgeloop hub cert --name "
              "HOST`) or pass --cert/--key; or keep the hub on 127.0.0.1 behind a TLS-terminating proxy "
              "(hub.tls.trusted_proxies)")


class TlsConfigError(UserError):
    """The hub cannot listen as configured; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ContextFactory:
    """uvicorn's ``ssl_context_factory``: picklable (``--workers`` processes build their own context)."""

    cert_file: str
    key_file: str
    client_ca: str | None

    def build(self) -> ReloadingContext:
        return ReloadingContext(Path(self.cert_file), Path(self.key_file),
                                None if self.client_ca is None else Path(self.client_ca))

    def __call__(self, config: Any = None, default: Any = None) -> ssl.SSLContext:
        return self.build().context


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    scheme: str  # https or http
    kind: str  # "tls", "proxy" (plain HTTP on loopback behind a TLS-terminating proxy) or "loopback"
    description: str  # the start-up line
    factory: ContextFactory | None  # the TLS context, for kind "tls"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "::1" if self.host == "::" else self.host
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    def uvicorn_options(self) -> dict[str, Any]:
        """What uvicorn needs on top of host and port: the TLS context and the protocol (plain: nothing)."""
        if self.factory is None:
            return {}
        return {"ssl_context_factory": self.factory, "http": protocol_class()}


def _tls(settings: HubSettings, host: str, port: int, cert: Path, key: Path) -> Listening:
    tls = settings.section.tls
    client_ca: Path | None = None
    if tls.client_certificates != "off":
        client_ca = settings.ca_file
        if not client_ca.is_file():
            raise TlsConfigError(f"no plant CA at {client_ca} to verify device certificates: run `edgeloop hub ca "
                                 f"init`, or set hub.tls.client_certificates: off (tokens only)")
    for path in (cert, key):
        if not path.is_file():
            raise TlsConfigError(f"TLS file not found: {path} ({HOW_TO_TLS})")
    factory = ContextFactory(str(cert), str(key), None if client_ca is None else str(client_ca))
    try:
        factory.build()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"the hub's certificate {cert} or key {key} does not load "
                             f"({getattr(exc, 'reason', None) or exc.__class__.__name__}): do they belong together?"
                             ) from None
    clients = {"required": "client certificates required", "optional": "a client certificate or a token",
               "off": "tokens only"}[tls.client_certificates]
    verified = f", verified against {client_ca}" if client_ca else ""
    return Listening(host, port, "https", "tls",
                     f"TLS 1.2+ with {cert} (re-issued files are picked up without a restart); devices: {clients}"
                     f"{verified}", factory)


def plan(settings: HubSettings, host: str | None = None, port: int | None = None, cert_file: Path | None = None,
         key_file: Path | None = None) -> Listening:
    """How the hub listens; TlsConfigError when it must not (see the module docstring)."""
    section = settings.section
    bind, port = host or section.host, port or section.port
    if (cert_file is None) != (key_file is None):
        raise TlsConfigError("--cert and --key go together (the hub's certificate chain and its private key)")
    cert, key = (cert_file, key_file) if cert_file is not None else (settings.cert_file, settings.key_file)
    if cert is not None and key is not None:
        return _tls(settings, bind, port, cert, key)
    proxies = section.tls.trusted_proxies
    if not is_loopback(bind):
        raise TlsConfigError(f"refusing plain HTTP on {bind}: other machines would send tokens and data in clear; "
                             f"{HOW_TO_TLS}")
    if section.tls.client_certificates == "required" and not proxies:
        raise TlsConfigError("hub.tls.client_certificates is required but no certificate can reach this hub: "
                             "serve TLS (hub.tls.cert_file/key_file) or name the TLS-terminating proxy in "
                             "hub.tls.trusted_proxies")
    if proxies:
        return Listening(bind, port, "http", "proxy",
                         f"plain HTTP on loopback behind a TLS-terminating proxy ({', '.join(proxies)}: its "
                         f"X-Client-Cert header is believed, checked against {settings.ca_file})", None)
    return Listening(bind, port, "http", "loopback",
                     "plain HTTP on loopback only (for other machines: hub.tls, see docs/hub.md)", None)
