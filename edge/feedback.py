"""Ground truth on the device: a label joined to its prediction, kept for validation, and filtered for upload.

``GroundTruth.feedback(event_id, label, features, context)`` first looks the event id up among the labels
already recorded (the spool's ``labelled`` table: the newest ``feedback.pending_events`` of them, kept
across restarts; the records of labels that spooled no row are written in batches, so a crash may
forget the newest few of those, never one whose row was spooled: edge.spool): the same label again is
answered with the same result and records nothing; a different one is refused with ``LabelConflict``
(answered 409), nothing recorded. That holds whether or not the repeat carries ``features``, so a client
retrying a request whose answer it lost never spools a second row. Requests for one event id are handled
one at a time. Otherwise it takes the prediction ``event_id`` from the recent-predictions ring
(edge.pending) once. An event the ring does not hold (unknown, evicted,
from before a restart) is refused with ``UnknownEvent`` (answered 404), unless the caller sent the row's
``features``: then the row is predicted now (``InferenceSlot.predict_labelled``) and recorded the same
way. Beyond the bound (a label older than the newest ``pending_events`` labels) the record is gone: a
repeat without features is a 404, one with features is taken as new. The label must be one of the
model's classes (``InputError`` otherwise, and the prediction waits for another label). Then, in order:

- the health monitor hears whether the prediction was right (rolling accuracy, the post-activation watch);
- the row (all features, local-only ones included) joins the on-device validation set (``RecentLabelled``,
  which new releases are shadow-scored on: ``labelled_rows``);
- the upload filter (``edge.upload_filter.select``) decides whether and why it goes to the cloud; in rows
  mode a selected row is built with privacy applied (``edge.ground_truth.build_row``) and spooled durably
  with the label's record, in one transaction, before the call returns; in aggregates mode the row only
  feeds the interval's summary (the record is kept alone, written with the next batch).

A full spool evicts rows (edge.spool); that is logged, at most once per 5 minutes with a count.

Leaves out: predicting (edge.serving), sending what was spooled (edge.uploads) and the HTTP API.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge.checks import as_class
from edge.config import RunnerConfig, UploadConfig
from edge.contracts.schema import ClassValue
from edge.ground_truth import build_row
from edge.health import HealthMonitor
from edge.http_api import LabelConflict, Unavailable, UnknownEvent
from edge.inference import InputError, Row
from edge.logs import Throttle
from edge.metrics import Registry
from edge.pending import Pending, PendingPredictions
from edge.serving import InferenceSlot, ServedModel
from edge.spool import PRIORITIES, SUMMARY, LabelRecord, RecentLabelled, Spool, SpoolEntry
from edge.summary import SummaryAccumulator
from edge.upload_filter import UploadPolicy, select

__all__ = ["GroundTruth"]

log = logging.getLogger("edge.runner.spool")


class _OneAtATime:
    """Holds a key while one request handles it; a second request for the same key waits."""

    def __init__(self) -> None:
        self._held: set[int] = set()
        self._free = threading.Condition()

    @contextlib.contextmanager
    def hold(self, key: int) -> Iterator[None]:
        with self._free:
            while key in self._held:
                self._free.wait()
            self._held.add(key)
        try:
            yield
        finally:
            with self._free:
                self._held.discard(key)
                self._free.notify_all()


class GroundTruth:
    """See the module docstring. Thread safe."""

    def __init__(self, config: RunnerConfig, slot: InferenceSlot, pending: PendingPredictions,
                 monitor: HealthMonitor, recent: RecentLabelled, spool: Spool, summary: SummaryAccumulator,
                 metrics: Registry) -> None:
        self._device_id = config.device_id
        self._recent_rows = config.feedback.recent_labelled
        self._slot, self._pending, self._monitor = slot, pending, monitor
        self._recent, self._spool, self._summary = recent, spool, summary
        self.use_upload(config.upload)
        self._events = _OneAtATime()
        self._evictions = Throttle(log)
        self._feedback = metrics.counter("feedback_total", "Labels received", ("outcome",))
        self._spooled = metrics.counter("spooled_rows_total", "Labelled rows spooled for upload", ("reason",))

    def use_upload(self, upload: UploadConfig) -> None:
        """From the next label on, select and build upload rows by ``upload`` (a new runner policy's upload
        section): its rates and margins, its mode (rows or aggregates) and its local-only fields."""
        aggregates = upload.mode == "aggregates"
        self.policy = UploadPolicy(
            uncertain_margin=upload.uncertain_margin, random_rate=upload.random_rate, anomalies=upload.anomalies,
            mode="aggregates" if aggregates else "rows", local_only=upload.local_only,
        )
        self._local_only, self._aggregates = upload.local_only, aggregates

    def tallies(self) -> dict[str, int]:
        """Since the runner started: ``labels`` joined to a prediction (right or wrong; repeats and refusals
        not counted) and rows spooled per upload reason (``random``, ``labelled``, ...). The sampling rate a
        device actually used over a span is the change in ``random`` over the change in ``labels``."""
        out = {"labels": int(self._feedback.value("correct") + self._feedback.value("wrong"))}
        for reason in PRIORITIES:
            if reason != SUMMARY:
                out[reason] = int(self._spooled.value(reason))
        return out

    def labelled_rows(self) -> tuple[np.ndarray, Sequence[object]]:
        """The on-device validation set: the newest labelled rows (features, labels)."""
        return self._recent.rows(self._recent_rows)

    def feedback(self, event_id: int, label: int | str, features: Row | None = None,
                 context: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Join ``label`` to the prediction ``event_id``; spool the row when the upload filter keeps it."""
        with self._events.hold(event_id):
            known = self._spool.labelled(event_id)
            if known is not None:
                return self._repeat(known, label)
            return self._first(event_id, label, features, context)

    def _repeat(self, known: LabelRecord, label: int | str) -> dict[str, Any]:
        """The same label again: the same answer, nothing recorded. Another label: ``LabelConflict``."""
        model = self._slot.current
        value = label if model is None else as_class(label, model.manifest)
        if value != known.label:
            self._feedback.inc("conflict")
            raise LabelConflict(f"event_id {known.event_id}: already labelled {known.label!r}; a different label "
                                f"({value!r}) is refused and nothing was recorded")
        self._feedback.inc("repeated")
        return dict(known.result)

    def _first(self, event_id: int, label: int | str, features: Row | None,
               context: Mapping[str, object] | None) -> dict[str, Any]:
        entry = self._pending.take(event_id)
        if entry is None:
            if features is None:
                self._feedback.inc("unknown_event")
                raise UnknownEvent(
                    f"event_id {event_id}: not a prediction this runner is waiting on and no label recorded "
                    f"for it (the runner keeps the newest {self._pending.capacity} predictions, none from "
                    f"before a restart); to record this label send the row's \"features\" with it")
            prediction, values, maker = self._slot.predict_labelled(features, context, event_id)
            return self._record(Pending(values, prediction, context, time.time()), as_class(label, maker.manifest),
                                maker)
        model = self._slot.current
        if model is None:  # a prediction exists, so a model did
            self._pending.give_back(entry)
            raise Unavailable("no model is active yet")
        try:
            value = as_class(label, model.manifest)  # the same classes as the entry's model (updates check it)
        except InputError:
            self._pending.give_back(entry)  # a typo in the label must not lose the prediction
            raise
        return self._record(entry, value, model)

    def _record(self, entry: Pending, label: ClassValue, model: ServedModel) -> dict[str, Any]:
        prediction, manifest = entry.prediction, model.manifest
        correct = prediction.label == label
        self._monitor.feedback(correct, prediction.model_version)
        self._recent.add(entry.features, label)
        selection = select(self.policy, prediction, label, self._device_id, manifest, entry.features)
        reason = None if selection is None else selection.reason
        result = {
            "event_id": prediction.event_id, "correct": correct, "model_version": prediction.model_version,
            "upload_reason": None if self._aggregates else reason,
            "inclusion_probability": None if selection is None else selection.inclusion_probability,
        }
        record = LabelRecord(prediction.event_id, label, result)
        if self._aggregates:
            self._summary.add(manifest, entry.features, prediction.label, label, prediction.model_version, reason)
            self._spool.remember(record)
        elif selection is not None:
            row = build_row(manifest, prediction, entry.features, label, datetime.fromtimestamp(entry.at, UTC),
                            self._device_id, dict(entry.context or {}), selection,  # type: ignore[arg-type]
                            model.columns, self._local_only)
            evicted = self._spool.put([SpoolEntry(selection.reason, row)], record)
            self._spooled.inc(selection.reason)
            if evicted:
                self._log_eviction(evicted)
        else:
            self._spool.remember(record)
        self._feedback.inc("correct" if correct else "wrong")
        return result

    def _log_eviction(self, evicted: list[str]) -> None:
        counts: dict[str, int] = {}
        for reason in evicted:
            counts[reason] = counts.get(reason, 0) + 1
        which = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        self._evictions.log("evicted", logging.WARNING,
                            f"spool full (quota {self._spool.quota_bytes} bytes): evicted {len(evicted)} rows "
                            f"({which}) to keep a new one; {self._spool.backlog_rows()} rows waiting for upload "
                            f"(totals: {self._spool.evictions()})")
