"""train: fit the scikit-learn model chosen in params.yaml on the training split.

Supported: HistGradientBoosting (default; handles missing sensor values natively), RandomForest (after
median imputation, because skl2onnx converts a RandomForest trained on NaN wrongly) and a
scaler + LogisticRegression pipeline (also imputed). The model learns class *indices* in schema class
order. Deterministic for a given seed and data.

Rows are weighted by ``1 / inclusion_probability`` when the frame has that record column: edge runners
upload every mistake, uncertain or anomalous row (p = 1) but only a random sample of the rest (p ~ 0.02),
so an unweighted fit would learn a world made of hard rows. The weight goes to the final estimator
(``sample_weight``; through ``<step>__sample_weight`` for the imputed pipelines; imputer and scaler stay
unweighted). Rows without the column or with p missing weigh 1; when every row weighs 1 the fit is the
unweighted one, bit for bit.

Recency (``train.recency_half_life_h``, ``train.window_h``; both null by default in code): a row's age is
the hours between its event time (the schema's ``event_time``) and the newest training row's; rows without
a readable time count as old as the oldest timed row. With a half-life, each row's weight is multiplied by
``0.5 ** (age_h / half_life)``, on top of 1/p; with a window, training rows older than ``window_h`` are
left out before fitting (the holdout is the split's and is never touched). ``train.json`` records both
(``recency``), so a release's metrics say how it was trained. With both null the fit is exactly the one
above. Does not tune hyper-parameters or weight classes.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_bytes_atomic, write_text_atomic
from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY
from edge.contracts.schema import DataSchema
from flows.params import Params, TrainParams
from flows.stages import StageError


def features_matrix(frame: pd.DataFrame, schema: DataSchema) -> np.ndarray:
    """Features in schema order as float32 (NaN = missing): exactly what the ONNX model receives."""
    matrix: np.ndarray = frame[schema.feature_names].to_numpy(dtype=np.float32)
    return matrix


def class_indices(frame: pd.DataFrame, schema: DataSchema) -> np.ndarray:
    """Label values mapped to their position in ``schema.label.classes``."""
    lookup = {value: index for index, value in enumerate(schema.label.classes)}
    labels = frame[schema.label.name]
    mapped = labels.map(lambda v: lookup.get(v.item() if hasattr(v, "item") else v))
    if mapped.isna().any():
        unknown = sorted(map(str, labels[mapped.isna()].unique()))[:5]
        raise StageError(f"labels not among schema classes: {unknown}")
    indices: np.ndarray = mapped.to_numpy(dtype=np.int64)
    return indices


def inclusion_weights(frame: pd.DataFrame) -> np.ndarray | None:
    """``1 / inclusion_probability`` per row (1 where the value is missing); None when every row weighs 1.

    None also when the frame has no such column, so callers take the exact unweighted path then."""
    if INCLUSION_PROBABILITY not in frame.columns:
        return None
    p = pd.to_numeric(frame[INCLUSION_PROBABILITY], errors="coerce").to_numpy(dtype=np.float64)
    present = ~np.isnan(p)
    bad = present & ~((p > 0.0) & (p <= 1.0))
    if bad.any():
        raise StageError(f"{int(bad.sum())} rows have {INCLUSION_PROBABILITY} outside (0, 1], e.g. {float(p[bad][0])}")
    weights = np.where(present, 1.0 / np.where(present, p, 1.0), 1.0)
    return None if bool((weights == 1.0).all()) else weights


def weighting_summary(weights: np.ndarray | None, rows: int, by: str | None = None) -> dict[str, Any] | None:
    """How a frame was weighted (None when it was not): rows, rows weighing more than 1, weight sum and
    Kish's effective sample size (sum w)^2 / sum w^2. ``by``: what the weights are (default 1/p)."""
    if weights is None:
        return None
    return {
        "by": by or f"1/{INCLUSION_PROBABILITY}",
        "rows": rows,
        "rows_upweighted": int((weights > 1.0).sum()),
        "weight_sum": round(float(weights.sum()), 6),
        "effective_rows": round(float(weights.sum() ** 2 / (weights**2).sum()), 3),
    }


def row_ages_h(frame: pd.DataFrame, schema: DataSchema) -> np.ndarray:
    """Hours between each row's event time and the newest row's; a row without a readable time is as old
    as the oldest timed row (0 for all when none has a time)."""
    if schema.event_time not in frame.columns:
        raise StageError(f"train.recency_half_life_h / train.window_h need the event time column "
                         f"{schema.event_time!r}, which the training split lacks")
    times = pd.to_datetime(frame[schema.event_time], utc=True, errors="coerce")
    seconds = (times.max() - times).dt.total_seconds().to_numpy(dtype=np.float64)
    known = ~np.isnan(seconds)
    oldest = float(seconds[known].max()) if known.any() else 0.0
    ages: np.ndarray = np.where(known, seconds, oldest) / 3600.0
    return ages


