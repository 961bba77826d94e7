"""A tiny thread-safe metrics registry rendered in the Prometheus text exposition format 0.0.4.

``Registry()`` makes counters and gauges, each one family with fixed label names; every metric name
gets the ``edgeloop_runner_`` prefix (added unless already there) and must match the Prometheus name
pattern, counters must end in ``_total``, and a name is registered once. ``counter.inc(*labels, amount=1)``
and ``gauge.set(value, *labels)`` take label values positionally in the declared order (``labels(...)``
returns a bound child); ``replace`` sets every series at once (a counter's totals from a count kept
elsewhere, read on scrape). Unlabelled families start with one sample at 0; labelled ones have
no samples until first used. ``Registry.on_render(fn)`` registers a callback run before each render, for
gauges that are read on scrape (drift scores, rolling accuracy).

``render()`` writes, per family in registration order, ``# HELP`` (backslash and newline escaped),
``# TYPE`` and its samples sorted by label values; label values escape backslash, double quote and
newline; values print as integers when integral, else ``repr`` floats, with ``NaN``, ``+Inf``, ``-Inf``.
Serve it with ``CONTENT_TYPE``.

Leaves out: histograms and summaries, timestamps, exemplars, OpenMetrics, and removing series
(the runner has a fixed, small label space). Standard library only (no prometheus_client on the edge).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["CONTENT_TYPE", "PREFIX", "Counter", "Gauge", "Registry", "escape_label_value"]

PREFIX = "edgeloop_runner_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_F = TypeVar("_F", bound="_Family")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}
        self._lock = threading.Lock()

    def _key(self, labels: tuple[object, ...]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected label values for {list(self.labelnames)}, got {len(labels)}")
        return tuple(str(v) for v in labels)

    def _add(self, key: tuple[str, ...], amount: float) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def _set(self, key: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def _replace(self, values: dict[tuple[str, ...], float]) -> None:
        keys = {self._key(k): float(v) for k, v in values.items()}
        with self._lock:
            self._values = keys if self.labelnames else {(): keys.get((), 0.0)}

    def value(self, *labels: object) -> float:
        """The current value of one series (0 when it has not been used)."""
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            samples = sorted(self._values.items())
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in samples:
            if key:
                pairs = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(self.labelnames, key, strict=True))
                lines.append(f"{self.name}{{{pairs}}} {_format_value(value)}")
            else:
                lines.append(f"{self.name} {_format_value(value)}")
        return lines


class _Child:
    """One series of a family, label values bound."""

    def __init__(self, family: _Family, key: tuple[str, ...]) -> None:
        self._family = family
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        if isinstance(self._family, Counter) and amount < 0:
            raise ValueError(f"{self._family.name}: a counter only goes up (got {amount})")
        self._family._add(self._key, amount)

    def set(self, value: float) -> None:
        if not isinstance(self._family, Gauge):
            raise TypeError(f"{self._family.name}: only a gauge can be set")
        self._family._set(self._key, value)


class Counter(_Family):
    kind = "counter"

    def inc(self, *labels: object, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        self._add(self._key(labels), amount)

    def labels(self, *labels: object) -> _Child:
        return _Child(self, self._key(labels))

    def replace(self, totals: dict[tuple[str, ...], float]) -> None:
        """Take the totals from a count kept elsewhere (e.g. predictions per model version, counted where
        they are recorded, read on scrape); that count must only go up."""
        self._replace(totals)


class Gauge(_Family):
    kind = "gauge"

    def set(self, value: float, *labels: object) -> None:
        self._set(self._key(labels), value)

    def inc(self, *labels: object, amount: float = 1.0) -> None:
        self._add(self._key(labels), amount)

    def labels(self, *labels: object) -> _Child:
        return _Child(self, self._key(labels))

    def replace(self, values: dict[tuple[str, ...], float]) -> None:
        """Swap in a whole new set of series (e.g. drift per feature after a model change)."""
        self._replace(values)


class Registry:
    """Metric families by name, rendered together. Thread-safe."""

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self._families: dict[str, _Family] = {}
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def counter(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> Counter:
        full = self._name(name)
        if not full.endswith("_total"):
            raise ValueError(f"{full}: a counter's name must end in _total")
        return self._register(Counter(full, help_text, self._labels(full, labelnames)))

    def gauge(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        full = self._name(name)
        return self._register(Gauge(full, help_text, self._labels(full, labelnames)))

    def on_render(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before every render (to refresh gauges read on scrape)."""
        with self._lock:
            self._hooks.append(hook)

    def render(self) -> str:
        with self._lock:
            hooks, families = list(self._hooks), list(self._families.values())
        for hook in hooks:
            hook()
        lines = [line for family in families for line in family.render()]
        return "\n".join(lines) + "\n" if lines else ""

    def _name(self, name: str) -> str:
        full = name if name.startswith(self.prefix) else self.prefix + name
        if not _NAME.match(full):
            raise ValueError(f"{full!r}: not a valid metric name")
        return full

    @staticmethod
    def _labels(name: str, labelnames: tuple[str, ...]) -> tuple[str, ...]:
        for label in labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"{name}: {label!r} is not a valid label name")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"{name}: label names repeat in {list(labelnames)}")
        return tuple(labelnames)

    def _register(self, family: _F) -> _F:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"{family.name}: already registered")
            self._families[family.name] = family
        return family
