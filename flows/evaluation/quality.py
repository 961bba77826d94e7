"""Classification quality from model scores: scikit-learn metrics, plot tables, sampling.

Works on class *indices* (positions in ``params.schema.label.classes``), the way the ONNX model speaks.
The decision rule that turns scores into classes is ``edge.contracts.decision`` (the one the devices run).

``balanced_accuracy`` always comes from scikit-learn (Evidently 0.7 has no such metric; the mean of its
``RecallByLabel`` also averages classes that were only predicted). ``f1_macro`` comes from scikit-learn
for binary models (Evidently's binary ``F1Score`` is the positive class's F1, not the macro mean). Both
average over the classes present in the truth or the predictions (scikit-learn's default).

Weighted quality (``weighted_quality``): holdout rows uploaded by edge runners carry an inclusion
probability p (1 for mistakes and uncertain rows, ~0.02 for a random sample of the rest), so unweighted
metrics on them describe the previous model's mistakes, not the fleet. Weighting each row by 1/p
(scikit-learn ``sample_weight``) estimates the metric on every labelled row the fleet saw (Hajek
estimator). The unweighted values stay alongside, because Evidently's report cannot weight.

Leaves out: Evidently (see ``reports``), file I/O, and any choice of what is good enough (the gate).
"""

from __future__ import annotations

import numpy as np

WEIGHTED_BY = "1/inclusion_probability"  # how weighted gate metrics are weighted (recorded with them)
SAMPLE_SEED = 0  # fixed: the same data always gives the same sample
PR_CURVE_MAX_POINTS = 500
CONFUSION_MAX_ROWS = 20_000  # rows in confusion.csv: dvc plots renders every row


def sample_indices(n_rows: int, max_rows: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted row positions of a deterministic uniform sample (all rows when ``n_rows <= max_rows``)."""
    if n_rows <= max_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def sklearn_quality(
    actual: np.ndarray, predicted: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, float]:
    """accuracy, balanced_accuracy and f1_macro of index arrays (scikit-learn), optionally row-weighted."""
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    w = sample_weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class missing from the truth is expected on small holdouts
        return {
            "accuracy": float(accuracy_score(actual, predicted, sample_weight=w)),
            "balanced_accuracy": float(balanced_accuracy_score(actual, predicted, sample_weight=w)),
            "f1_macro": float(f1_score(actual, predicted, average="macro", zero_division=0, sample_weight=w)),
        }


WEIGHTED_SOURCES = {
    "accuracy": f"sklearn:accuracy_score(sample_weight={WEIGHTED_BY})",
    "balanced_accuracy": f"sklearn:balanced_accuracy_score(sample_weight={WEIGHTED_BY})",
    "f1_macro": f"sklearn:f1_score(average=macro, sample_weight={WEIGHTED_BY})",
}


def weighted_quality(
    unweighted: dict[str, float], actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray
) -> dict[str, object]:
    """The gate's three metrics weighted by 1/p, with the unweighted (Evidently) values kept under
    ``unweighted``; any other unweighted value (precision, ROC AUC...) lives only there."""
    return {**sklearn_quality(actual, predicted, weights), "weighted_by": WEIGHTED_BY, "unweighted": unweighted}


def confusion_rows(
    actual: np.ndarray, predicted: np.ndarray, classes: tuple[object, ...], max_rows: int = CONFUSION_MAX_ROWS
) -> list[tuple[object, object]]:
    """(actual, predicted) class values for ``dvc plots``' confusion template, capped deterministically."""
    keep = sample_indices(len(actual), max_rows)
    values = np.asarray(classes, dtype=object)
    return list(zip(values[actual[keep]].tolist(), values[predicted[keep]].tolist(), strict=True))


def pr_curve(
    is_positive: np.ndarray, positive_probability: np.ndarray, max_points: int = PR_CURVE_MAX_POINTS
) -> list[tuple[float, float, float]]:
    """(precision, recall, threshold) points of the positive class, evenly thinned to ``max_points``.

    Empty when the truth holds only one class (the curve is undefined then)."""
    from sklearn.metrics import precision_recall_curve

    if np.unique(is_positive).size < 2:
        return []
    precision, recall, thresholds = precision_recall_curve(is_positive, positive_probability)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    if thresholds.size > max_points:
        keep = np.unique(np.linspace(0, thresholds.size - 1, max_points).round().astype(np.int64))
        precision, recall, thresholds = precision[keep], recall[keep], thresholds[keep]
    return [(float(p), float(r), float(t)) for p, r, t in zip(precision, recall, thresholds, strict=True)]
