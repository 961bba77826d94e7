"""The edge runner's configuration: one TOML file plus environment overrides, validated up front.

``load_config(path, environ)`` reads the file, applies overrides, and returns a frozen ``RunnerConfig``;
every problem is a ``ConfigError`` whose message names the key (``upload.random_rate: expected a number
between 0 and 1, got 1.5``). Unknown keys and sections are errors too, so a typo never silently falls
back to a default.

Environment overrides: ``EDGE_RUNNER__<SECTION>__<KEY>=value`` (double underscores; top-level keys as
``EDGE_RUNNER__DEVICE_ID``). A value is read as a TOML value when it parses as one (``30``, ``true``,
``["a", "b"]``), else as a string. The device token comes from ``EDGE_RUNNER_TOKEN`` when set, else from
``hub.token_file`` (which must not be readable by group or others); it is held in a ``Secret`` whose
``repr`` never shows it. Relative paths are resolved against the config file's folder.

Leaves out: what the values do (the runner wires them), and defaults for what cannot have one (device
id, state dir, hub URL, trusted root). Standard library only.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.contracts.names import CHANNEL_PATTERN, CHANNEL_RULE, is_valid_device_id

__all__ = [
    "ENV_PREFIX",
    "TOKEN_ENV",
    "ApiConfig",
    "ColumnsConfig",
    "ConfigError",
    "DriftConfig",
    "FeedbackConfig",
    "HubConfig",
    "ReleasesConfig",
    "RunnerConfig",
    "Secret",
    "UploadConfig",
    "load_config",
]

ENV_PREFIX = "EDGE_RUNNER__"
TOKEN_ENV = "EDGE_RUNNER_TOKEN"
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class ConfigError(ValueError):
    """The configuration is not valid; the message names the key."""


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or logs; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class HubConfig:
    url: str  # base URL of the hub, e.g. http://hub.plant.local:8700
    token: Secret = field(repr=False)
    timeout_s: float = 10.0  # seconds per request (connect and each read)
    heartbeat_interval_s: float = 60.0


@dataclass(frozen=True)
class ReleasesConfig:
    trusted_root: Path  # the root.json this device trusts on first use (from the release repository)
    metadata_url: str  # TUF metadata base URL (default: <hub>/releases/metadata/)
    targets_url: str  # TUF targets base URL (default: <hub>/releases/targets/)
    channel: str = "canary"
    poll_interval_s: float = 60.0
    poll_jitter: float = 0.2  # each wait is poll_interval_s * (1 ± jitter), so a fleet does not poll in step
    max_bundle_bytes: int = 256 * 1024 * 1024
    download_deadline_s: float = 300.0  # whole poll, metadata and files (python-tuf only bounds each read)
    read_timeout_s: float = 30.0


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    unix_socket: Path | None = None  # serve on this socket instead of TCP
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class UploadConfig:
    mode: str = "rows"  # "rows": filtered labelled rows; "aggregates": summaries only, no rows
    uncertain_margin: float = 0.1
    random_rate: float = 0.02
    anomalies: bool = True
    batch_rows: int = 500
    max_batch_bytes: int = 1024 * 1024
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    summary_interval_s: float = 300.0
    spool_quota_bytes: int = 256 * 1024 * 1024
    local_only: tuple[str, ...] = ()  # feature or context names that never leave the device


@dataclass(frozen=True)
class FeedbackConfig:
    pending_events: int = 100_000  # predictions kept in memory awaiting a label
    recent_labelled: int = 5_000  # labelled rows kept on disk for on-device validation


@dataclass(frozen=True)
class DriftConfig:
    window_rows: int = 5000  # recent rows the PSI is computed on
    min_rows: int = 1000  # no drift score before the window holds this many (slow sensors look drifted)


@dataclass(frozen=True)
class ColumnsConfig:
    """Upload column names, used when a release's manifest does not name them."""

    event_id: str = "event_id"
    device_id: str = "device_id"
    event_time: str = "event_time"


@dataclass(frozen=True)
class RunnerConfig:
    source: Path  # the config file
    device_id: str
    state_dir: Path
    hub: HubConfig
    releases: ReleasesConfig
    api: ApiConfig
    upload: UploadConfig
    feedback: FeedbackConfig
    columns: ColumnsConfig
    drift: DriftConfig = field(default_factory=DriftConfig)


