"""The live-input adapter interface: what a plant-protocol client (MQTT, OPC UA) gives the runner and gets from it.

A protocol module (``edge.inputs.mqtt``, ``edge.inputs.opcua``) exposes one function,
``open_adapter(config: InputsConfig, inbox: Inbox) -> Adapter``; the runner imports the module only when
``[inputs] protocol`` names it, so the base install never imports a protocol library. The split of work:

- the **adapter** (protocol side) connects, subscribes to ``inbox.sources`` (MQTT topics or OPC UA node
  ids, exactly as configured), and hands every value that arrives to ``inbox.deliver(source, payload, at)``
  from whatever thread it runs on; it writes decisions back with ``write(decision)``. ``run(stop)`` is its
  whole life: connect, subscribe, deliver, and on any loss of the connection tell ``inbox.disconnected``,
  wait ``Backoff.next()`` (exponential with full jitter, capped; reset after a connection that held) and
  connect again, until the ``stop`` event is set; then it disconnects and returns (within about a second).
  It never raises for a network problem (it logs and retries); ``run`` raising is a bug (the runner logs it).
- the **inbox** (the runner's core, ``edge.inputs.live``) parses payloads (JSON bytes/str, or a plain value),
  applies field paths, assembles rows, decides when to predict (trigger, staleness), joins labels, counts.

Acknowledgement: ``deliver`` returns only after the value has been fully handled (a label is joined and
spooled durably through ``Runner.feedback``, or refused and counted). It returns True when the message may be
acknowledged to the server (MQTT QoS 1 manual ack), False when it must not be (it could not be kept, e.g.
the disk is full: the server redelivers it). An adapter acknowledges after ``deliver`` returns True, never before.

Write-back: ``write(decision)`` returns False when the decision was not handed to the server because the
connection is down; the adapter must not queue it for later (the control system must not act on a stale
decision): the core counts it as dropped.

Times: ``at`` is ``time.monotonic()`` when the value arrived at the runner (the runner's own clock; a
server's source timestamp is not used for staleness). ``Decision.at`` is wall-clock UTC (ISO 8601) for the
control system.

Leaves out: configuration (edge.inputs.settings), the core's rules (edge.inputs.live and its parts) and any
protocol library (standard library only).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge.inputs.settings import InputsConfig

__all__ = ["Adapter", "Backoff", "Decision", "Inbox", "LabelReading", "OpenAdapter", "Reading"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One tag's value as the core keeps it: ``tag`` is the feature name (or ``"key"`` for the join key),
    ``value`` the value after the field path, ``at`` its arrival (``time.monotonic()``)."""

    tag: str
    value: object
    at: float


@dataclass(frozen=True, slots=True)
class LabelReading:
    """A verdict from the quality station: ``key`` the part/event it names (None with a time-window join),
    ``label`` the class, ``at`` its arrival (``time.monotonic()``)."""

    key: object | None
    label: object
    at: float


@dataclass(frozen=True, slots=True)
class Decision:
    """A prediction to write back where the control system reads it.

    ``key``: the join key's value the row was made with (None without ``[inputs.key]``); ``label`` the
    predicted class; ``probability`` the predicted class's probability; ``probabilities`` class -> probability
    (class names as strings, manifest order); ``event_id`` the runner's id (labels over HTTP use it);
    ``at`` wall-clock UTC ISO 8601 when it was made."""

    key: object | None
    label: object
    probability: float
    probabilities: Mapping[str, float]
    model_version: str
    event_id: int
    at: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # reserved; empty today

    def to_json_dict(self) -> dict[str, Any]:
        """The MQTT payload (and the fields an OPC UA adapter writes)."""
        return {"key": self.key, "label": self.label, "probability": self.probability,
                "probabilities": dict(self.probabilities), "model_version": self.model_version,
                "event_id": self.event_id, "at": self.at}


class Inbox(Protocol):
    """What the runner's core offers an adapter. Thread safe; every method returns quickly (a prediction
    or a spooled label, no network)."""

    @property
    def sources(self) -> tuple[str, ...]:
        """Every distinct source to subscribe to (tags, key, labels), in configuration order."""
        ...

    def deliver(self, source: str, payload: object, at: float) -> bool:
        """A value arrived on ``source``: ``bytes``/``str`` are parsed as JSON (a bare number too), other
        values are taken as they are; then each tag's field path applies. Never raises for bad data (it is
        counted and logged). True: acknowledge it; False: do not (it was not kept; let it be redelivered)."""
        ...

    def connected(self) -> None:
        """The adapter is connected and subscribed (counts a reconnect after the first connection)."""
        ...

    def disconnected(self, reason: str) -> None:
        """The connection is lost (or could not be made); ``reason`` is one short line for the log."""
        ...


class Adapter(Protocol):
    """One protocol client (see the module docstring)."""

    def run(self, stop: threading.Event) -> None:
        """Connect, subscribe, deliver; reconnect with ``Backoff`` on loss; return once ``stop`` is set."""
        ...

    def write(self, decision: Decision) -> bool:
        """Hand ``decision`` to the server now; False (dropped, not queued) when not connected."""
        ...


class OpenAdapter(Protocol):
    """The one function a protocol module exposes as ``open_adapter``."""

    def __call__(self, config: InputsConfig, inbox: Inbox) -> Adapter: ...


class Backoff:
    """Waits between connection attempts: exponential from ``min_s`` doubling up to ``max_s``, full jitter
    (each wait uniform in [min_s, cap]); ``reset()`` after a connection that held."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s, self.max_s = min_s, max(min_s, max_s)
        self._rng = rng or random.Random()
        self._cap = min_s

    def next(self) -> float:
        wait = self._rng.uniform(self.min_s, self._cap)
        self._cap = min(self.max_s, self._cap * 2)
        return wait

    def reset(self) -> None:
        self._cap = self.min_s
