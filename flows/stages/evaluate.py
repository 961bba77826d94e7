"""evaluate: how good is the candidate, how does it compare with the champion, has the data drifted?

Reads the training split (reference: the window the model learnt from) and the holdout (current: the
newest ground truth), the candidate ``data/model/model.onnx`` and, when ``params.evaluate.champion``
holds one, the champion release (``flows.evaluation.champion``). Both models are scored through
``flows.inference.score`` (the ONNX artefact that ships) and decided with the shipped rule (binary:
positive class when its probability is ``>= gate.decision_threshold``; else the most probable class).

Evidently 0.7 (``flows.evaluation.reports``) writes ``data/reports/evaluate/drift.html`` (features only,
method and threshold pinned from params), ``candidate_quality.html`` and, with a champion,
``champion_quality.html``. Each side is a deterministic sample of at most ``evaluate.max_rows`` rows
(seed fixed; the same sample scores candidate and champion, so their comparison is paired). The gate
metrics accuracy / balanced_accuracy / f1_macro come from named Evidently metrics where Evidently has
them and from scikit-learn otherwise (see ``reports``).

Weighted gate metrics: when the holdout has ``inclusion_probability`` (rows uploaded by a filtering edge
runner) and some sampled row weighs more than 1, ``candidate`` and ``champion`` hold accuracy /
balanced_accuracy / f1_macro weighted by 1/p (scikit-learn, ``quality.weighted_quality``; both models on
the same rows and weights), with ``weighted_by`` set and Evidently's unweighted values under
``unweighted``; ``weighting`` summarises the weights and ``sources`` names the weighted metrics
(``sources.unweighted``: Evidently's). The HTML reports, confusion.csv and pr_curve.csv stay the
unweighted view. Without the column, or when every row weighs 1, the output is exactly the unweighted one.

Also writes ``data/metrics/evaluate.json`` (docs/pipeline-contracts.md), ``data/plots/confusion.csv``
(actual,predicted class values of the candidate, capped at ``quality.CONFUSION_MAX_ROWS``),
``data/plots/pr_curve.csv`` (precision,recall,threshold of the positive class, at most 500 points;
only the header for multi-class labels or a one-class holdout, so the DVC plot output always exists) and
``data/evaluate/reference_stats.json`` (``flows.reference_stats`` on the whole training split).

Leaves out: the pass/fail decision (gate) and anything about releases.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.decision import decide_many
from edge.contracts.decision import positive_index as decision_positive
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY
from edge.contracts.release_layout import MODEL_FILE
from edge.contracts.schema import DataSchema
from flows.evaluation.champion import ChampionError, find_champion
from flows.evaluation.quality import (
    WEIGHTED_SOURCES,
    confusion_rows,
    pr_curve,
    sample_indices,
    weighted_quality,
)
from flows.evaluation.reports import (
    DriftResult,
    QualityResult,
    ReportMismatchError,
    drift_report,
    quality_report,
)
from flows.inference import score
from flows.params import Params
from flows.reference_stats import reference_stats
from flows.stages import StageError
from flows.stages.train import class_indices, features_matrix, inclusion_weights, weighting_summary

REPORTS = ("drift.html", "candidate_quality.html", "champion_quality.html")


def read_split(path: Path, columns: list[str], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Only the needed columns (and those of ``optional`` it has) of a split file; a missing file or
    required column is named."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError(f"{path} not found: run the split stage first")
    present = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in present]
    if missing:
        raise StageError(f"{path} lacks columns {missing}")
    frame = pd.read_parquet(path, columns=[*columns, *(c for c in optional if c in present)])
    if frame.empty:
        raise StageError(f"{path} has no rows")
    return frame


def score_probabilities(model: bytes, x: np.ndarray, n_classes: int, who: str, why: str = "") -> np.ndarray:
    """The model's probabilities; a StageError when they do not have one column per schema class
    (``why``: what explains it, e.g. the classes the training split lacked)."""
    threads = max(1, min(4, os.cpu_count() or 1))
    probabilities = score(model, x, threads=threads).probabilities
    if probabilities.ndim != 2 or probabilities.shape[1] != n_classes:
        shape = probabilities.shape
        known = f"{shape[1]} of" if probabilities.ndim == 2 and shape[1] < n_classes else f"shape {shape} for"
        raise StageError(f"{who} model outputs probabilities for {known} the schema's {n_classes} classes"
                         + (f": {why}" if why else ""))
    return probabilities


def unseen_classes(train_file: Path, schema: DataSchema) -> str:
    """Why a candidate may lack classes: those with no row in the training split, and what to do."""
    labels = pd.read_parquet(train_file, columns=[schema.label.name])[schema.label.name].astype(str)
    seen = set(labels.unique())
    missing = [str(c) for c in schema.label.classes if str(c) not in seen]
    if not missing:
        return ""
    return (f"it never saw classes {', '.join(missing)} (0 rows in {train_file.name}); re-run split, which "
            "stops on such a split, and choose split.strategy: stratified_random or group")


def positive_index(schema: DataSchema) -> int | None:
    return decision_positive(schema.label.classes, schema.label.positive_class)


def evaluate_model(
    model: bytes, x: np.ndarray, actual: np.ndarray, params: Params, who: str, why: str = ""
) -> tuple[QualityResult, np.ndarray, np.ndarray]:
    """Score, decide and measure one model on the sampled holdout rows."""
    classes = tuple(params.schema.label.classes)
    probabilities = score_probabilities(model, x, len(classes), who, why)
    pos, threshold = positive_index(params.schema), params.gate.decision_threshold
    predicted = decide_many(probabilities, pos, threshold)
    try:
        result = quality_report(actual, predicted, probabilities, classes, pos, threshold)
    except ReportMismatchError as exc:
        raise StageError(f"{who}: {exc}") from None
    return result, predicted, probabilities


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def write_plots(
    paths: Paths, schema: DataSchema, actual: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray
) -> list[str]:
    classes = tuple(schema.label.classes)
    confusion = pd.DataFrame(confusion_rows(actual, predicted, classes), columns=["actual", "predicted"])
    write_text_atomic(paths.plots / "confusion.csv", _csv(confusion))
    written = ["confusion.csv"]
    pos = positive_index(schema)
    points = [] if pos is None else pr_curve(actual == pos, probabilities[:, pos].astype(np.float64))
    curve = pd.DataFrame(points, columns=["precision", "recall", "threshold"])
    write_text_atomic(paths.plots / "pr_curve.csv", _csv(curve))  # header only without a binary curve
    return [*written, "pr_curve.csv"]


def write_reports(folder: Path, drift: DriftResult, candidate: QualityResult, champion: QualityResult | None) -> None:
    write_text_atomic(folder / "drift.html", drift.html)
    write_text_atomic(folder / "candidate_quality.html", candidate.html)
    if champion is not None:
        write_text_atomic(folder / "champion_quality.html", champion.html)
    else:
        (folder / "champion_quality.html").unlink(missing_ok=True)  # stale from an earlier champion


def _side(
    result: QualityResult, rows: int, sha256: str, weighted: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> dict[str, Any]:
    """One model's metrics; ``weighted`` = (actual, predicted, weights) makes the gate metrics weighted."""
    if weighted is None:
        return {**result.metrics, "rows": rows, "sha256": sha256}
    return {**weighted_quality(result.metrics, *weighted), "rows": rows, "sha256": sha256}


