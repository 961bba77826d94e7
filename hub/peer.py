"""Which client certificate a request came with: from the TLS connection, or from a trusted proxy's headers.

``presented_certificate(scope, proxies)`` looks in two places, and only one per request:

- when the request comes from an address in ``hub.tls.trusted_proxies`` (a TLS-terminating nginx on
  the same host), the certificate is what the proxy forwarded: ``X-Client-Cert`` (nginx's
  ``$ssl_client_escaped_cert``, a URL-escaped PEM) with ``X-Client-Verify`` (``$ssl_client_verify``:
  ``SUCCESS``, ``NONE`` or ``FAILED:<reason>``). It is marked ``forwarded``: the hub verifies it against
  the plant CA itself as well;
- from any other address those headers mean nothing: the certificate is the one the TLS layer verified,
  from the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, set by hub.tls.protocol).

Returns None when no certificate came, and a ``Presented`` without PEM when one was claimed but cannot be
used (the proxy says its verification failed). Leaves out parsing (hub.peer_certificates) and deciding
who the caller is (hub.auth).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

__all__ = ["CLIENT_CERT_HEADER", "CLIENT_VERIFY_HEADER", "Presented", "normalize_addresses", "presented_certificate"]

CLIENT_CERT_HEADER = "x-client-cert"  # nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
CLIENT_VERIFY_HEADER = "x-client-verify"  # nginx: proxy_set_header X-Client-Verify $ssl_client_verify;
VERIFIED = "SUCCESS"
NO_CERTIFICATE = "NONE"
_CERT, _VERIFY = CLIENT_CERT_HEADER.encode(), CLIENT_VERIFY_HEADER.encode()


@dataclass(frozen=True)
class Presented:
    pem: str | None  # None: claimed but unusable (the proxy's verification failed, or an empty certificate)
    forwarded: bool  # from a trusted proxy's headers: the hub must verify it against the plant CA itself


def _normal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def normalize_addresses(addresses: Collection[str]) -> frozenset[str]:
    """Proxy addresses as requests' client addresses are compared with them (``::ffff:a.b.c.d`` is a.b.c.d)."""
    return frozenset(_normal(a) for a in addresses)


@lru_cache(maxsize=4096)
def _unescape(value: str) -> str:
    return unquote(value)


def _forwarded(headers: list[tuple[bytes, bytes]]) -> Presented | None:
    cert = verify = b""
    for name, value in headers:
        if name == _CERT:
            cert = value
        elif name == _VERIFY:
            verify = value
    if not cert.strip():
        return None if verify.strip() in (b"", NO_CERTIFICATE.encode()) else Presented(None, True)
    if verify.strip() != VERIFIED.encode():
        return Presented(None, True)
    return Presented(_unescape(cert.decode("latin-1")), True)


def presented_certificate(scope: Mapping[str, Any], proxies: frozenset[str]) -> Presented | None:
    """The client certificate of this request (see the module docstring), or None."""
    if proxies:
        client = scope.get("client")
        if client and _normal(str(client[0])) in proxies:
            return _forwarded(scope["headers"])
    tls = scope.get("extensions", {}).get("tls")
    if not tls:
        return None
    chain = tls.get("client_cert_chain")
    return Presented(chain[0], False) if chain else None
