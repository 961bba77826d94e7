"""The demo's plant driver: simulated machines feeding real in-process edge runners, tick by tick.

``Plant(runners, ...)`` gives every device (``device_id -> (edge.runner.Runner, group)``) a simulated
machine (``simulator.plant.run_machine``, device ``i`` in insertion order). Each ``tick()`` generates the
next ``rows_per_tick`` rows per device, asks the device's runner for a prediction per row
(``runner.predict_one``), and hands each true label back ``label_delay_rows`` rows later
(``runner.feedback``), as a QA station at the end of the line would. Devices run in parallel threads
(the runner's durable stores fsync per label; threads overlap those waits). After each tick it appends a
``Sample`` per device to the timeline: model version, rolling accuracy on the simulator's truth, the
runner's max-feature PSI, rows seen, raw bytes (CSV of features + label, the measure of
bench/edge_upload.py) and bytes uploaded (the runner's uploader counter). It records a ``drift`` event
when the injected drift starts, and forwards each runner's own state-dir events (activated, blocked,
rolled_back, ...) as timeline events (``DEVICE_EVENTS`` maps their names: activate, reject, rollback, ...).

``device_rows`` addresses a machine's stream by row range: rows come in fixed chunks, each from its own
seed stream (``SeedSequence(seed, spawn_key=(device, chunk))``), so any range is the same however it is
asked for, and the drift applies from an exact row. (A chunk boundary looks like a tool and regime change.)

Leaves out: starting runners, the hub, releases and flows (the demo orchestrator), and drawing
(``edgeloop.demo.report``).
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from edge.contracts.errors import UserError
from edge.ground_truth import encode_csv
from edge.http_api import Unavailable, UnknownEvent
from edge.inference import InputError
from edge.policy_updates import NO_CHANGES
from edge.runner import Runner
from edgeloop.demo.timeline import Sample, Timeline
from simulator.plant import DRIFT_KINDS, LABEL_COLUMN, SENSOR_COLUMNS, run_machine

__all__ = ["CHUNK_ROWS", "DEVICE_EVENTS", "GROUPS", "Plant", "device_rows"]

CHUNK_ROWS = 4096  # rows simulated at once per device (one seed stream per chunk)
GROUPS = ("canary", "stable")
# Runner state-dir event -> timeline event kind (others keep their own name).
DEVICE_EVENTS = {"activated": "activate", "blocked": "reject", "release_rejected": "reject",
                 "quarantined": "bundle_quarantined",  # the refused bundle kept aside, not a data batch
                 "rolled_back": "rollback"}
_DAY_S = 86_400.0


@functools.lru_cache(maxsize=64)
def _chunk(device_index: int, chunk: int, seed: int, interval_s: float, drift: str,
           drift_row: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``chunk * CHUNK_ROWS ..`` of one machine: features [rows, sensors] (NaN = dropout), labels."""
    first = chunk * CHUNK_ROWS
    kind, start = "none", 1.0
    if drift != "none" and drift_row is not None and drift_row < first + CHUNK_ROWS:
        kind, start = drift, max(0, drift_row - first) / CHUNK_ROWS
    clock_s = (first * interval_s) % _DAY_S
    sensors, labels = run_machine(np.random.SeedSequence(seed, spawn_key=(device_index, chunk)), CHUNK_ROWS,
                                  interval_s, clock_s, kind, start)
    x = np.column_stack([sensors[c] for c in SENSOR_COLUMNS])
    x.flags.writeable = False
    labels.flags.writeable = False
    return x, labels