# --- readers: each takes (value, key) and returns the typed value or raises ConfigError ----------------

Reader = Callable[[Any, str], Any]


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    shown = repr(value)
    return ConfigError(f"{key}: expected {expected}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _string(pattern: re.Pattern[str] | None = None, what: str = "a non-empty string") -> Reader:
    def read(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
            raise _fail(key, what, value)
        return value
    return read


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Reader:
    bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")

    def read(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _fail(key, f"a number {bounds}", value)
        if value < low or (low_open and value == low) or value > high:
            raise _fail(key, f"a number {bounds}", value)
        return float(value)
    return read


def _integer(low: int, high: int | None = None) -> Reader:
    def read(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise _fail(key, f"an integer >= {low}" + ("" if high is None else f" and <= {high}"), value)
        return value
    return read


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _url(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _fail(key, "an http(s) URL", value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(key, "an http(s) URL such as http://hub.local:8700", value)
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "a list of names", value)
    return tuple(value)


def _choice(*options: str) -> Reader:
    def read(value: Any, key: str) -> str:
        if value not in options:
            raise _fail(key, " or ".join(repr(o) for o in options), value)
        return str(value)
    return read


# --- the schema: section -> key -> (reader, default); default _REQUIRED means the key must be given ---

_REQUIRED = object()
_PATH = _string(what="a path")

_TOP: dict[str, tuple[Reader, Any]] = {
    "device_id": (_string(what="a device id"), _REQUIRED),
    "state_dir": (_PATH, _REQUIRED),
}
_SECTIONS: dict[str, dict[str, tuple[Reader, Any]]] = {
    "hub": {
        "url": (_url, _REQUIRED),
        "token_file": (_PATH, None),
        "timeout_s": (_number(0, 600, low_open=True), 10.0),
        "heartbeat_interval_s": (_number(1, 86_400), 60.0),
    },
    "releases": {
        "trusted_root": (_PATH, _REQUIRED),
        "metadata_url": (_url, None),
        "targets_url": (_url, None),
        "channel": (_string(CHANNEL_PATTERN, f"a channel name ({CHANNEL_RULE})"), "canary"),
        "poll_interval_s": (_number(1, 7 * 86_400), 60.0),
        "poll_jitter": (_number(0, 0.9), 0.2),
        "max_bundle_bytes": (_integer(1024), 256 * 1024 * 1024),
        "download_deadline_s": (_number(1, 86_400), 300.0),
        "read_timeout_s": (_number(0.1, 3600), 30.0),
    },
    "api": {
        "enabled": (_boolean, True),
        "host": (_string(), "127.0.0.1"),
        "port": (_integer(0, 65535), 8765),
        "unix_socket": (_PATH, None),
        "max_body_bytes": (_integer(1024, 64 * 1024 * 1024), 1024 * 1024),
    },
    "upload": {
        "mode": (_choice("rows", "aggregates"), "rows"),
        "uncertain_margin": (_number(0, 1), 0.1),
        "random_rate": (_number(0, 1), 0.02),
        "anomalies": (_boolean, True),
        "batch_rows": (_integer(1, 1_000_000), 500),
        "max_batch_bytes": (_integer(1024), 1024 * 1024),
        "backoff_initial_s": (_number(0.01, 3600), 1.0),
        "backoff_max_s": (_number(0.01, 86_400), 300.0),
        "summary_interval_s": (_number(1, 86_400), 300.0),
        "spool_quota_bytes": (_integer(64 * 1024), 256 * 1024 * 1024),
        "local_only": (_names, ()),
    },
    "feedback": {
        "pending_events": (_integer(1, 10_000_000), 100_000),
        "recent_labelled": (_integer(1, 1_000_000), 5_000),
    },
    "drift": {
        "window_rows": (_integer(10, 10_000_000), 5000),
        "min_rows": (_integer(1, 10_000_000), 1000),
    },
    "columns": {
        "event_id": (_string(_COLUMN, "a column name"), "event_id"),
        "device_id": (_string(_COLUMN, "a column name"), "device_id"),
        "event_time": (_string(_COLUMN, "a column name"), "event_time"),
    },
}


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> RunnerConfig:
    """Read, override and validate the runner configuration at ``path``."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _apply_environment(raw, environ)
    values = _validate(raw)
    return _build(path, values, environ)


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) == 1 and parts[0]:
            raw[parts[0]] = _env_value(text)
        elif len(parts) == 2 and all(parts):
            section = raw.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"{parts[0]}: expected a table, got {section!r} (overridden by {name})")
            section[parts[1]] = _env_value(text)
        else:
            raise ConfigError(f"{name}: expected EDGE_RUNNER__<KEY> or EDGE_RUNNER__<SECTION>__<KEY>")


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _validate(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    known = set(_TOP) | set(_SECTIONS)
    for key in raw:
        if key not in known:
            raise ConfigError(f"{key}: unknown key (expected one of {sorted(known)})")
    values: dict[str, dict[str, Any]] = {"": _section(raw, _TOP, "")}
    for name, spec in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a table ([{name}]), got {table!r}")
        values[name] = _section(table, spec, f"{name}.")
    return values


def _section(table: Mapping[str, Any], spec: dict[str, tuple[Reader, Any]], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in table:
        if prefix and key not in spec:
            raise ConfigError(f"{prefix}{key}: unknown key (expected one of {sorted(spec)})")
    for key, (read, default) in spec.items():
        if key in table:
            out[key] = read(table[key], f"{prefix}{key}")
        elif default is _REQUIRED:
            raise ConfigError(f"{prefix}{key}: required key is missing")
        else:
            out[key] = default
    return out


def _build(source: Path, v: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> RunnerConfig:
    base = source.resolve().parent
    top, hub, rel, api, up = v[""], v["hub"], v["releases"], v["api"], v["upload"]
    if not is_valid_device_id(top["device_id"]):
        raise _fail("device_id", "letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)",
                    top["device_id"])
    if v["drift"]["min_rows"] > v["drift"]["window_rows"]:
        raise ConfigError(f"drift.min_rows: must be <= drift.window_rows ({v['drift']['window_rows']})")
    if up["backoff_max_s"] < up["backoff_initial_s"]:
        raise ConfigError(f"upload.backoff_max_s: must be >= upload.backoff_initial_s ({up['backoff_initial_s']:g})")
    hub_url = hub["url"].rstrip("/")
    return RunnerConfig(
        source=source,
        device_id=top["device_id"],
        state_dir=_resolve(base, top["state_dir"]),
        hub=HubConfig(hub_url, _token(base, hub["token_file"], environ), hub["timeout_s"],
                      hub["heartbeat_interval_s"]),
        releases=ReleasesConfig(
            trusted_root=_resolve(base, rel["trusted_root"]),
            metadata_url=rel["metadata_url"] or f"{hub_url}/releases/metadata/",
            targets_url=rel["targets_url"] or f"{hub_url}/releases/targets/",
            channel=rel["channel"], poll_interval_s=rel["poll_interval_s"], poll_jitter=rel["poll_jitter"],
            max_bundle_bytes=rel["max_bundle_bytes"], download_deadline_s=rel["download_deadline_s"],
            read_timeout_s=rel["read_timeout_s"],
        ),
        api=ApiConfig(api["enabled"], api["host"], api["port"],
                      None if api["unix_socket"] is None else _resolve(base, api["unix_socket"]),
                      api["max_body_bytes"]),
        upload=UploadConfig(**up),
        feedback=FeedbackConfig(**v["feedback"]),
        columns=ColumnsConfig(**v["columns"]),
        drift=DriftConfig(**v["drift"]),
    )


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _token(base: Path, token_file: str | None, environ: Mapping[str, str]) -> Secret:
    from_env = environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return Secret(from_env)
    if token_file is None:
        raise ConfigError(f"hub.token_file: required key is missing (or set {TOKEN_ENV})")
    path = _resolve(base, token_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"hub.token_file: cannot read {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"hub.token_file: {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                          f"run: chmod 600 {path}")
    if not text:
        raise ConfigError(f"hub.token_file: {path} is empty")
    return Secret(text)
