"""params.yaml ``hub:``: where the hub listens, its database, admin token file, device-facing limits and TLS.

Read by the hub (its settings add the environment), by the cloud's hub client (URL and token rules) and
by ``edgeloop check-params``. Every key has its default here and only here; params.yaml may leave any out.
``parse_hub_section(raw)`` is strict: unknown keys and bad values are a ``HubSectionError`` naming the key
(``hub.port: expected an integer from 1 to 65535, got 0``). ``hub.tls`` (``TlsSection``) says where the
hub's certificate and the plant CA are and how devices authenticate: with no certificate the hub speaks
plain HTTP, on loopback only. Leaves out environment overrides, path resolution and secrets (the admin
token and every private key live in their 0600 files, never here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.wire import UPLOAD_MAX_BYTES

__all__ = ["CA_CERT_FILE", "CLIENT_CERTIFICATES", "LOOPBACK", "HubSection", "HubSectionError", "TlsSection",
           "parse_hub_section"]

CA_CERT_FILE = "ca.pem"  # the plant CA's certificate inside hub.tls.ca_dir: what clients verify the hub with
LOOPBACK: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost"})
# how devices authenticate over TLS: "required" = by client certificate only; "optional" = a certificate
# or a bearer token; "off" = bearer tokens only (the hub asks for no client certificate)
CLIENT_CERTIFICATES: tuple[str, ...] = ("required", "optional", "off")


class HubSectionError(UserError, ValueError):
    """params.yaml's hub section is not valid; the message names the key."""


@dataclass(frozen=True)
class TlsSection:
    cert_file: str | None = None  # the hub's certificate chain (PEM); None: plain HTTP, loopback only
    key_file: str | None = None  # its private key (PEM, 0600)
    ca_dir: str = "keys/hub-ca"  # the plant CA (ca.pem, ca.key 0600): verifies and issues device certificates
    client_certificates: str = "optional"  # one of CLIENT_CERTIFICATES
    device_cert_days: float = 90.0  # validity of a device certificate; devices renew before it ends
    enrollment_code_ttl_s: float = 86_400.0  # a one-time enrollment code expires after this long
    trusted_proxies: tuple[str, ...] = ()  # addresses whose forwarded client certificate the hub believes

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    @property
    def ca_file(self) -> str:
        """The plant CA's certificate (``<ca_dir>/ca.pem``), relative to the project unless ca_dir is absolute."""
        return f"{self.ca_dir.rstrip('/')}/{CA_CERT_FILE}"


@dataclass(frozen=True)
class HubSection:
    host: str = "127.0.0.1"  # loopback unless you say otherwise
    port: int = 8700
    database: str = "sqlite:///data/hub/hub.db"  # relative SQLite paths are resolved against the project
    admin_token_file: str = "keys/hub-admin.token"  # 0600, created on the hub's first start
    max_upload_bytes: int = UPLOAD_MAX_BYTES  # decoded bytes of one batch
    poll_interval_s: float = 60.0  # how often devices are expected to heartbeat
    stale_after_polls: float = 3.0  # silent longer than this many intervals: shown offline
    tls: TlsSection = TlsSection()

    @property
    def stale_after_s(self) -> float:
        return self.poll_interval_s * self.stale_after_polls

    @property
    def local_url(self) -> str:
        """How a client on this machine reaches the hub (a wildcard listen address means loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"


def _fail(key: str, expected: str, value: object) -> HubSectionError:
    shown = repr(value)
    return HubSectionError(f"hub.{key}: expected {expected}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "non-empty text", value)
    return value


def _integer(low: int, high: int) -> Any:
    def read(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(key, f"an integer from {low} to {high}", value)
        return value
    return read


def _positive(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _fail(key, "a number > 0", value)
    return float(value)


def _optional_text(key: str, value: object) -> str | None:
    return None if value is None else _text(key, value)


def _choice(*options: str) -> Any:
    def read(key: str, value: object) -> str:
        if value not in options:
            raise _fail(key, " or ".join(repr(o) for o in options), value)
        return str(value)
    return read


def _addresses(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(key, "a list of IP addresses", value)
    return tuple(value)


_TLS_READERS = {
    "cert_file": _optional_text,
    "key_file": _optional_text,
    "ca_dir": _text,
    "client_certificates": _choice(*CLIENT_CERTIFICATES),
    "device_cert_days": _positive,
    "enrollment_code_ttl_s": _positive,
    "trusted_proxies": _addresses,
}


def _tls(key: str, value: object) -> TlsSection:
    if value is None:
        return TlsSection()
    if not isinstance(value, Mapping):
        raise _fail(key, "a mapping of keys", value)
    known = [f.name for f in fields(TlsSection)]
    for name in value:
        if name not in known:
            raise HubSectionError(f"hub.tls.{name}: unknown key (expected one of {known})")
    section = TlsSection(**{name: _TLS_READERS[name](f"tls.{name}", v) for name, v in value.items()})
    if (section.cert_file is None) != (section.key_file is None):
        raise HubSectionError("hub.tls: cert_file and key_file go together (give both, or neither for plain HTTP)")
    return section


_READERS = {
    "host": _text,
    "port": _integer(1, 65535),
    "database": _text,
    "admin_token_file": _text,
    "max_upload_bytes": _integer(1, 4 * 1024**3),
    "poll_interval_s": _positive,
    "stale_after_polls": _positive,
    "tls": _tls,
}


def parse_hub_section(raw: object) -> HubSection:
    """A validated HubSection from params.yaml's ``hub`` mapping (None or absent keys take the defaults)."""
    if raw is None:
        return HubSection()
    if not isinstance(raw, Mapping):
        raise HubSectionError(f"hub: expected a mapping of keys, got {raw!r}"[:200])
    known = [f.name for f in fields(HubSection)]
    for key in raw:
        if key not in known:
            raise HubSectionError(f"hub.{key}: unknown key (expected one of {known})")
    return HubSection(**{key: _READERS[key](key, value) for key, value in raw.items()})
