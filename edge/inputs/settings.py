"""The runner's optional ``[inputs]`` section: live values from an MQTT broker or an OPC UA server.

``read_inputs(table, device_id)`` checks the raw TOML table and returns a frozen ``InputsConfig``; every
problem is an ``InputsError`` (a ``ValueError``; edge.config turns it into its ``ConfigError``) whose message
names the key (``inputs.tags[3].source: expected a non-empty string, got 3``). Unknown keys are errors.

Keys (defaults in the dataclasses below): ``protocol`` (``mqtt`` | ``opcua``), ``url`` (``mqtt://host:1883``
or ``opc.tcp://host:4840``), ``client_id`` (default: the device id), ``trigger`` (``complete`` | ``change``
| ``period``) with ``trigger_tag`` (a tag's feature, or ``"key"``) and ``period_s``, ``stale_after_s``,
``reconnect_min_s``/``reconnect_max_s``, ``qos`` (labels and write-back), ``tag_qos`` (tag subscriptions:
0 by default, so a broker never replays old tag values queued while the runner was away), ``username`` and
``password_file`` (MQTT; the file mode 0600, read when connecting), ``ca_file`` (required for ``mqtts://``:
the broker is verified against it, never the system store; its host name is checked) and an optional
client certificate ``cert_file``/``key_file`` (the key 0600); ``[[inputs.tags]]`` (feature, source, field,
stale_after_s, required); ``[inputs.key]`` (source, field, stale_after_s); ``[inputs.output]`` (MQTT:
``topic``, ``retain``; OPC UA: ``nodes``, a table decision field -> node id); ``[inputs.labels]`` (source,
field, ``join`` = ``key`` | ``window``, key_field, key_source, window_s). OPC UA only:
``publishing_interval_ms`` (how often the server sends the changes it collected; the latency floor) and
``queue_size`` (changes a node keeps between two publishes; more are lost, oldest first).

A ``field`` is a path into a JSON payload: dot-separated names and list indexes (``"a.b.0"``); omitted, the
payload itself is the value.

Leaves out: what the values do (edge.inputs.live) and protocol clients. Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.file_checks import not_private, unreadable

__all__ = ["DECISION_FIELDS", "InputsConfig", "InputsError", "KeyConfig", "LabelsConfig", "OutputConfig",
           "TagConfig", "read_inputs", "split_path"]

PROTOCOLS = {"mqtt": ("mqtt", "mqtts"), "opcua": ("opc.tcp",)}
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "opc.tcp": 4840}
DECISION_FIELDS = ("key", "label", "probability", "probabilities", "model_version", "event_id", "at")
KEY_TAG = "key"  # the join key's tag name (trigger_tag = "key")


class InputsError(ValueError):
    """The ``[inputs]`` section is not valid; the message names the key."""


@dataclass(frozen=True)
class TagConfig:
    feature: str  # a manifest feature name
    source: str  # MQTT topic or OPC UA node id
    field: tuple[str, ...] = ()  # path into the payload; () = the payload is the value
    stale_after_s: float | None = None  # None: the section's stale_after_s
    required: bool = True  # False: sent as missing (NaN) when stale or absent


@dataclass(frozen=True)
class KeyConfig:
    source: str
    field: tuple[str, ...] = ()
    stale_after_s: float | None = None


@dataclass(frozen=True)
class OutputConfig:
    topic: str | None = None  # MQTT: the topic decisions are published to (JSON)
    retain: bool = False  # MQTT: published retained
    nodes: Mapping[str, str] = field(default_factory=dict)  # OPC UA: decision field -> node id


@dataclass(frozen=True)
class LabelsConfig:
    source: str
    field: tuple[str, ...] = ()  # path to the label in the payload
    join: str = "key"  # key | window
    key_field: tuple[str, ...] | None = None  # path to the key in the label payload (or in key_source's)
    key_source: str | None = None  # the key is the latest value of this source (OPC UA: a separate part-id node)
    window_s: float = 5.0  # join = window: the newest prediction at most this long before the label


@dataclass(frozen=True)
class InputsConfig:
    protocol: str
    url: str
    client_id: str
    tags: tuple[TagConfig, ...]
    trigger: str = "complete"  # complete | change | period
    trigger_tag: str | None = None
    period_s: float = 1.0
    stale_after_s: float = 10.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    qos: int = 1  # labels and write-back
    tag_qos: int = 0  # tag subscriptions
    username: str | None = None
    password_file: Path | None = None  # mode 0600; read by the adapter when it connects
    ca_file: Path | None = None  # mqtts://: the CA the broker's certificate is verified against
    cert_file: Path | None = None  # mqtts://: a client certificate (with key_file, mode 0600)
    key_file: Path | None = None
    key: KeyConfig | None = None
    output: OutputConfig | None = None
    labels: LabelsConfig | None = None
    join_capacity: int = 10_000  # predictions remembered for their label (oldest evicted, counted); ~0.3 KB each
    publishing_interval_ms: float = 10.0  # OPC UA: how often the server sends the changes it collected
    queue_size: int = 1000  # OPC UA: changes kept per node between two publishes

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS.get(parts.scheme, 0)

    def stale_limit(self, tag: TagConfig | KeyConfig) -> float:
        return self.stale_after_s if tag.stale_after_s is None else tag.stale_after_s

    @property
    def sources(self) -> tuple[str, ...]:
        """Every distinct source to subscribe to, in configuration order."""
        names = [t.source for t in self.tags]
        if self.key is not None:
            names.append(self.key.source)
        if self.labels is not None:
            names.append(self.labels.source)
            if self.labels.key_source is not None:
                names.append(self.labels.key_source)
        return tuple(dict.fromkeys(names))


# --- readers ---------------------------------------------------------------------------------------------

def _fail(key: str, expected: str, value: Any) -> InputsError:
    shown = repr(value)
    return InputsError(f"{key}: expected {expected}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "a non-empty string", value)
    return value


def _number(low: float, high: float) -> Callable[[Any, str], float]:
    def read(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not low < value <= high:
            raise _fail(key, f"a number > {low:g} and <= {high:g}", value)
        return float(value)
    return read


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _choice(*options: str) -> Callable[[Any, str], str]:
    def read(value: Any, key: str) -> str:
        if value not in options:
            raise _fail(key, " or ".join(repr(o) for o in options), value)
        return str(value)
    return read


def split_path(text: str) -> tuple[str, ...]:
    """``"a.b.0"`` -> ``("a", "b", "0")``."""
    return tuple(text.split("."))


def _path(value: Any, key: str) -> tuple[str, ...]:
    text = _text(value, key)
    parts = split_path(text)
    if any(not p for p in parts):
        raise _fail(key, "a field path such as \"value\" or \"data.temp.0\"", value)
    return parts


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "a table", value)
    return value


def _only(table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    for name in table:
        if name not in known:
            raise InputsError(f"{prefix}{name}: unknown key (expected one of {sorted(known)})")


def _required(table: Mapping[str, Any], prefix: str, name: str) -> Any:
    if name not in table:
        raise InputsError(f"{prefix}{name}: required key is missing")
    return table[name]


_STALE = _number(0, 7 * 86_400)


# --- the section -----------------------------------------------------------------------------------------

def read_inputs(raw: Any, device_id: str, base: Path = Path(".")) -> InputsConfig:
    """The checked ``[inputs]`` section (see the module docstring); ``base`` resolves a relative
    ``password_file``."""
    table = _table(raw, "inputs")
    p = "inputs."
    _only(table, p, ("protocol", "url", "client_id", "trigger", "trigger_tag", "period_s", "stale_after_s",
                     "reconnect_min_s", "reconnect_max_s", "qos", "tag_qos", "username", "password_file",
                     "ca_file", "cert_file", "key_file", "join_capacity", "tags", "key", "output", "labels",
                     "publishing_interval_ms", "queue_size"))
    protocol = _choice(*PROTOCOLS)(_required(table, p, "protocol"), p + "protocol")
    url = _url(_required(table, p, "url"), p + "url", protocol)
    client_id = _text(table.get("client_id", device_id), p + "client_id")
    tags = _tags(_required(table, p, "tags"))
    key = None if "key" not in table else _key(table["key"])
    trigger = _choice("complete", "change", "period")(table.get("trigger", "complete"), p + "trigger")
    trigger_tag = None
    if "trigger_tag" in table:
        trigger_tag = _text(table["trigger_tag"], p + "trigger_tag")
        names = [t.feature for t in tags] + ([KEY_TAG] if key is not None else [])
        if trigger_tag not in names:
            raise _fail(p + "trigger_tag", f"a tag's feature or \"key\" with [inputs.key] (one of {names})",
                        trigger_tag)
    if trigger == "change" and trigger_tag is None:
        raise InputsError(f"{p}trigger_tag: required with trigger = \"change\" (the tag whose change makes a "
                          f"prediction)")
    reconnect_min = _number(0, 3600)(table.get("reconnect_min_s", 0.2), p + "reconnect_min_s")
    reconnect_max = _number(0, 86_400)(table.get("reconnect_max_s", 30.0), p + "reconnect_max_s")
    if reconnect_max < reconnect_min:
        raise InputsError(f"{p}reconnect_max_s: must be >= inputs.reconnect_min_s ({reconnect_min:g})")
    qos, tag_qos = table.get("qos", 1), table.get("tag_qos", 0)
    for name, level in (("qos", qos), ("tag_qos", tag_qos)):
        if level not in (0, 1, 2) or isinstance(level, bool):
            raise _fail(p + name, "0, 1 or 2", level)
    username = None if "username" not in table else _text(table["username"], p + "username")
    password_file = None
    if "password_file" in table:
        password_file = _private(p + "password_file", base / Path(_text(table["password_file"],
                                                                           p + "password_file")).expanduser())
    capacity = table.get("join_capacity", 10_000)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 10_000_000:
        raise _fail(p + "join_capacity", "an integer >= 1 and <= 10000000", capacity)
    ca_file, cert_file, key_file = _tls_files(table, base, urlsplit(url).scheme == "mqtts")
    output = None if "output" not in table else _output(table["output"], protocol)
    labels = None if "labels" not in table else _labels(table["labels"], key is not None)
    opcua_only = [name for name in ("publishing_interval_ms", "queue_size") if name in table]
    if protocol != "opcua" and opcua_only:
        raise InputsError(f"{p}{opcua_only[0]}: only with protocol = \"opcua\"")
    publishing = _number(1, 60_000)(table.get("publishing_interval_ms", 10.0), p + "publishing_interval_ms")
    queue_size = table.get("queue_size", 1000)
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or not 1 <= queue_size <= 1_000_000:
        raise _fail(p + "queue_size", "an integer >= 1 and <= 1000000", queue_size)
    if protocol == "opcua":
        _check_node_ids(tags, key, output, labels)
    return InputsConfig(
        protocol=protocol, url=url, client_id=client_id, tags=tags, trigger=trigger, trigger_tag=trigger_tag,
        period_s=_number(0, 86_400)(table.get("period_s", 1.0), p + "period_s"),
        stale_after_s=_STALE(table.get("stale_after_s", 10.0), p + "stale_after_s"),
        reconnect_min_s=reconnect_min, reconnect_max_s=reconnect_max, qos=int(qos), tag_qos=int(tag_qos),
        username=username, password_file=password_file, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        key=key, output=output,
        labels=labels, join_capacity=capacity, publishing_interval_ms=publishing, queue_size=queue_size,
    )


# An OPC UA node id in its string form (OPC 10000-6, 5.3.1.10): [ns=<index>; | nsu=<uri>;] then i=<number>,
# s=<text>, g=<guid> or b=<base64>. Checked here so a typo is a config error naming the key, not a client error.
_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
                      r"|b=[A-Za-z0-9+/]+={0,2})$", re.DOTALL)


def _check_node_ids(tags: tuple[TagConfig, ...], key: KeyConfig | None, output: OutputConfig | None,
                    labels: LabelsConfig | None) -> None:
    named = [(f"inputs.tags[{i}].source", t.source) for i, t in enumerate(tags)]
    if key is not None:
        named.append(("inputs.key.source", key.source))
    if output is not None:
        named += [(f"inputs.output.nodes.{name}", node) for name, node in output.nodes.items()]
    if labels is not None:
        named.append(("inputs.labels.source", labels.source))
        if labels.key_source is not None:
            named.append(("inputs.labels.key_source", labels.key_source))
    for where, node in named:
        if not _NODE_ID.match(node):
            raise _fail(where, "an OPC UA node id such as ns=2;s=press-07.air_temp_k or i=2258", node)


def _tls_files(table: Mapping[str, Any], base: Path, tls: bool) -> tuple[Path | None, Path | None, Path | None]:
    """``ca_file``, ``cert_file``, ``key_file``: read and checked; only with an ``mqtts://`` URL."""
    p = "inputs."
    given = [name for name in ("ca_file", "cert_file", "key_file") if name in table]
    if not tls:
        if given:
            raise InputsError(f"{p}{given[0]}: only with an mqtts:// url (TLS to the broker)")
        return None, None, None
    if "ca_file" not in table:
        raise InputsError(f"{p}ca_file: required with an mqtts:// url (the CA the broker is verified against)")
    if ("cert_file" in table) != ("key_file" in table):
        missing, present = ("key_file", "cert_file") if "cert_file" in table else ("cert_file", "key_file")
        raise InputsError(f"{p}{missing}: required with {p}{present} (a client certificate and its key go together)")
    files = {name: base / Path(_text(table[name], p + name)).expanduser() for name in given}
    for name in ("ca_file", "cert_file"):
        if name in files:
            _readable(p + name, files[name])
    if "key_file" in files:
        _private(p + "key_file", files["key_file"])
    return files["ca_file"], files.get("cert_file"), files.get("key_file")


