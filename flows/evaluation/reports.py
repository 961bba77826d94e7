"""Evidently 0.7 reports of the evaluate stage, and the named values the gate reads from them.

Data drift: ``DataDriftPreset`` over the schema features only, with the method and threshold pinned
(``params.evaluate.drift_method`` / ``drift_threshold``) so that per-feature scores are comparable from
run to run (Evidently otherwise switches method at 1,000 rows). A feature whose values all vanished in
the current data counts as drifted (Evidently cannot test an empty column); one empty on both sides is
skipped.

Classification quality: ``ClassificationPreset`` on class values rendered as strings, which is the
encoding Evidently handles for every class type (integer classes other than 0/1 break its binary path).
Binary models use ``BinaryClassification`` with ``pos_label`` and the positive-class probability,
thresholded at the shipped decision threshold; more classes use ``MulticlassClassification`` with one
probability column per class. Probabilities are given only when every class occurs in the truth (else
Evidently fails on ROC AUC); without them the report has no ROC AUC / log loss.

Gate values come from named metrics (``config.type``) in the snapshot, never list positions:
``Accuracy`` gives accuracy, ``F1Score`` gives f1_macro for multi-class models (Evidently macro-averages
there). balanced_accuracy, and f1_macro of binary models, come from scikit-learn (see ``quality``), and
scikit-learn re-checks Evidently's numbers: a disagreement means a label mapping bug and is an error.
Everything here is unweighted: Evidently cannot weight rows, so when the holdout carries inclusion
probabilities these reports (and the agreement check, against unweighted scikit-learn) are the
unweighted view, and the evaluate stage adds the 1/p-weighted gate metrics itself (``quality``).

Leaves out: scoring models, choosing samples and writing metrics files (the evaluate stage does these).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.contracts.errors import UserError
from flows.evaluation.quality import sklearn_quality

if TYPE_CHECKING:
    import pandas as pd

METRIC_TYPE_PREFIX = "evidently:metric_v2:"
AGREEMENT_TOLERANCE = 1e-9  # Evidently vs scikit-learn on the same predictions
_EMPTY_HTML = "<!doctype html><html><body><h1>{title}</h1><p>{text}</p></body></html>\n"


class ReportMismatchError(RuntimeError):
    """Evidently and scikit-learn disagree on the same predictions (a label mapping bug)."""


@dataclass(frozen=True)
class DriftResult:
    html: str
    summary: dict[str, Any]  # share, drifted, per_feature, method, threshold, skipped, evidently_share


@dataclass(frozen=True)
class QualityResult:
    html: str
    metrics: dict[str, float]  # accuracy, balanced_accuracy, f1_macro (+ extras when available)
    sources: dict[str, str]  # where each gate metric came from


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    """The snapshot as plain JSON types (no numpy scalars, no enums)."""
    data: dict[str, Any] = json.loads(snapshot.json())
    return data


def named_metrics(snapshot: dict[str, Any], type_name: str) -> list[dict[str, Any]]:
    """Every metric entry whose ``config.type`` is ``evidently:metric_v2:<type_name>``."""
    wanted = METRIC_TYPE_PREFIX + type_name
    return [m for m in snapshot.get("metrics", []) if m.get("config", {}).get("type") == wanted]


def named_value(snapshot: dict[str, Any], type_name: str) -> Any:
    """The value of the one metric of that type; KeyError when absent, ValueError when ambiguous."""
    found = named_metrics(snapshot, type_name)
    if not found:
        raise KeyError(f"Evidently snapshot has no {type_name} metric")
    values = {json.dumps(m["value"], sort_keys=True) for m in found}
    if len(values) > 1:
        raise ValueError(f"Evidently snapshot has {len(found)} different {type_name} values")
    return found[0]["value"]


# --- drift ------------------------------------------------------------------------------------------

def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], method: str, threshold: float
) -> DriftResult:
    """Drift of each feature between reference (training) and current (holdout) rows."""
    empty_ref = {f for f in features if reference[f].notna().sum() == 0}
    empty_cur = {f for f in features if current[f].notna().sum() == 0}
    vanished = sorted(empty_cur - empty_ref)
    tested = [f for f in features if f not in empty_ref | empty_cur]
    summary: dict[str, Any] = {
        "method": method,
        "threshold": threshold,
        "per_feature": {f: None for f in features},
        "skipped": sorted((empty_ref | empty_cur) - set(vanished)),
        "vanished": vanished,
    }
    if not tested:
        summary.update(share=len(vanished) / len(features), drifted=vanished, evidently_share=None)
        text = "No feature has values on both sides; nothing to test."
        return DriftResult(_EMPTY_HTML.format(title="Data drift", text=text), summary)
    snapshot = _run_drift(reference[tested], current[tested], tested, method, threshold)
    data = snapshot_dict(snapshot)
    scores, drifted = _per_feature_drift(data)
    count = named_value(data, "DriftedColumnsCount")
    summary["per_feature"].update(scores)
    summary.update(
        share=(float(count["count"]) + len(vanished)) / len(features),
        drifted=sorted([*drifted, *vanished], key=features.index),
        evidently_share=float(count["share"]),
    )
    return DriftResult(snapshot.get_html_str(as_iframe=False), summary)


def _run_drift(
    reference: pd.DataFrame, current: pd.DataFrame, tested: list[str], method: str, threshold: float
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=tested)
    report = Report([DataDriftPreset(columns=tested, method=method, threshold=threshold)], include_tests=True)
    try:
        return report.run(
            current_data=Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
            reference_data=Dataset.from_pandas(reference.reset_index(drop=True), data_definition=definition),
        )
    except StatTestNotFoundError as exc:
        raise UserError(f"evaluate.drift_method: {exc}") from None


def _per_feature_drift(data: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Score per feature from ``ValueDrift`` metrics; drifted = its bound test failed."""
    scores: dict[str, float] = {}
    by_id: dict[str, str] = {}
    for metric in named_metrics(data, "ValueDrift"):
        column = metric["config"]["column"]
        scores[column] = float(metric["value"])
        by_id[metric["id"]] = column
    drifted = [
        by_id[test["metric_config"]["metric_id"]]
        for test in data.get("tests", [])
        if test.get("metric_config", {}).get("metric_id") in by_id and test.get("status") == "FAIL"
    ]
    return scores, drifted