def within_window(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The training rows no older than ``train.window_h`` hours before the newest (all when it is null)."""
    window = params.train.window_h
    if window is None:
        return frame
    keep = row_ages_h(frame, params.schema) <= window
    return frame if bool(keep.all()) else frame[keep].reset_index(drop=True)


def recency_factors(frame: pd.DataFrame, params: Params) -> np.ndarray | None:
    """``0.5 ** (age_h / train.recency_half_life_h)`` per row; None when the half-life is null."""
    half_life = params.train.recency_half_life_h
    if half_life is None:
        return None
    factors: np.ndarray = np.power(0.5, row_ages_h(frame, params.schema) / half_life)
    return factors


def training_weights(frame: pd.DataFrame, params: Params) -> np.ndarray | None:
    """1/p times the recency factor per row; None when every row weighs 1 (the exact unweighted path)."""
    inclusion, recency = inclusion_weights(frame), recency_factors(frame, params)
    if recency is None:
        return inclusion
    weights = recency if inclusion is None else inclusion * recency
    return None if bool((weights == 1.0).all()) else weights


def weights_label(params: Params) -> str | None:
    """What training weights are made of, for train.json (None: 1/p alone, the default label)."""
    half_life = params.train.recency_half_life_h
    return None if half_life is None else f"1/{INCLUSION_PROBABILITY} x 0.5**(age_h/{half_life:g})"


def recency_summary(split_rows: pd.DataFrame, used: pd.DataFrame, params: Params) -> dict[str, Any] | None:
    """How recency shaped training (None when both knobs are null): the knobs, the newest event time ages
    count from, and the rows the window left out."""
    train = params.train
    if train.recency_half_life_h is None and train.window_h is None:
        return None
    newest = pd.to_datetime(split_rows[params.schema.event_time], utc=True, errors="coerce").max()
    return {
        "half_life_h": train.recency_half_life_h,
        "window_h": train.window_h,
        "newest_event_time": None if pd.isna(newest) else newest.isoformat(),
        "rows_in_split": len(split_rows),
        "rows_left_out_by_window": len(split_rows) - len(used),
    }


def build_estimator(train: TrainParams) -> Any:
    """The unfitted estimator named by ``train.model``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.model == "hgb":
        h = train.hgb
        return HistGradientBoostingClassifier(
            max_iter=h.max_iter, learning_rate=h.learning_rate, max_leaf_nodes=h.max_leaf_nodes,
            l2_regularization=h.l2_regularization, random_state=train.seed,
        )
    if train.model == "rf":
        r = train.rf
        forest = RandomForestClassifier(
            n_estimators=r.n_estimators, max_depth=r.max_depth, min_samples_leaf=r.min_samples_leaf,
            random_state=train.seed, n_jobs=-1,
        )
        return make_pipeline(SimpleImputer(strategy="median"), forest)
    return make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(C=train.logreg.C, max_iter=train.logreg.max_iter, random_state=train.seed),
    )


def fit(frame: pd.DataFrame, params: Params) -> Any:
    """Fit the configured estimator on a training frame (within ``train.window_h``, recency-weighted)."""
    frame = within_window(frame, params)
    y = class_indices(frame, params.schema)
    if len(np.unique(y)) < 2:
        within = f" within train.window_h={params.train.window_h:g} h" if params.train.window_h is not None else ""
        raise StageError(f"the training split holds a single class{within}: nothing to learn from")
    estimator = build_estimator(params.train)
    weights = training_weights(frame, params)
    x = features_matrix(frame, params.schema)
    if weights is None:
        estimator.fit(x, y)
    elif hasattr(estimator, "steps"):  # a Pipeline: only its final step takes the weights
        estimator.fit(x, y, **{f"{estimator.steps[-1][0]}__sample_weight": weights})
    else:
        estimator.fit(x, y, sample_weight=weights)
    return estimator


def main(params: Params, paths: Paths) -> dict[str, Any]:
    train = pd.read_parquet(paths.split / "train.parquet")
    started = time.perf_counter()
    estimator = fit(train, params)
    seconds = time.perf_counter() - started
    write_bytes_atomic(paths.model / "model.pkl", pickle.dumps(estimator, protocol=5))
    used = within_window(train, params)
    counts = class_indices(used, params.schema)
    summary = {
        "model": params.train.model,
        "rows": len(used),
        "class_counts": {str(c): int((counts == i).sum()) for i, c in enumerate(params.schema.label.classes)},
        "fit_seconds": round(seconds, 3),
    }
    weighting = weighting_summary(training_weights(used, params), len(used), weights_label(params))
    if weighting is not None:  # absent when unweighted, so train.json stays as it always was
        summary["weighting"] = weighting
    recency = recency_summary(train, used, params)
    if recency is not None:  # likewise absent when both recency knobs are null
        summary["recency"] = recency
    paths.metrics.mkdir(parents=True, exist_ok=True)
    # fit_seconds varies run to run: keep it out of the DVC metric so reruns compare cleanly.
    metric = {k: v for k, v in summary.items() if k != "fit_seconds"}
    write_text_atomic(paths.metrics / "train.json", json.dumps(metric, indent=2, sort_keys=True))
    return summary
