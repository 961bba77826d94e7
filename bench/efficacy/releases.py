"""Models as the pipeline makes them, without files: fit (``flows.stages.train.fit``), time split
(``flows.stages.split.split_frame``), the gate's quality and champion rules (``flows.evaluation.decision``
on the numbers evaluate would write, weighted by 1/p like evaluate), reference statistics
(``flows.reference_stats``) and a real ``edge.contracts.manifest.Manifest`` (``build_manifest``).

Predictions use scikit-learn ``predict_proba`` and the shipped decision rule (``edge.contracts.decision``)
instead of the exported ONNX model: export's parity check holds the two within 1e-5, and skipping the
export keeps 36 runs within minutes. ``Model`` duck-types ``edge.inference.Predictor`` for
``edge.shadow.compare`` (``manifest`` and ``predict_batch``). Leaves out ingest's validation, Evidently
reports, signing and the data_validation/parity/drift/artifacts gate rules (the simulated data always
passes them: it is valid, and gate.max_drift_share is 1.0).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edge.contracts.decision import decide_many, positive_index
from edge.contracts.manifest import Lineage, Manifest
from edge.drift import DriftMonitor
from edge.inference import Prediction
from flows.evaluation.bundle import build_manifest, gate_result, reference_from_json
from flows.evaluation.decision import Loaded, champion, quality_floor
from flows.evaluation.quality import sklearn_quality
from flows.params import Params
from flows.reference_stats import reference_stats
from flows.stages.split import split_frame
from flows.stages.train import class_indices, features_matrix, fit, inclusion_weights

__all__ = ["GateOutcome", "Model", "gate", "make_model", "train_candidate"]


@dataclass
class Model:
    """One release: the fitted estimator, its manifest (version = release number) and drift monitor."""

    number: int
    estimator: Any
    manifest: Manifest
    created_s: float  # plant seconds since the plant's start when it was trained
    gate_accuracy: float | None = None
    drift_window: int = 5000

    def __post_init__(self) -> None:
        self.version = str(self.number)
        self.classes = list(self.manifest.classes)
        self.positive = positive_index(self.manifest.classes, self.manifest.positive_class)
        self.threshold = self.manifest.decision_threshold
        self.drift = DriftMonitor(self.manifest, self.drift_window)
        self._blocks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def predict_block(self, key: tuple[int, int], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``predict_codes`` of a block of rows, remembered under ``key`` (device, first row): one
        scikit-learn call per plant day and device instead of one per hour (its per-call cost dominates)."""
        if key not in self._blocks:
            self._blocks[key] = self.predict_codes(x)
        return self._blocks[key]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(np.asarray(x, dtype=np.float32)), dtype=np.float64)

    def predict_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index per row, probabilities)."""
        probs = self.probabilities(x)
        return decide_many(probs, self.positive, self.threshold), probs

    # the part of edge.inference.Predictor that edge.shadow.compare uses
    def predict_batch(self, rows: np.ndarray, event_ids: Any) -> list[Prediction]:
        codes, probs = self.predict_codes(np.asarray(rows, dtype=np.float64))
        return [Prediction(self.classes[c], dict(zip(self.classes, p, strict=True)), self.version, int(e))
                for c, p, e in zip(codes.tolist(), probs.tolist(), event_ids, strict=True)]


def make_model(number: int, estimator: Any, train: pd.DataFrame, params: Params, created_s: float,
               metrics: dict[str, Any] | None = None, rules: list[Any] | None = None,
               drift_window: int = 5000) -> Model:
    """A release of ``estimator`` with the manifest the gate would build (reference stats of ``train``)."""
    stats = reference_from_json(reference_stats(train, params.schema, params.evaluate.reference_bins))
    blob = pickle.dumps(estimator, protocol=5)
    lineage = Lineage(hashlib.sha256(blob).hexdigest(), params.section_hash(), params.schema.fingerprint(), None,
                      "bench")
    result = gate_result(True, params.gate.metric, metrics or {}, rules or [])
    manifest = build_manifest(params, str(number), blob, stats, result, lineage, created="2026-01-01T00:00:00+00:00")
    accuracy = (metrics or {}).get("accuracy")
    return Model(number, estimator, manifest, created_s, None if accuracy is None else float(accuracy), drift_window)


@dataclass
class GateOutcome:
    passed: bool
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    rules: list[Any]
    train: pd.DataFrame
    estimator: Any


def _side(estimator_or_model: Any, holdout: pd.DataFrame, params: Params, weights: np.ndarray | None
          ) -> dict[str, Any]:
    x = features_matrix(holdout, params.schema)
    actual = class_indices(holdout, params.schema)
    if isinstance(estimator_or_model, Model):
        predicted, _ = estimator_or_model.predict_codes(x)
    else:
        pos = positive_index(params.schema.label.classes, params.schema.label.positive_class)
        probs = estimator_or_model.predict_proba(x)
        predicted = decide_many(probs, pos, params.gate.decision_threshold)
    return {**sklearn_quality(actual, predicted, weights), "rows": len(holdout)}


def gate(estimator: Any, holdout: pd.DataFrame, params: Params, champion_model: Model | None
         ) -> tuple[bool, dict[str, Any], dict[str, Any] | None, list[Any]]:
    """The gate's quality_floor and champion rules on the holdout (weighted by 1/p as evaluate does)."""
    weights = inclusion_weights(holdout)
    candidate = _side(estimator, holdout, params, weights)
    best = None if champion_model is None else _side(champion_model, holdout, params, weights)
    evaluate = Loaded("evaluate", {"candidate": candidate, "champion": best,
                                   "champion_version": None if champion_model is None else champion_model.version,
                                   "champion_note": "no champion"})
    metric = params.gate.metric
    rules = [quality_floor(evaluate, metric, params.gate.min_quality, {"strategy": params.split.strategy}),
             champion(evaluate, metric, params.gate.champion_tolerance)]
    return all(r.passed for r in rules), candidate, best, rules


def train_candidate(frame: pd.DataFrame, params: Params, champion_model: Model | None) -> GateOutcome:
    """split -> train -> gate, as the retrain flow runs them on the curated rows."""
    train, holdout, _ = split_frame(frame, params)
    estimator = fit(train, params)
    passed, candidate, best, rules = gate(estimator, holdout, params, champion_model)
    return GateOutcome(passed, candidate, best, rules, train, estimator)
