"""params.yaml ``hub:``: where the hub listens, its database, admin token file and device-facing limits.

Read by the hub (its settings add the environment), by the cloud's hub client (URL and token rules) and
by ``edgeloop check-params``. Every key has its default here and only here; params.yaml may leave any out.
``parse_hub_section(raw)`` is strict: unknown keys and bad values are a ``HubSectionError`` naming the key
(``hub.port: expected an integer from 1 to 65535, got 0``). Leaves out environment overrides, path
resolution and secrets (the admin token lives in its 0600 file, never here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.wire import UPLOAD_MAX_BYTES

__all__ = ["LOOPBACK", "HubSection", "HubSectionError", "parse_hub_section"]

LOOPBACK: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost"})


class HubSectionError(UserError, ValueError):
    """params.yaml's hub section is not valid; the message names the key."""


@dataclass(frozen=True)
class HubSection:
    host: str = "127.0.0.1"  # loopback unless you say otherwise
    port: int = 8700
    database: str = "sqlite:///data/hub/hub.db"  # relative SQLite paths are resolved against the project
    admin_token_file: str = "keys/hub-admin.token"  # 0600, created on the hub's first start
    max_upload_bytes: int = UPLOAD_MAX_BYTES  # decoded bytes of one batch
    poll_interval_s: float = 60.0  # how often devices are expected to heartbeat
    stale_after_polls: float = 3.0  # silent longer than this many intervals: shown offline

    @property
    def stale_after_s(self) -> float:
        return self.poll_interval_s * self.stale_after_polls

    @property
    def local_url(self) -> str:
        """How a client on this machine reaches the hub (a wildcard listen address means loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


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


_READERS = {
    "host": _text,
    "port": _integer(1, 65535),
    "database": _text,
    "admin_token_file": _text,
    "max_upload_bytes": _integer(1, 4 * 1024**3),
    "poll_interval_s": _positive,
    "stale_after_polls": _positive,
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
