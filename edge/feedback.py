"""Ground truth on the device: a label joined to its prediction, kept for validation, and filtered for upload.

``GroundTruth.feedback(event_id, label, features, context)`` takes the prediction ``event_id`` from the
recent-predictions ring (edge.pending) once. An unknown, evicted or already labelled event is refused with
``UnknownEvent`` (answered 404), unless the caller sent the row's ``features``: then the row is predicted
now (``InferenceSlot.predict_labelled``) and recorded the same way. The label must be one of the model's
classes (``InputError`` otherwise, and the prediction waits for another label). Then, in order:

- the health monitor hears whether the prediction was right (rolling accuracy, the post-activation watch);
- the row (all features, local-only ones included) joins the on-device validation set (``RecentLabelled``,
  which new releases are shadow-scored on: ``labelled_rows``);
- the upload filter (``edge.upload_filter.select``) decides whether and why it goes to the cloud; in rows
  mode a selected row is built with privacy applied (``edge.ground_truth.build_row``) and spooled durably
  before the call returns; in aggregates mode the row only feeds the interval's summary.

Leaves out: predicting (edge.serving), sending what was spooled (edge.uploads) and the HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge.checks import as_class
from edge.config import RunnerConfig
from edge.contracts.schema import ClassValue
from edge.ground_truth import build_row
from edge.health import HealthMonitor
from edge.http_api import Unavailable, UnknownEvent
from edge.inference import InputError, Row
from edge.metrics import Registry
from edge.pending import Pending, PendingPredictions
from edge.serving import InferenceSlot, ServedModel
from edge.spool import RecentLabelled, Spool, SpoolEntry
from edge.summary import SummaryAccumulator
from edge.upload_filter import UploadPolicy, select

__all__ = ["GroundTruth"]


class GroundTruth:
    """See the module docstring. Thread safe."""

    def __init__(self, config: RunnerConfig, slot: InferenceSlot, pending: PendingPredictions,
                 monitor: HealthMonitor, recent: RecentLabelled, spool: Spool, summary: SummaryAccumulator,
                 metrics: Registry) -> None:
        self._device_id = config.device_id
        self._recent_rows = config.feedback.recent_labelled
        self._local_only = config.upload.local_only
        self._aggregates = config.upload.mode == "aggregates"
        self._slot, self._pending, self._monitor = slot, pending, monitor
        self._recent, self._spool, self._summary = recent, spool, summary
        self.policy = UploadPolicy(
            uncertain_margin=config.upload.uncertain_margin, random_rate=config.upload.random_rate,
            anomalies=config.upload.anomalies, mode="aggregates" if self._aggregates else "rows",
            local_only=config.upload.local_only,
        )
        self._feedback = metrics.counter("feedback_total", "Labels received", ("outcome",))
        self._spooled = metrics.counter("spooled_rows_total", "Labelled rows spooled for upload", ("reason",))

    def labelled_rows(self) -> tuple[np.ndarray, Sequence[object]]:
        """The on-device validation set: the newest labelled rows (features, labels)."""
        return self._recent.rows(self._recent_rows)

    def feedback(self, event_id: int, label: int | str, features: Row | None = None,
                 context: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Join ``label`` to the prediction ``event_id``; spool the row when the upload filter keeps it."""
        entry = self._pending.take(event_id)
        if entry is None:
            if features is None:
                self._feedback.inc("unknown_event")
                raise UnknownEvent(
                    f"event_id {event_id}: unknown or already labelled (the runner keeps the newest "
                    f"{self._pending.capacity} predictions, and none from before a restart); send "
                    f"\"features\" with the label to record it anyway")
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
        if self._aggregates:
            self._summary.add(manifest, entry.features, prediction.label, label, prediction.model_version, reason)
        elif selection is not None:
            row = build_row(manifest, prediction, entry.features, label, datetime.fromtimestamp(entry.at, UTC),
                            self._device_id, dict(entry.context or {}), selection,  # type: ignore[arg-type]
                            model.columns, self._local_only)
            self._spool.put([SpoolEntry(selection.reason, row)])
            self._spooled.inc(selection.reason)
        self._feedback.inc("correct" if correct else "wrong")
        return {
            "event_id": prediction.event_id, "correct": correct, "model_version": prediction.model_version,
            "upload_reason": None if self._aggregates else reason,
            "inclusion_probability": None if selection is None else selection.inclusion_probability,
        }
