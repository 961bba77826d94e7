"""The edge runner's configuration: one TOML file plus environment overrides, validated up front.

``load_config(path, environ)`` reads the file, applies overrides, and returns a frozen ``RunnerConfig``;
every problem is a ``ConfigError`` whose message names the key (``upload.random_rate: expected a number
between 0 and 1, got 1.5``). Unknown keys and sections are errors too, so a typo never silently falls
back to a default.

One table: each key is one dataclass field below, declared with ``setting(default, reader)``; the field
is the key's only default and its reader the key's only check (``REQUIRED`` keys have no default).
Other modules take their defaults from these fields (``ReleasesConfig.max_bundle_bytes`` is also
``edge.releases.ClientLimits``' default, ``UploadConfig.batch_rows`` the uploader's, and so on).
Limits the hub enforces come from ``edge.contracts.wire`` (``upload.max_batch_bytes`` cannot exceed
``UPLOAD_MAX_BYTES``). Rules between keys are checked by the section's ``__post_init__``.

Environment overrides: ``EDGE_RUNNER__<SECTION>__<KEY>=value`` (double underscores; top-level keys as
``EDGE_RUNNER__DEVICE_ID``). A value is read as a TOML value when it parses as one (``30``, ``true``,
``["a", "b"]``), else as a string. The device token comes from ``EDGE_RUNNER_TOKEN`` when set, else from
``hub.token_file`` (which must not be readable by group or others); it is held in a ``Secret`` whose
``repr`` never shows it. Relative paths are resolved against the config file's folder.

Transport security (``[tls]``, checked across sections when the file is read): an ``https://`` hub is
verified against ``tls.ca_file`` (the plant CA), never the system store unless ``tls.system_store`` says
so; ``tls.cert_file``/``tls.key_file`` are the device's client certificate and key (the key file mode
0600, like the token file), and with them (over https) the token is optional. The insecure rule: a
plain ``http://`` URL (``hub.url``, ``releases.metadata_url``, ``releases.targets_url``) to a host that
is not loopback is refused unless ``hub.insecure = true`` (``plain_http_problem`` says why, for the hub
client and ``edge-runner enroll`` too); loopback http (127.0.0.0/8, ::1, localhost) is always fine.

Leaves out: what the values do (the runner wires them), and defaults for what cannot have one (device
id, state dir, hub URL, trusted root). Standard library only.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from edge.contracts.hub_section import LOOPBACK
from edge.contracts.names import CHANNEL_PATTERN, CHANNEL_RULE, is_valid_device_id
from edge.contracts.runner_policy import REMOTE_KEYS
from edge.contracts.wire import UPLOAD_MAX_BYTES
from edge.file_checks import not_private, unreadable
from edge.inputs.settings import InputsConfig, InputsError, read_inputs

__all__ = [
    "ENV_PREFIX",
    "REQUIRED",
    "TOKEN_ENV",
    "ApiConfig",
    "ColumnsConfig",
    "ConfigError",
    "DriftConfig",
    "FeedbackConfig",
    "HubConfig",
    "PolicyConfig",
    "ReleasesConfig",
    "RunnerConfig",
    "Secret",
    "TlsConfig",
    "UploadConfig",
    "WatchConfig",
    "is_loopback_host",
    "keys_of",
    "load_config",
    "plain_http_problem",
    "sections",
]

ENV_PREFIX = "EDGE_RUNNER__"
TOKEN_ENV = "EDGE_RUNNER_TOKEN"
MIB = 1024 * 1024
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


def _base_url(value: Any, key: str) -> str:
    return _url(value, key).rstrip("/")


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


def _device_id(value: Any, key: str) -> str:
    if not isinstance(value, str) or not is_valid_device_id(value):
        raise _fail(key, "letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)", value)
    return value


_PATH = _string(what="a path")
_COLUMN_NAME = _string(_COLUMN, "a column name")


# --- the table: one dataclass field per key -------------------------------------------------------------

REQUIRED: Any = MISSING  # a key that must be given: it has no default


def setting(default: Any, read: Reader, *, path: bool = False) -> Any:
    """One configuration key: its default (``REQUIRED`` for none) and its reader; ``path``: a file path
    resolved against the config file's folder."""
    metadata = {"read": read, "path": path}
    if default is REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class HubConfig:
    token: Secret | None = field(repr=False)  # not a key: EDGE_RUNNER_TOKEN or token_file; None: certificate only
    url: str = setting(REQUIRED, _base_url)  # base URL of the hub, e.g. https://hub.plant.local:8700
    token_file: Path | None = setting(None, _PATH, path=True)  # mode 0600; printed once by `edgeloop devices add`
    timeout_s: float = setting(10.0, _number(0, 600, low_open=True))  # seconds per request (connect, each read)
    heartbeat_interval_s: float = setting(60.0, _number(1, 86_400))
    insecure: bool = setting(False, _boolean)  # allow plain http to a host that is not loopback (never by default)


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path | None = setting(None, _PATH, path=True)  # the plant CA (PEM) the hub is verified against
    cert_file: Path | None = setting(None, _PATH, path=True)  # the device's client certificate (PEM)
    key_file: Path | None = setting(None, _PATH, path=True)  # its private key (PEM, mode 0600)
    renew_before_days: float = setting(30.0, _number(0, 3650))  # renew when the certificate ends within this
    renew_check_s: float = setting(3600.0, _number(0, 7 * 86_400, low_open=True))  # how often to look
    system_store: bool = setting(False, _boolean)  # verify the hub against the system's CAs (only when asked)

    def __post_init__(self) -> None:
        pair = "(a client certificate and its key go together)"
        if self.cert_file is not None and self.key_file is None:
            raise ConfigError(f"tls.key_file: required with tls.cert_file {pair}")
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError(f"tls.cert_file: required with tls.key_file {pair}")

    @property
    def client_certificate(self) -> bool:
        return self.cert_file is not None


