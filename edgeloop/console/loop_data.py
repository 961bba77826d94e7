"""What the loop page shows: the decision log filtered and flattened, and the trends drawn from it.

- ``decisions(log)``: every readable decision of the loop log (``flows.loop.log``), cached until the file
  changes (size and mtime);
- ``Filters``: fired / all / not fired, a source, a kind; an unknown value is refused in one line naming
  the values that exist;
- ``flatten(observed)``: nested observed values as readable ``name = value`` pairs (``candidate_accuracy.value
  = 0.9123``), ``None`` left out, floats to 4 significant digits, long lists counted instead of dumped;
- ``monitor_series`` / ``soak_series`` / ``gate_series``: the points of the trend charts: the monitor's fleet
  estimated accuracy and drift share with their thresholds over time, each release's estimated accuracy in
  the promote flow's soak checks, and each release's gate metrics across retrain runs.

Leaves out: rendering (``loop_pages``) and writing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from flows.loop.log import read_decisions

__all__ = [
    "KINDS",
    "SOURCES",
    "STATES",
    "Filters",
    "decisions",
    "flatten",
    "gate_series",
    "monitor_series",
    "soak_series",
]

SOURCES = ("monitor", "promote", "manual", "deployment")
KINDS = ("retrain", "retrain_outcome", "collection", "promote", "rollback", "halt", "resume")
STATES = ("fired", "all", "not fired")
LIST_SHOWN = 6  # a longer list is shown as its first items and a count

_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}


def decisions(log: Path) -> list[dict[str, Any]]:
    """Every readable decision, oldest first (re-read only when the file changed)."""
    try:
        st = log.stat()
    except FileNotFoundError:
        return []
    stamp = (st.st_size, st.st_mtime_ns)
    with _lock:
        cached = _cache.get(log)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    entries = read_decisions(log)
    with _lock:
        _cache[log] = (stamp, entries)
    return entries


@dataclass(frozen=True)
class Filters:
    state: str = "fired"
    source: str = ""
    kind: str = ""

    @classmethod
    def of(cls, state: str | None, source: str | None, kind: str | None) -> Filters:
        """From the page's query; ``UserError`` naming the allowed values for anything else."""
        state, source, kind = (state or "fired").strip(), (source or "").strip(), (kind or "").strip()
        for name, value, allowed in (("state", state, STATES), ("source", source, SOURCES), ("kind", kind, KINDS)):
            if value and value not in allowed:
                raise UserError(f"{name} {value!r} is not one of: {', '.join(allowed)}")
        return cls(state, source, kind)

    def keep(self, entry: Mapping[str, Any]) -> bool:
        fired = bool(entry.get("fired"))
        if (self.state == "fired" and not fired) or (self.state == "not fired" and fired):
            return False
        return (not self.source or entry.get("source") == self.source) and (
            not self.kind or entry.get("kind") == self.kind)

    def apply(self, entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The entries kept, newest first."""
        return [e for e in reversed(list(entries)) if self.keep(e)]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def flatten(observed: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``observed`` as (dotted name, readable value) pairs; None and empty values left out."""
    if isinstance(observed, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in observed.items():
            pairs += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    if observed is None or observed == [] or observed == "":
        return []
    if isinstance(observed, list):
        if all(not isinstance(v, Mapping | list) for v in observed):
            shown = ", ".join(_value(v) for v in observed[:LIST_SHOWN])
            more = f" (+{len(observed) - LIST_SHOWN} more)" if len(observed) > LIST_SHOWN else ""
            return [(prefix, shown + more)]
        return [(prefix, f"{len(observed)} items")]
    return [(prefix, _value(observed))]


def _time(entry: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(entry.get("at", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


Series = dict[str, list[tuple[Any, float]]]


def monitor_series(entries: Iterable[Mapping[str, Any]]) -> tuple[Series, Series, dict[str, float]]:
    """(fleet estimated accuracy points, drift share points, thresholds by trigger) from the monitor's passes."""
    accuracy: Series = {"fleet estimated accuracy (IPW)": []}
    drift: Series = {"share of devices drifting": []}
    thresholds: dict[str, float] = {}
    for entry in entries:
        if entry.get("source") != "monitor" or entry.get("kind") != "retrain":
            continue
        at = _time(entry)
        observed = entry.get("observed") or {}
        if at is None:
            continue
        if (value := _number(observed.get("accuracy_drop"))) is not None:
            accuracy["fleet estimated accuracy (IPW)"].append((at, value))
        if (value := _number(observed.get("fleet_drift"))) is not None:
            drift["share of devices drifting"].append((at, value))
        for trigger in entry.get("triggers") or ():
            limit = _number(trigger.get("threshold"))
            if trigger.get("name") in ("accuracy_drop", "fleet_drift") and limit is not None:
                thresholds[str(trigger["name"])] = limit
    return accuracy, drift, thresholds


def soak_series(entries: Iterable[Mapping[str, Any]]) -> Series:
    """Each release's estimated accuracy on the fleet in the promote flow's soak checks, over time."""
    series: Series = {}
    for entry in entries:
        if entry.get("source") != "promote":
            continue
        at = _time(entry)
        observed = entry.get("observed") or {}
        for role in ("candidate", "stable"):
            version = observed.get(role)
            value = _number((observed.get(f"{role}_accuracy") or {}).get("value"))
            if at is not None and version is not None and value is not None:
                series.setdefault(f"release {version}", []).append((at, value))
    return series


def gate_series(releases: Iterable[Any]) -> Series:
    """Each gate metric of each release (``release_data.Release``), x = the release number."""
    series: Series = {}
    for release in sorted(releases, key=lambda r: r.version):
        for name, value in sorted(release.manifest.gate.metrics.items()):
            if _number(value) is not None:
                series.setdefault(name, []).append((float(release.version), float(value)))
    return series
