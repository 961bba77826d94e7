"""What the demo records as it runs: per-device samples and fleet events, and summaries of them.

``Timeline`` holds ``Sample``s (one per device per plant tick: version, rolling accuracy on the truth, drift,
rows and bytes so far), ``Rate``s (one per group per tick: the random sampling rate its runners' live upload
policies set, and the share of its labelled rows the random rule actually uploaded) and ``Event``s (publish,
activate, reject, promote, rollback, quarantine, drift, retrain, gate_blocked, ...). Appends are thread safe
(the plant and the orchestrator's flows append from different threads); ``to_json``/``from_json`` round-trip
everything. The summary helpers turn samples into the series the report draws: accuracy per group per time
bucket, drift per group, sampling rates per group, devices per version over time, cumulative raw vs uploaded
bytes, and where each group first ran each version.

Times: ``t_h`` is simulated hours since the plant started, ``wall_s`` real seconds since the timeline was
created (``Timeline.wall()``). Leaves out producing samples (``edgeloop.demo.plant``) and drawing them
(``edgeloop.demo.report``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "Event",
    "Rate",
    "Sample",
    "Timeline",
    "accuracy_by_group",
    "adoption",
    "cumulative_bytes",
    "drift_by_group",
    "sampling_by_group",
    "version_starts",
]

NO_MODEL = "none"  # the version name summaries use for a device without a model


@dataclass(frozen=True)
class Sample:
    """One device at the end of one plant tick. ``raw_bytes``/``uploaded_bytes``/``rows_seen`` are
    cumulative since the plant started; ``correct``/``scored`` count this tick's predictions that matched
    the truth / were scored (so buckets can be averaged exactly)."""

    t_h: float
    wall_s: float
    device: str
    group: str  # "canary" | "stable"
    model_version: str | None
    accuracy: float | None  # rolling, on the truth, over the device's last window of predictions
    drift: float | None  # max feature PSI the runner reports
    rows_seen: int
    raw_bytes: int
    uploaded_bytes: int
    correct: int = 0
    scored: int = 0
    skipped: int = 0  # rows this tick the runner could not answer (no model, input or model error)


@dataclass(frozen=True)
class Rate:
    """The random sampling of one group of devices during one plant tick."""

    t_h: float  # simulated hour at the tick's end
    wall_s: float
    group: str  # "canary" | "stable"
    configured: float | None  # mean ``random_rate`` of the group's runners' live upload policies (None: no runner)
    labels: int  # labels the group's runners joined to a prediction this tick
    random: int  # of them, rows the random rule spooled for upload


@dataclass(frozen=True)
class Event:
    """Something that happened to the fleet or the pipeline; ``device`` when it concerns one device."""

    t_h: float
    wall_s: float
    kind: str  # publish | activate | reject | promote | rollback | quarantine | drift | retrain | gate_blocked | ...
    version: str | None
    detail: str
    device: str | None = None


class Timeline:
    """Samples and events in append order. Thread safe; the lists returned are copies."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._rates: list[Rate] = []
        self._events: list[Event] = []

    def wall(self) -> float:
        """Seconds since this timeline was created (the ``wall_s`` of a sample or event made now)."""
        return round(time.monotonic() - self.started, 3)

    def add_sample(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def add_samples(self, samples: list[Sample]) -> None:
        with self._lock:
            self._samples.extend(samples)

    def add_rates(self, rates: list[Rate]) -> None:
        with self._lock:
            self._rates.extend(rates)

    def add_event(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def event(self, t_h: float, kind: str, version: str | None = None, detail: str = "",
              device: str | None = None) -> Event:
        """Record an event happening now (wall clock from ``wall()``) at simulated time ``t_h``."""
        made = Event(t_h, self.wall(), kind, version, detail, device)
        self.add_event(made)
        return made

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    @property
    def rates(self) -> list[Rate]:
        with self._lock:
            return list(self._rates)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def last_t_h(self) -> float:
        """Simulated time of the newest sample (0.0 before the first)."""
        with self._lock:
            return self._samples[-1].t_h if self._samples else 0.0

    def to_json(self) -> str:
        with self._lock:
            doc = {"samples": [asdict(s) for s in self._samples], "rates": [asdict(r) for r in self._rates],
                   "events": [asdict(e) for e in self._events]}
        return json.dumps(doc, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        doc = json.loads(text)
        timeline = cls()
        timeline.add_samples([Sample(**_known(Sample, row)) for row in doc.get("samples", [])])
        timeline.add_rates([Rate(**_known(Rate, row)) for row in doc.get("rates", [])])  # none before issue 15
        for row in doc.get("events", []):
            timeline.add_event(Event(**_known(Event, row)))
        return timeline


def _known(kind: type, row: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in row.items() if k in names}


def _bucket(t_h: float, bucket_h: float) -> float:
    """Start of the bucket ``t_h`` falls in; a sample at a tick's end belongs to the bucket it closes."""
    return max(0.0, math.ceil(t_h / bucket_h - 1e-9) - 1) * bucket_h


def accuracy_by_group(samples: list[Sample], bucket_h: float) -> dict[str, list[tuple[float, float]]]:
    """group -> [(bucket end hour, accuracy)]: this-tick counts pooled per bucket when present, else the
    mean of the samples' rolling accuracies. Buckets without a scored row are left out."""
    correct: dict[tuple[str, float], int] = defaultdict(int)
    scored: dict[tuple[str, float], int] = defaultdict(int)
    rolling: dict[tuple[str, float], list[float]] = defaultdict(list)
    for s in samples:
        key = (s.group, _bucket(s.t_h, bucket_h))
        correct[key] += s.correct
        scored[key] += s.scored
        if s.accuracy is not None:
            rolling[key].append(s.accuracy)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key in sorted(set(scored) | set(rolling)):
        group, start = key
        if scored[key]:
            out[group].append((start + bucket_h, correct[key] / scored[key]))
        elif rolling[key]:
            out[group].append((start + bucket_h, sum(rolling[key]) / len(rolling[key])))
    return dict(out)


def drift_by_group(samples: list[Sample], bucket_h: float) -> dict[str, list[tuple[float, float]]]:
    """group -> [(bucket end hour, mean of the devices' max-feature PSI)]; samples without drift skipped."""
    values: dict[tuple[str, float], list[float]] = defaultdict(list)
    for s in samples:
        if s.drift is not None:
            values[(s.group, _bucket(s.t_h, bucket_h))].append(s.drift)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (group, start), found in sorted(values.items()):
        out[group].append((start + bucket_h, sum(found) / len(found)))
    return dict(out)


def sampling_by_group(rates: list[Rate], bucket_h: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """group -> {"configured": [(bucket end hour, mean configured random rate)], "used": [(bucket end hour,
    random-rule rows / labels, pooled over the bucket)]}. Buckets without a configured rate (or without a
    label, for "used") are left out."""
    configured: dict[tuple[str, float], list[float]] = defaultdict(list)
    labels: dict[tuple[str, float], int] = defaultdict(int)
    random: dict[tuple[str, float], int] = defaultdict(int)
    for r in rates:
        key = (r.group, _bucket(r.t_h, bucket_h))
        if r.configured is not None:
            configured[key].append(r.configured)
        labels[key] += r.labels
        random[key] += r.random
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key in sorted(set(configured) | set(labels)):
        group, start = key
        lines = out.setdefault(group, {"configured": [], "used": []})
        if configured[key]:
            lines["configured"].append((start + bucket_h, sum(configured[key]) / len(configured[key])))
        if labels[key]:
            lines["used"].append((start + bucket_h, random[key] / labels[key]))
    return out


def _latest_per_tick(samples: list[Sample]) -> list[tuple[float, dict[str, Sample]]]:
    """[(t_h, device -> its newest sample at or before t_h)] for every distinct sample time."""
    latest: dict[str, Sample] = {}
    out: list[tuple[float, dict[str, Sample]]] = []
    for s in sorted(samples, key=lambda s: (s.t_h, s.wall_s)):
        if out and out[-1][0] == s.t_h:
            latest[s.device] = s
            out[-1] = (s.t_h, dict(latest))
        else:
            latest[s.device] = s
            out.append((s.t_h, dict(latest)))
    return out


def adoption(samples: list[Sample]) -> list[tuple[float, dict[str, int]]]:
    """[(t_h, version -> devices running it)] at every sample time; no model counts as ``NO_MODEL``."""
    out = []
    for t_h, latest in _latest_per_tick(samples):
        counts: dict[str, int] = defaultdict(int)
        for s in latest.values():
            counts[s.model_version or NO_MODEL] += 1
        out.append((t_h, dict(counts)))
    return out


def cumulative_bytes(samples: list[Sample]) -> list[tuple[float, int, int]]:
    """[(t_h, raw bytes, uploaded bytes)] summed over the fleet (each device's newest sample)."""
    return [(t_h, sum(s.raw_bytes for s in latest.values()), sum(s.uploaded_bytes for s in latest.values()))
            for t_h, latest in _latest_per_tick(samples)]


def version_starts(samples: list[Sample]) -> list[tuple[float, str, str]]:
    """[(t_h, group, version)]: the first time any device of a group reported running a version."""
    seen: set[tuple[str, str]] = set()
    out = []
    for s in sorted(samples, key=lambda s: (s.t_h, s.wall_s)):
        if s.model_version is not None and (s.group, s.model_version) not in seen:
            seen.add((s.group, s.model_version))
            out.append((s.t_h, s.group, s.model_version))
    return out