@dataclass(frozen=True)
class ReleasesConfig:
    trusted_root: Path = setting(REQUIRED, _PATH, path=True)  # the root.json this device trusts on first use
    metadata_url: str = setting("", _url)  # TUF metadata base URL ("": <hub.url>/releases/metadata/)
    targets_url: str = setting("", _url)  # TUF targets base URL ("": <hub.url>/releases/targets/)
    channel: str = setting("canary", _string(CHANNEL_PATTERN, f"a channel name ({CHANNEL_RULE})"))
    poll_interval_s: float = setting(60.0, _number(1, 7 * 86_400))
    poll_jitter: float = setting(0.2, _number(0, 0.9))  # each wait is poll_interval_s * (1 ± jitter)
    max_bundle_bytes: int = setting(256 * MIB, _integer(1024))  # pointer + manifest + model of one release
    download_deadline_s: float = setting(300.0, _number(1, 86_400))  # the whole poll (python-tuf bounds each read)
    read_timeout_s: float = setting(30.0, _number(0.1, 3600))  # connecting, and the longest gap between bytes


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = setting(True, _boolean)
    host: str = setting("127.0.0.1", _string())
    port: int = setting(8765, _integer(0, 65535))
    unix_socket: Path | None = setting(None, _PATH, path=True)  # serve on this socket instead of TCP
    max_body_bytes: int = setting(1 * MIB, _integer(1024, 64 * MIB))


@dataclass(frozen=True)
class UploadConfig:
    mode: str = setting("rows", _choice("rows", "aggregates"))  # "aggregates": summaries only, no rows
    uncertain_margin: float = setting(0.1, _number(0, 1))
    random_rate: float = setting(0.02, _number(0, 1))
    anomalies: bool = setting(True, _boolean)
    batch_rows: int = setting(500, _integer(1, 1_000_000))
    max_batch_bytes: int = setting(1 * MIB, _integer(1024, UPLOAD_MAX_BYTES))  # the hub refuses larger batches
    backoff_initial_s: float = setting(1.0, _number(0.01, 3600))
    backoff_max_s: float = setting(300.0, _number(0.01, 86_400))
    summary_interval_s: float = setting(300.0, _number(1, 86_400))  # aggregates mode: one summary per interval
    spool_quota_bytes: int = setting(256 * MIB, _integer(64 * 1024))
    local_only: tuple[str, ...] = setting((), _names)  # feature or context names that never leave the device
    daily_byte_budget: int = setting(0, _integer(0))  # upload-body bytes per UTC day (0: unlimited)

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(f"upload.backoff_max_s: must be >= upload.backoff_initial_s "
                              f"({self.backoff_initial_s:g})")


@dataclass(frozen=True)
class FeedbackConfig:
    pending_events: int = setting(100_000, _integer(1, 10_000_000))  # predictions kept in memory awaiting a label
    recent_labelled: int = setting(5_000, _integer(1, 1_000_000))  # labelled rows kept for on-device validation


