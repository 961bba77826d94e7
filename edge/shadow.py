"""On-device validation of a candidate release: does it fit the device, and is it no worse here?

``schema_compatible(candidate, reference)`` says why a candidate cannot replace the active model (its
feature names or order differ from the active manifest's, or from the feature names the runner was
configured with; its class list differs), or None when it can.

``compare(candidate, current, x, labels, policy)`` scores both models on the device's own labelled rows
and rejects the candidate when ``candidate_score < current_score - policy.shadow_margin``. The metric
is the one the cloud gate used (``manifest.gate.metric``) when it is ``accuracy``, ``balanced_accuracy``
or ``f1_macro`` (computed here with numpy exactly as scikit-learn does), else accuracy. With fewer than
``policy.min_shadow_rows`` labelled rows the candidate passes on the cloud gate alone, and with no
active model there is nothing to compare with (it passes; its score is reported). Rows whose label is
None are not counted; a label that is not one of the model's classes counts as a miss.

Leaves out: where the labelled rows come from, and the watch after activation (edge.health). numpy and
edge.inference only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.contracts.manifest import EdgePolicy, Manifest
from edge.contracts.schema import ClassValue
from edge.inference import InputError, Predictor

__all__ = ["METRICS", "ShadowResult", "compare", "metric_score", "schema_compatible"]

METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
TOLERANCE = 1e-12  # float noise allowed in the margin comparison


@dataclass(frozen=True)
class ShadowResult:
    passed: bool
    metric: str
    candidate_score: float | None  # None when not scored (too few rows, or the candidate refused them)
    current_score: float | None  # None when there is no active model or it was not scored
    rows: int  # labelled rows used
    reason: str


def schema_compatible(candidate: Manifest, reference: Manifest | Sequence[str] | None) -> str | None:
    """Why ``candidate`` cannot serve where ``reference`` (active manifest, or configured feature names)
    did, or None when it can."""
    if reference is None:
        return None
    names = candidate.feature_names
    expected = reference.feature_names if isinstance(reference, Manifest) else list(reference)
    if names != expected:
        if sorted(names) == sorted(expected):
            return f"features: candidate expects the order {names}, the device sends {expected}"
        return f"features: candidate expects {names}, the device has {expected}"
    if isinstance(reference, Manifest) and list(candidate.classes) != list(reference.classes):
        return f"classes: candidate has {list(candidate.classes)}, the active model {list(reference.classes)}"
    return None


def metric_score(metric: str, truth: Sequence[int], predicted: Sequence[int]) -> float:
    """``metric`` of predicted vs true class codes, as scikit-learn computes it (labels: the union of both)."""
    y, p = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if y.size == 0:
        raise ValueError("no rows to score")
    if metric == "accuracy":
        return float(np.mean(y == p))
    labels = np.union1d(y, p)
    tp = np.array([np.sum((y == c) & (p == c)) for c in labels], dtype=np.float64)
    true_count = np.array([np.sum(y == c) for c in labels], dtype=np.float64)
    pred_count = np.array([np.sum(p == c) for c in labels], dtype=np.float64)
    if metric == "balanced_accuracy":
        present = true_count > 0
        return float(np.mean(tp[present] / true_count[present]))
    if metric == "f1_macro":
        return float(np.mean(2 * tp / (true_count + pred_count)))  # both counts > 0 for a union label
    raise ValueError(f"unknown metric {metric!r} (expected one of {list(METRICS)})")


def _codes(classes: Sequence[ClassValue], labels: Sequence[object]) -> list[int]:
    index: dict[object, int] = {c: i for i, c in enumerate(classes)}
    codes = []
    for label in labels:
        value = int(label) if isinstance(label, np.integer) else label
        codes.append(index.get(value, -1) if isinstance(value, int | str) and not isinstance(value, bool) else -1)
    return codes


def _predicted(predictor: Predictor, x: np.ndarray) -> list[int]:
    classes = list(predictor.manifest.classes)
    index = {c: i for i, c in enumerate(classes)}
    return [index[p.label] for p in predictor.predict_batch(x, range(x.shape[0]))]


def compare(
    candidate: Predictor, current: Predictor | None, x: np.ndarray, labels: Sequence[object], policy: EdgePolicy
) -> ShadowResult:
    """Score ``candidate`` and ``current`` on labelled rows ``x`` (2-D, manifest feature order)."""
    gate_metric = candidate.manifest.gate.metric
    metric = gate_metric if gate_metric in METRICS else "accuracy"
    keep = [i for i, label in enumerate(labels) if label is not None]
    rows = len(keep)
    if rows < policy.min_shadow_rows:
        return ShadowResult(True, metric, None, None, rows, f"not enough labelled rows ({rows} < "
                            f"{policy.min_shadow_rows}): accepted on the cloud gate alone")
    matrix = np.asarray(x)[keep]
    truth = _codes(candidate.manifest.classes, [labels[i] for i in keep])
    try:
        candidate_score = metric_score(metric, truth, _predicted(candidate, matrix))
    except InputError as exc:
        return ShadowResult(False, metric, None, None, rows, f"candidate refuses the labelled rows: {exc}")
    if current is None:
        return ShadowResult(True, metric, candidate_score, None, rows,
                            f"no active model to compare with; candidate {metric} {candidate_score:.4f}")
    try:
        current_score = metric_score(metric, truth, _predicted(current, matrix))
    except InputError as exc:
        return ShadowResult(True, metric, candidate_score, None, rows, f"active model refuses the labelled rows "
                            f"({exc}); candidate {metric} {candidate_score:.4f}")
    passed = candidate_score >= current_score - policy.shadow_margin - TOLERANCE
    verdict = "no worse than" if passed else "worse than"
    reason = (f"{metric} {candidate_score:.4f} on {rows} labelled rows: {verdict} the active model's "
              f"{current_score:.4f} minus margin {policy.shadow_margin}")
    return ShadowResult(passed, metric, candidate_score, current_score, rows, reason)