def main(params: Params, paths: Paths) -> dict[str, Any]:
    started = time.perf_counter()
    schema, settings = params.schema, params.evaluate
    features = schema.feature_names
    train = read_split(paths.split / "train.parquet", features)
    holdout = read_split(paths.split / "holdout.parquet", [*features, schema.label.name], (INCLUSION_PROBABILITY,))
    model_path = paths.model / MODEL_FILE
    if not model_path.is_file():
        raise UserError(f"{model_path} not found: run the export stage first")
    candidate_bytes = model_path.read_bytes()
    try:
        lookup = find_champion(paths.resolve(settings.champion), schema)
    except ChampionError as exc:
        raise StageError(str(exc)) from None

    current_rows = sample_indices(len(holdout), settings.max_rows)
    reference_rows = sample_indices(len(train), settings.max_rows)
    current = holdout.iloc[current_rows].reset_index(drop=True)
    x, actual = features_matrix(current, schema), class_indices(current, schema)
    weights = inclusion_weights(current)

    why = unseen_classes(paths.split / "train.parquet", schema)  # the candidate first: a wrong shape fails fast
    candidate, predicted, probabilities = evaluate_model(candidate_bytes, x, actual, params, "candidate", why)
    drift = drift_report(
        train.iloc[reference_rows], current, features, settings.drift_method, settings.drift_threshold
    )
    champion, champion_predicted = None, predicted
    if lookup.champion is not None:
        champion, champion_predicted, _ = evaluate_model(lookup.champion.model, x, actual, params, "champion")
    stats = reference_stats(train, schema, settings.reference_bins)

    reports_dir = paths.reports / "evaluate"
    write_reports(reports_dir, drift, candidate, champion)
    plots = write_plots(paths, schema, actual, predicted, probabilities)
    write_text_atomic(paths.data / "evaluate" / "reference_stats.json", json.dumps(stats, indent=2) + "\n")

    def weighted(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        return None if weights is None else (actual, chosen, weights)

    metrics: dict[str, Any] = {
        "candidate": _side(candidate, len(current), hashlib.sha256(candidate_bytes).hexdigest(), weighted(predicted)),
        "champion": None if champion is None or lookup.champion is None else _side(
            champion, len(current), hashlib.sha256(lookup.champion.model).hexdigest(), weighted(champion_predicted)
        ),
        "champion_version": lookup.champion.version if lookup.champion else None,
        "champion_note": lookup.note,
        "drift": drift.summary,
        "rows": {
            "reference": len(train),
            "current": len(holdout),
            "reference_sampled": len(reference_rows),
            "current_sampled": len(current_rows),
        },
        "sources": candidate.sources if weights is None else {**WEIGHTED_SOURCES, "unweighted": candidate.sources},
        "decision": {
            "classes": list(schema.label.classes),
            "positive_class": schema.label.positive_class if schema.label.is_binary else None,
            "threshold": params.gate.decision_threshold if schema.label.is_binary else None,
        },
    }
    weighting = weighting_summary(weights, len(current))
    if weighting is not None:  # absent when unweighted, so evaluate.json stays as it always was
        metrics["weighting"] = weighting
    write_text_atomic(paths.metrics / "evaluate.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    names = ("accuracy", "balanced_accuracy", "f1_macro")
    return {
        "candidate": {k: metrics["candidate"][k] for k in names},
        "champion": None if metrics["champion"] is None else {k: metrics["champion"][k] for k in names},
        "weighting": weighting,
        "champion_version": metrics["champion_version"],
        "champion_note": lookup.note,
        "drift_share": drift.summary["share"],
        "drifted": drift.summary["drifted"],
        "rows": metrics["rows"],
        "reports": [str(reports_dir / name) for name in REPORTS if (reports_dir / name).is_file()],
        "plots": [str(paths.plots / name) for name in plots],
        "seconds": round(time.perf_counter() - started, 2),
    }