@dataclass(frozen=True)
class DriftConfig:
    window_rows: int = setting(5000, _integer(10, 10_000_000))  # recent rows the PSI is computed on
    min_rows: int = setting(1000, _integer(1, 10_000_000))  # no score before the window holds this many
    moderate_psi: float = setting(0.1, _number(0, 100, low_open=True))  # PSI from here is "moderate" (edge.drift)
    major_psi: float = setting(0.25, _number(0, 100, low_open=True))  # PSI from here is "major" (edge.drift)

    def __post_init__(self) -> None:
        if self.min_rows > self.window_rows:
            raise ConfigError(f"drift.min_rows: must be <= drift.window_rows ({self.window_rows})")
        if self.moderate_psi >= self.major_psi:
            raise ConfigError(f"drift.moderate_psi: must be < drift.major_psi ({self.major_psi:g})")


def _optional(read: Reader) -> Reader:
    """``read``, or None for a key that is left out (TOML has no null: only the default is None)."""
    def optional(value: Any, key: str) -> Any:
        return None if value is None else read(value, key)
    return optional


@dataclass(frozen=True)
class WatchConfig:
    """Overrides of the release manifest's edge policy for the watch after an update (None: the manifest's)."""

    accuracy_floor: float | None = setting(None, _optional(_number(0, 1)))  # roll back below this accuracy
    window_s: float | None = setting(None, _optional(_number(0, 30 * 86_400)))  # how long the watch lasts
    min_feedback: int | None = setting(None, _optional(_integer(1, 10_000_000)))  # outcomes before judging
    max_model_errors: int | None = setting(None, _optional(_integer(0, 10_000_000)))  # roll back above this


def _key_names(value: Any, key: str) -> tuple[str, ...]:
    names = _names(value, key)
    for name in names:
        section, _, rest = name.partition(".")
        if rest not in REMOTE_KEYS.get(section, ()):
            raise ConfigError(f"{key}: {name!r} is not a key a signed policy may set (one of "
                              f"{sorted(f'{s}.{k}' for s, ks in REMOTE_KEYS.items() for k in ks)})")
    return names


@dataclass(frozen=True)
class PolicyConfig:
    """How this runner takes the signed runner policy of its channel (edge.policy_updates)."""

    enabled: bool = setting(True, _boolean)  # follow the channel's signed policy
    pinned: tuple[str, ...] = setting((), _key_names)  # "section.key" a remote policy may not change
    allow_looser_privacy: bool = setting(False, _boolean)  # let a policy loosen upload.local_only / upload.mode


@dataclass(frozen=True)
class ColumnsConfig:
    """Upload column names, used when a release's manifest does not name them."""

    event_id: str = setting("event_id", _COLUMN_NAME)
    device_id: str = setting("device_id", _COLUMN_NAME)
    event_time: str = setting("event_time", _COLUMN_NAME)