def device_rows(device_index: int, first_row: int, rows: int, seed: int, minutes_per_row: float,
                drift: str = "none", drift_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``first_row .. first_row + rows`` of machine ``device_index``: features in ``SENSOR_COLUMNS``
    order (NaN for a dropout) and 0/1 labels. ``drift`` (a ``simulator.plant.DRIFT_KINDS`` kind) applies
    from row ``drift_row`` on (never when None)."""
    if drift not in DRIFT_KINDS:
        raise UserError(f"drift: unknown kind {drift!r}; choose one of: {', '.join(DRIFT_KINDS)}")
    if first_row < 0 or rows < 0:
        raise ValueError(f"expected first_row >= 0 and rows >= 0, got {first_row} and {rows}")
    interval_s = float(minutes_per_row) * 60.0
    parts_x, parts_y = [], []
    row, end = first_row, first_row + rows
    while row < end:
        chunk, offset = divmod(row, CHUNK_ROWS)
        take = min(end - row, CHUNK_ROWS - offset)
        x, y = _chunk(device_index, chunk, seed, interval_s, drift, drift_row)
        parts_x.append(x[offset : offset + take])
        parts_y.append(y[offset : offset + take])
        row += take
    if not parts_x:
        return np.zeros((0, len(SENSOR_COLUMNS))), np.zeros(0, dtype=np.int64)
    return np.concatenate(parts_x), np.concatenate(parts_y)


@dataclass
class _Device:
    """One device's place in the plant: its runner, group, labels in flight and tallies."""

    index: int
    name: str
    runner: Runner
    group: str
    in_flight: deque[tuple[int, int]] = field(default_factory=deque)  # (event_id, true label), oldest first
    outcomes: deque[bool] = field(default_factory=deque)  # correct or not, newest last (bounded: the window)
    rows_seen: int = 0
    raw_bytes: int = 0
    skipped: int = 0
    feedback_sent: int = 0
    feedback_lost: int = 0
    events_seen: int = 0  # highest state-dir event seq forwarded to the timeline


class Plant:
    """See the module docstring. ``tick()`` advances every device by ``rows_per_tick`` rows."""

    def __init__(self, runners: Mapping[str, tuple[Runner, str]], timeline: Timeline, *, seed: int = 0,
                 rows_per_tick: int = 200, minutes_per_row: float = 1.0, label_delay_rows: int = 20,
                 drift: str = "none", drift_start_h: float | None = None, accuracy_window: int = 500) -> None:
        if drift not in DRIFT_KINDS:
            raise UserError(f"drift: unknown kind {drift!r}; choose one of: {', '.join(DRIFT_KINDS)}")
        if drift != "none" and (drift_start_h is None or drift_start_h < 0):
            raise UserError("drift_start_h: give the simulated hour (>= 0) the drift starts at")
        if rows_per_tick < 1 or minutes_per_row <= 0 or label_delay_rows < 0 or accuracy_window < 1:
            raise UserError("expected rows_per_tick >= 1, minutes_per_row > 0, label_delay_rows >= 0 "
                            "and accuracy_window >= 1")
        unknown = {group for _, group in runners.values()} - set(GROUPS)
        if unknown:
            raise UserError(f"group: expected one of {', '.join(GROUPS)}, got {', '.join(sorted(unknown))}")
        self.timeline = timeline
        self.seed = seed
        self.rows_per_tick = rows_per_tick
        self.minutes_per_row = float(minutes_per_row)
        self.label_delay_rows = label_delay_rows
        self.accuracy_window = accuracy_window
        self.drift = drift
        self.drift_row = None if drift == "none" or drift_start_h is None else math.ceil(
            drift_start_h * 60.0 / self.minutes_per_row - 1e-9)
        self.devices = [_Device(i, name, runner, group, outcomes=deque(maxlen=accuracy_window))
                        for i, (name, (runner, group)) in enumerate(runners.items())]
        self.row = 0  # rows every device has been through
        self._hour_marks: list[tuple[float, float]] = [(time.time(), 0.0)]  # (epoch, simulated hour) per tick
        self._lock = threading.Lock()  # one tick at a time
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.devices)), thread_name_prefix="demo-plant")
        self._raw_header = {d.name: False for d in self.devices}

    def __enter__(self) -> Plant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def t_h(self) -> float:
        """Simulated hours the plant has run."""
        return self.row * self.minutes_per_row / 60.0

    @property
    def drifting(self) -> bool:
        return self.drift_row is not None and self.row > self.drift_row

    def tick(self) -> list[Sample]:
        """Advance every device by ``rows_per_tick`` rows; the samples recorded (also in the timeline)."""
        with self._lock:
            first = self.row
            end = first + self.rows_per_tick
            if self.drift_row is not None and first <= self.drift_row < end:
                at_h = self.drift_row * self.minutes_per_row / 60.0
                self.timeline.event(at_h, "drift", None, f"{self.drift} drift injected into every machine")
            results = list(self._pool.map(lambda d: self._run(d, first), self.devices))
            self.row = end
            self._hour_marks.append((time.time(), self.t_h))  # from now on the plant stands at this hour
            wall = self.timeline.wall()
            samples = [self._sample(d, correct, scored, skipped, wall) for d, (correct, scored, skipped)
                       in zip(self.devices, results, strict=True)]
            self.timeline.add_samples(samples)
            return samples

    def run(self, ticks: int) -> list[Sample]:
        out: list[Sample] = []
        for _ in range(ticks):
            out.extend(self.tick())
        return out

    def flush_labels(self) -> int:
        """Send every label still in flight now (end of a run); how many were sent."""
        with self._lock:
            return sum(self._feedback(d, 0) for d in self.devices)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per device: rows seen, rows skipped, labels sent and lost, labels still in flight."""
        return {d.name: {"rows_seen": d.rows_seen, "skipped": d.skipped, "feedback_sent": d.feedback_sent,
                         "feedback_lost": d.feedback_lost, "in_flight": len(d.in_flight)} for d in self.devices}

    # -- one device, one tick (runs in a pool thread) ---------------------------------------------------

    def _run(self, device: _Device, first: int) -> tuple[int, int, int]:
        x, y = device_rows(device.index, first, self.rows_per_tick, self.seed, self.minutes_per_row,
                           self.drift, self.drift_row)
        correct = scored = skipped = 0
        labels = y.tolist()
        rows = [[None if v != v else v for v in row] for row in x.tolist()]
        for values, label in zip(rows, labels, strict=True):
            try:
                prediction = device.runner.predict_one(dict(zip(SENSOR_COLUMNS, values, strict=True)))
            except (Unavailable, InputError):
                skipped += 1
            else:
                hit = prediction.label == label
                correct += hit
                scored += 1
                device.outcomes.append(hit)
                device.in_flight.append((prediction.event_id, label))
            self._feedback(device, self.label_delay_rows)
        device.rows_seen += len(labels)
        device.skipped += skipped
        device.raw_bytes += self._raw_bytes(device, x, labels)
        return correct, scored, skipped

    def _feedback(self, device: _Device, keep: int) -> int:
        """Send labels until at most ``keep`` are in flight; how many were sent."""
        sent = 0
        while len(device.in_flight) > keep:
            event_id, label = device.in_flight.popleft()
            try:
                device.runner.feedback(event_id, label)
            except (UnknownEvent, Unavailable, InputError):
                device.feedback_lost += 1
            else:
                device.feedback_sent += 1
                sent += 1
        return sent

    def _raw_bytes(self, device: _Device, x: np.ndarray, labels: list[int]) -> int:
        """CSV bytes of these rows (features + label), one header per device over the whole run."""
        columns = [*SENSOR_COLUMNS, LABEL_COLUMN]
        rows = [dict(zip(columns, [*(None if v != v else v for v in row), label], strict=True))
                for row, label in zip(x.tolist(), labels, strict=True)]
        size = len(encode_csv(rows, columns))
        if self._raw_header[device.name]:
            size -= len(encode_csv([], columns))
        self._raw_header[device.name] = True
        return size

    def _forward_events(self, device: _Device) -> None:
        """The runner's state-dir events not forwarded yet, as timeline events at the simulated hour the plant
        was at when the runner wrote them (its ``at``), not at the tick that reads them."""
        for found in device.runner.state.events():
            seq = int(found.get("seq", 0))
            if seq <= device.events_seen:
                continue
            device.events_seen = seq
            kind = str(found.get("event", "device_event"))
            if kind == "config_applied" and found.get("detail") == NO_CHANGES:
                continue  # a policy version that changed only other devices' overrides: nothing to show
            detail = f"{device.name} ({device.group}): {kind}" + (f": {found['detail']}" if found.get("detail") else "")
            version = found.get("version")
            self.timeline.event(self._plant_hour_at(found.get("at")), DEVICE_EVENTS.get(kind, kind),
                                None if version is None else str(version), detail, device.name)

    def _plant_hour_at(self, at: object) -> float:
        """The simulated hour the plant stood at at wall-clock time ``at`` (ISO 8601), or now when unreadable."""
        try:
            stamp = datetime.fromisoformat(str(at)).timestamp()
        except ValueError:
            return self.t_h
        index = bisect.bisect_right(self._hour_marks, stamp, key=lambda mark: mark[0]) - 1
        return self._hour_marks[max(index, 0)][1]

    def _sample(self, device: _Device, correct: int, scored: int, skipped: int, wall: float) -> Sample:
        runner = device.runner
        self._forward_events(device)
        version = runner.model_version
        report = runner.state_report()
        drift = max(report["drift"].values()) if report["drift"] else None
        uploader = runner.uploader
        uploaded = 0 if uploader is None else int(uploader.counters["bytes_uploaded"])
        accuracy = sum(device.outcomes) / len(device.outcomes) if device.outcomes else None
        return Sample(round(self.t_h, 6), wall, device.name, device.group, version, accuracy, drift,
                      device.rows_seen, device.raw_bytes, uploaded, correct, scored, skipped)
