"""The inference slot: the one holder of the model in service, and the prediction hot path through it.

``InferenceSlot.serve(predictor)`` makes a built, warmed Predictor the model in service, together with
what belongs to it (``ServedModel``: its drift reference, the names a context field may not take, its
upload column names, its version's index in the recent-predictions ring, and where in that ring its
predictions start); the swap is one reference assignment under a lock, so a request in flight finishes
on the model it started with. Before the first ``serve`` there is no model: predictions raise
``Unavailable``.

``predict_one(features, context)`` checks the context (``edge.checks``; local-only fields are dropped
here, before anything keeps them), checks the row and runs the model (``edge.inference``), keeps the
prediction in the ring (``edge.pending``: its event id comes from there) and answers a ``Prediction``.
Nothing else happens per call: drift is read from the ring when asked (``drift_scores``), predictions
are counted by the ring, and the health monitor only hears about refused rows and model errors (a model
error answers ``Unavailable``; a refused row re-raises ``InputError``). ``predict_batch`` does the same
for many rows with one model call; ``predict_labelled`` predicts a row that arrived with its label (the
ring keeps it for drift, not for a label).

Leaves out: where predictors come from (edge.updates), joining labels (edge.feedback), the HTTP API.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Protocol

import numpy as np

from edge.checks import check_context
from edge.config import ColumnsConfig, DriftConfig
from edge.contracts.manifest import Manifest
from edge.contracts.record import RECORD_COLUMNS
from edge.drift import DriftMonitor
from edge.ground_truth import UploadColumns
from edge.health import HealthMonitor
from edge.http_api import Unavailable
from edge.inference import InputError, Prediction, Predictor, Row
from edge.pending import PendingPredictions

__all__ = ["NO_MODEL", "InferenceSlot", "PredictOne", "ServedModel"]

log = logging.getLogger("edge.serving")

NO_MODEL = "no model is active yet: the runner is waiting for its first release"


class PredictOne(Protocol):
    """``InferenceSlot.predict_one``'s signature (the runner hands the slot's method out as its own)."""

    def __call__(self, features: Row, context: Mapping[str, object] | None = None) -> Prediction: ...


@dataclass(frozen=True)
class ServedModel:
    """A model in service with what belongs to it (replaced together on a swap)."""

    predictor: Predictor
    drift: DriftMonitor
    columns: UploadColumns  # upload column names (the manifest's, else the configured ones)
    reserved: frozenset[str]  # names a context field may not take (features, label, upload columns)
    index: int  # its version's index in the recent-predictions ring
    since: int  # ring sequence number when it went into service (its drift window starts there)

    @property
    def manifest(self) -> Manifest:
        return self.predictor.manifest


class InferenceSlot:
    """See the module docstring. Thread safe."""

    def __init__(self, pending: PendingPredictions, monitor: HealthMonitor, *, columns: ColumnsConfig | None = None,
                 drift: DriftConfig | None = None, local_only: Sequence[str] = ()) -> None:
        self._pending = pending
        self._monitor = monitor
        self._columns = columns or ColumnsConfig()
        self._drift = drift or DriftConfig()
        self._hidden = frozenset(local_only)
        self._model: ServedModel | None = None
        self._failing = False  # the last model call failed (the health monitor is told when one succeeds again)
        self._lock = threading.Lock()

    # -- the model in service --

    @property
    def current(self) -> ServedModel | None:
        """The model in service (None before the first release)."""
        return self._model

    @property
    def predictor(self) -> Predictor | None:
        model = self._model
        return None if model is None else model.predictor

    @property
    def version(self) -> str | None:
        model = self._model
        return None if model is None else model.predictor.version

    def serve(self, predictor: Predictor) -> ServedModel | None:
        """Put ``predictor`` (built and warmed) in service; returns the model it replaced."""
        manifest = predictor.manifest
        columns = self._upload_columns(manifest)
        reserved = frozenset([*manifest.feature_names, manifest.label, *RECORD_COLUMNS, columns.event_id,
                              columns.device_id, columns.event_time])
        drift = DriftMonitor(manifest, self._drift.window_rows, self._drift.min_rows)
        index = self._pending.register(manifest)
        model = ServedModel(predictor, drift, columns, reserved, index, self._pending.sequence)
        with self._lock:
            previous, self._model = self._model, model
        return previous

    def reconfigure(self, drift: DriftConfig, local_only: Sequence[str]) -> None:
        """A signed runner policy's values from now on: the drift window (the model in service gets a fresh
        monitor on the same window start) and the context names kept off what is stored for a label."""
        with self._lock:
            self._drift, self._hidden = drift, frozenset(local_only)
            model = self._model
            if model is not None and (model.drift.window_rows, model.drift.min_rows) != (drift.window_rows,
                                                                                         drift.min_rows):
                monitor = DriftMonitor(model.manifest, drift.window_rows, drift.min_rows)
                self._model = replace(model, drift=monitor)

    def _upload_columns(self, manifest: Manifest) -> UploadColumns:
        if manifest.columns is not None:
            return UploadColumns(manifest.columns.event_id, manifest.columns.device_id, manifest.columns.event_time)
        c = self._columns
        return UploadColumns(c.event_id, c.device_id, c.event_time)

    # -- predictions --

    def predict_one(self, features: Row, context: Mapping[str, object] | None = None) -> Prediction:
        """One row, kept for its label (see the module docstring). The hot path."""
        model = self._model
        if model is None:
            raise Unavailable(NO_MODEL)
        text = self._context_text(context, model.reserved) if context else None
        predictor = model.predictor
        try:
            values, out_of_range, label, by_class, probabilities = predictor.infer(features)
        except InputError:
            self._monitor.input_error()
            raise
        except Exception as exc:
            self._failed(predictor, exc, "row")
        if self._failing:
            self._recovered()
        event_id = self._pending.record(model.index, probabilities, values, text)
        return Prediction(label, by_class, predictor.version, event_id, out_of_range)

    def predict_labelled(self, features: Row, context: Mapping[str, object] | None, event_id: int
                         ) -> tuple[Prediction, list[float], ServedModel]:
        """One row that came with its label (event ``event_id``, unknown to the ring): its prediction,
        its checked values and the model that made it. Counted and in the drift window like any other.
        The same steps as ``predict_one``, which keeps them inline: one call less on the hot path."""
        model = self._model
        if model is None:
            raise Unavailable(NO_MODEL)
        if context:
            check_context(context, model.reserved)
        predictor = model.predictor
        try:
            values, out_of_range, label, by_class, probabilities = predictor.infer(features)
        except InputError:
            self._monitor.input_error()
            raise
        except Exception as exc:
            self._failed(predictor, exc, "row")
        if self._failing:
            self._recovered()
        self._pending.record(model.index, probabilities, values, waiting=False)
        return Prediction(label, by_class, predictor.version, event_id, out_of_range), values, model

    def _recovered(self) -> None:
        self._failing = False
        self._monitor.model_ok()

    def predict_batch(self, rows: np.ndarray | Sequence[Row], context: Mapping[str, object] | None = None
                      ) -> list[Prediction]:
        """Many rows with one model call, all checked before any is predicted; each kept for its label."""
        model = self._model
        if model is None:
            raise Unavailable(NO_MODEL)
        predictor = model.predictor
        try:
            values, out_of_range = predictor.check_rows(rows)
        except InputError:
            self._monitor.input_error()
            raise
        try:
            probabilities = predictor.probabilities_of_rows(values)
        except Exception as exc:
            self._failed(predictor, exc, "batch")
        text = self._context_text(context, model.reserved) if context else None
        if self._failing:
            self._recovered()
        if not len(values):
            return []
        first = self._pending.record_block(model.index, probabilities, values, text)
        return predictor.describe_rows(probabilities, range(first, first + len(values)), out_of_range)

    def _failed(self, predictor: Predictor, exc: Exception, what: str) -> NoReturn:
        self._failing = True
        self._monitor.model_error()
        log.error("model %s failed on a %s: %s", predictor.version, what, exc)
        raise Unavailable(f"the model failed on this {what} ({type(exc).__name__}); it is being watched") from None

    def _context_text(self, context: Mapping[str, object], reserved: frozenset[str]) -> str | None:
        """The context as kept for the label (JSON text), checked, without its local-only fields."""
        check_context(context, reserved)
        kept: dict[str, Any] = {k: v for k, v in context.items() if k not in self._hidden}
        return json.dumps(kept) if kept else None

    # -- drift --

    def drift_scores(self) -> dict[str, float]:
        """PSI per feature of the model in service's drift window (empty until it holds enough rows)."""
        model = self._model
        if model is None:
            return {}
        return model.drift.scores(self._pending.window(model.since, model.drift.window_rows))