@dataclass(frozen=True)
class RunnerConfig:
    source: Path  # the config file (not a key)
    device_id: str = setting(REQUIRED, _device_id)
    state_dir: Path = setting(REQUIRED, _PATH, path=True)
    hub: HubConfig = field(default=REQUIRED)
    releases: ReleasesConfig = field(default=REQUIRED)
    tls: TlsConfig = field(default_factory=TlsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    inputs: InputsConfig | None = None  # [inputs]: live values from MQTT / OPC UA (edge.inputs.settings)


def sections() -> dict[str, type]:
    """Section name -> its dataclass, in file order (from ``RunnerConfig``'s fields)."""
    hints = get_type_hints(RunnerConfig)
    return {f.name: hints[f.name] for f in fields(RunnerConfig) if isinstance(hints[f.name], type)
            and hasattr(hints[f.name], "__dataclass_fields__")}


def keys_of(cls: type) -> dict[str, Field[Any]]:
    """The configuration keys of a section dataclass (or of ``RunnerConfig``'s top level)."""
    return {f.name: f for f in fields(cls) if "read" in f.metadata}


# --- loading ----------------------------------------------------------------------------------------------

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
    return _build(path, raw, environ)


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


def _read(cls: type, table: Mapping[str, Any], prefix: str, base: Path) -> dict[str, Any]:
    """Every key of ``cls`` from ``table``: read and checked, or its default; unknown keys are errors."""
    keys = keys_of(cls)
    if prefix:
        for name in table:
            if name not in keys:
                raise ConfigError(f"{prefix}{name}: unknown key (expected one of {sorted(keys)})")
    out: dict[str, Any] = {}
    for name, spec in keys.items():
        if name in table:
            value = spec.metadata["read"](table[name], f"{prefix}{name}")
            out[name] = _resolve(base, value) if spec.metadata["path"] else value
        elif spec.default is REQUIRED:
            raise ConfigError(f"{prefix}{name}: required key is missing")
        else:
            out[name] = spec.default
    return out


def _build(source: Path, raw: dict[str, Any], environ: Mapping[str, str]) -> RunnerConfig:
    base = source.resolve().parent
    known = sections()
    for name in raw:
        if name not in keys_of(RunnerConfig) and name not in known and name != "inputs":
            raise ConfigError(f"{name}: unknown key (expected one of "
                              f"{sorted([*keys_of(RunnerConfig), *known, 'inputs'])})")
    top = _read(RunnerConfig, raw, "", base)
    values: dict[str, Any] = {}
    for name, cls in known.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a table ([{name}]), got {table!r}")
        read = _read(cls, table, f"{name}.", base)
        if cls is HubConfig:
            read["token"] = None  # read below, once the TLS settings are known
        values[name] = cls(**read)
    hub, tls = values["hub"], values["tls"]
    releases = values["releases"]
    values["releases"] = replace(releases, metadata_url=releases.metadata_url or f"{hub.url}/releases/metadata/",
                                 targets_url=releases.targets_url or f"{hub.url}/releases/targets/")
    _check_transport(hub, tls, values["releases"])
    values["hub"] = replace(hub, token=_token(hub.token_file, environ, required=not _presents_certificate(hub, tls)))
    try:
        inputs = None if "inputs" not in raw else read_inputs(raw["inputs"], top["device_id"], base)
    except InputsError as exc:
        raise ConfigError(str(exc)) from None
    return RunnerConfig(source=source, **top, **values, inputs=inputs)


# --- transport rules ------------------------------------------------------------------------------------

def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (edge.contracts.hub_section.LOOPBACK): traffic that never leaves the machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_problem(url: str) -> str | None:
    """Why ``url`` needs ``insecure``: plain http to a host that is not loopback; None when it does not."""
    parts = urlsplit(url)
    if parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return None
    return f"plain http to {parts.hostname} is unencrypted and unauthenticated"


def _presents_certificate(hub: HubConfig, tls: TlsConfig) -> bool:
    return tls.client_certificate and urlsplit(hub.url).scheme == "https"


def _check_transport(hub: HubConfig, tls: TlsConfig, releases: ReleasesConfig) -> None:
    urls = {"hub.url": hub.url, "releases.metadata_url": releases.metadata_url,
            "releases.targets_url": releases.targets_url}
    for key, url in urls.items():
        problem = plain_http_problem(url)
        if problem is not None and not hub.insecure:
            raise ConfigError(f"{key}: {problem}: use https:// (with tls.ca_file), or set hub.insecure = true "
                              f"to accept that")
    if any(urlsplit(url).scheme == "https" for url in urls.values()) and tls.ca_file is None \
            and not tls.system_store:
        raise ConfigError("tls.ca_file: required for an https hub (the plant CA the hub is verified against; "
                          "or set tls.system_store = true to trust the system's CAs)")
    if tls.ca_file is not None:
        _readable("tls.ca_file", tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        _readable("tls.cert_file", tls.cert_file)
        _private("tls.key_file", tls.key_file)


def _readable(key: str, path: Path) -> None:
    problem = unreadable(key, path)
    if problem is not None:
        raise ConfigError(problem)


def _private(key: str, path: Path) -> None:
    """The file exists, is readable, and is not readable by group or others."""
    problem = not_private(key, path)
    if problem is not None:
        raise ConfigError(problem)


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _token(token_file: Path | None, environ: Mapping[str, str], required: bool) -> Secret | None:
    """The bearer token; None when there is none and it is not ``required`` (a client certificate over https)."""
    from_env = environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return Secret(from_env)
    if token_file is None:
        if not required:
            return None
        raise ConfigError(f"hub.token_file: required key is missing (or set {TOKEN_ENV}, or use a client "
                          f"certificate: tls.cert_file and tls.key_file with an https hub.url)")
    try:
        mode = token_file.stat().st_mode
        text = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"hub.token_file: cannot read {token_file}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"hub.token_file: {token_file} is readable by others (mode {stat.S_IMODE(mode):o}); "
                          f"run: chmod 600 {token_file}")
    if not text:
        raise ConfigError(f"hub.token_file: {token_file} is empty")
    return Secret(text)