# --- classification quality -------------------------------------------------------------------------

def quality_report(
    actual: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[object, ...],
    positive_index: int | None,
    threshold: float,
) -> QualityResult:
    """Evidently classification report of index arrays, plus the three gate metrics."""
    snapshot = _run_quality(actual, predicted, probabilities, classes, positive_index, threshold)
    data = snapshot_dict(snapshot)
    checked = sklearn_quality(actual, predicted)
    binary = len(classes) == 2
    metrics = {
        "accuracy": float(named_value(data, "Accuracy")),
        "balanced_accuracy": checked["balanced_accuracy"],
        "f1_macro": checked["f1_macro"] if binary else float(named_value(data, "F1Score")),
    }
    _check_agreement(metrics, checked)
    metrics.update(_extras(data, binary))
    sources = {
        "accuracy": "evidently:Accuracy",
        "balanced_accuracy": "sklearn:balanced_accuracy_score",
        "f1_macro": "sklearn:f1_score(average=macro)" if binary else "evidently:F1Score (macro)",
    }
    return QualityResult(snapshot.get_html_str(as_iframe=False), metrics, sources)


def _check_agreement(metrics: dict[str, float], checked: dict[str, float]) -> None:
    for name in ("accuracy", "f1_macro"):
        if abs(metrics[name] - checked[name]) > AGREEMENT_TOLERANCE:
            raise ReportMismatchError(
                f"Evidently {name} {metrics[name]:.6f} differs from scikit-learn {checked[name]:.6f} "
                "on the same predictions"
            )


def _extras(data: dict[str, Any], binary: bool) -> dict[str, float]:
    """Further named Evidently values, when the report has them (precision/recall/f1 as Evidently means)."""
    names = {"Precision": "precision", "Recall": "recall", "RocAuc": "roc_auc", "LogLoss": "log_loss"}
    if binary:
        names["F1Score"] = "f1_positive"
    extras: dict[str, float] = {}
    for type_name, key in names.items():
        try:
            value = float(named_value(data, type_name))
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value):
            extras[key] = value
    return extras


def _column_names(class_names: list[str]) -> tuple[str, str, str]:
    """Names for actual / predicted / probability columns that no class string can collide with."""
    taken = set(class_names)
    names = []
    for base in ("actual", "predicted", "probability"):
        name = f"__{base}__"
        while name in taken:
            name += "_"
        taken.add(name)
        names.append(name)
    return names[0], names[1], names[2]


def _run_quality(
    actual: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[object, ...],
    positive_index: int | None,
    threshold: float,
) -> Any:
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset
    from sklearn.exceptions import UndefinedMetricWarning

    names = [str(c) for c in classes]
    probabilities = np.asarray(probabilities, dtype=np.float64)  # exact; not renormalised: argmax must not move
    actual_col, predicted_col, proba_col = _column_names(names)
    labels = np.asarray(names, dtype=object)
    frame = pd.DataFrame({actual_col: labels[actual], predicted_col: labels[predicted]})
    with_probas = np.unique(actual).size == len(classes)
    if len(classes) == 2:
        assert positive_index is not None
        if with_probas:
            frame[proba_col] = probabilities[:, positive_index]
        task = BinaryClassification(
            target=actual_col,
            prediction_labels=predicted_col,
            prediction_probas=proba_col if with_probas else None,
            pos_label=names[positive_index],
        )
        # Evidently accepts a threshold only with probabilities; without them the labels already apply it
        preset = ClassificationPreset(probas_threshold=threshold if with_probas else None)
    else:
        if with_probas:
            for i, name in enumerate(names):
                frame[name] = probabilities[:, i]
        task = MulticlassClassification(
            target=actual_col, prediction_labels=predicted_col, prediction_probas=names if with_probas else None
        )
        preset = ClassificationPreset()
    definition = DataDefinition(classification=[task])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # a class never predicted: 0 is the answer
        warnings.simplefilter("ignore", RuntimeWarning)  # Evidently's TPR etc. of a one-class holdout: NaN
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")  # float32 rounding
        return Report([preset]).run(current_data=Dataset.from_pandas(frame, data_definition=definition))