def _readable(key: str, path: Path) -> None:
    problem = unreadable(key, path)
    if problem is not None:
        raise InputsError(problem)


def _private(key: str, path: Path) -> Path:
    """A readable file that group and others cannot read."""
    problem = not_private(key, path)
    if problem is not None:
        raise InputsError(problem)
    return path


def _url(value: Any, key: str, protocol: str) -> str:
    schemes = PROTOCOLS[protocol]
    example = {"mqtt": "mqtt://127.0.0.1:1883", "opcua": "opc.tcp://127.0.0.1:4840"}[protocol]
    if not isinstance(value, str):
        raise _fail(key, f"a URL such as {example}", value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # a bad port raises here
    except ValueError:
        raise _fail(key, f"a URL such as {example}", value) from None
    if parts.scheme not in schemes or not parts.hostname:
        raise _fail(key, f"a {protocol} URL such as {example}", value)
    if parts.username is not None or parts.password is not None:
        raise InputsError(f"{key}: credentials in the URL are not supported (they would show in logs and the "
                          f"state report)")
    return value


def _tags(raw: Any) -> tuple[TagConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail("inputs.tags", "one or more [[inputs.tags]] tables", raw)
    tags: list[TagConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        p = f"inputs.tags[{i}]."
        table = _table(item, p[:-1])
        _only(table, p, ("feature", "source", "field", "stale_after_s", "required"))
        feature = _text(_required(table, p, "feature"), p + "feature")
        if feature in seen:
            raise InputsError(f"{p}feature: {feature!r} is mapped twice")
        if feature == KEY_TAG:
            raise InputsError(f"{p}feature: \"key\" is the join key's name; map it with [inputs.key]")
        seen.add(feature)
        tags.append(TagConfig(
            feature=feature, source=_text(_required(table, p, "source"), p + "source"),
            field=_path(table["field"], p + "field") if "field" in table else (),
            stale_after_s=_STALE(table["stale_after_s"], p + "stale_after_s") if "stale_after_s" in table else None,
            required=_flag(table.get("required", True), p + "required"),
        ))
    return tuple(tags)


def _key(raw: Any) -> KeyConfig:
    p = "inputs.key."
    table = _table(raw, "inputs.key")
    _only(table, p, ("source", "field", "stale_after_s"))
    return KeyConfig(source=_text(_required(table, p, "source"), p + "source"),
                     field=_path(table["field"], p + "field") if "field" in table else (),
                     stale_after_s=_STALE(table["stale_after_s"], p + "stale_after_s") if "stale_after_s" in table
                     else None)


def _output(raw: Any, protocol: str) -> OutputConfig:
    p = "inputs.output."
    table = _table(raw, "inputs.output")
    if protocol == "mqtt":
        _only(table, p, ("topic", "retain"))
        topic = _text(_required(table, p, "topic"), p + "topic")
        if "+" in topic or "#" in topic:
            raise _fail(p + "topic", "a topic without wildcards (+, #)", topic)
        return OutputConfig(topic=topic, retain=_flag(table.get("retain", False), p + "retain"))
    _only(table, p, ("nodes",))
    nodes = _table(_required(table, p, "nodes"), p + "nodes")
    if not nodes:
        raise _fail(p + "nodes", f"a table of decision fields to node ids ({', '.join(DECISION_FIELDS)})", nodes)
    for name, node in nodes.items():
        if name not in DECISION_FIELDS:
            raise InputsError(f"{p}nodes.{name}: unknown decision field (expected one of {list(DECISION_FIELDS)})")
        _text(node, f"{p}nodes.{name}")
    return OutputConfig(nodes=dict(nodes))


def _labels(raw: Any, has_key: bool) -> LabelsConfig:
    p = "inputs.labels."
    table = _table(raw, "inputs.labels")
    _only(table, p, ("source", "field", "join", "key_field", "key_source", "window_s"))
    join = _choice("key", "window")(table.get("join", "key"), p + "join")
    key_field = _path(table["key_field"], p + "key_field") if "key_field" in table else None
    key_source = _text(table["key_source"], p + "key_source") if "key_source" in table else None
    if join == "key":
        if key_field is None and key_source is None:
            raise InputsError(f"{p}key_field: required with join = \"key\" (the label payload's part id; or "
                              f"key_source, or join = \"window\")")
        if not has_key:
            raise InputsError(f"{p}join: \"key\" needs [inputs.key] (the value that names each part, which "
                              f"predictions are made with)")
    return LabelsConfig(source=_text(_required(table, p, "source"), p + "source"),
                        field=_path(table["field"], p + "field") if "field" in table else (), join=join,
                        key_field=key_field, key_source=key_source,
                        window_s=_number(0, 86_400)(table.get("window_s", 5.0), p + "window_s"))
