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
unweighted one, bit for bit. Does not tune hyper-parameters or weight classes.
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


def weighting_summary(weights: np.ndarray | None, rows: int) -> dict[str, Any] | None:
    """How a frame was weighted (None when it was not): rows, rows weighing more than 1, weight sum and
    Kish's effective sample size (sum w)^2 / sum w^2."""
    if weights is None:
        return None
    return {
        "by": f"1/{INCLUSION_PROBABILITY}",
        "rows": rows,
        "rows_upweighted": int((weights > 1.0).sum()),
        "weight_sum": round(float(weights.sum()), 6),
        "effective_rows": round(float(weights.sum() ** 2 / (weights**2).sum()), 3),
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
    """Fit the configured estimator on a training frame."""
    y = class_indices(frame, params.schema)
    if len(np.unique(y)) < 2:
        raise StageError("the training split holds a single class: nothing to learn from")
    estimator = build_estimator(params.train)
    weights = inclusion_weights(frame)
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
    counts = class_indices(train, params.schema)
    summary = {
        "model": params.train.model,
        "rows": len(train),
        "class_counts": {str(c): int((counts == i).sum()) for i, c in enumerate(params.schema.label.classes)},
        "fit_seconds": round(seconds, 3),
    }
    weighting = weighting_summary(inclusion_weights(train), len(train))
    if weighting is not None:  # absent when unweighted, so train.json stays as it always was
        summary["weighting"] = weighting
    paths.metrics.mkdir(parents=True, exist_ok=True)
    # fit_seconds varies run to run: keep it out of the DVC metric so reruns compare cleanly.
    metric = {k: v for k, v in summary.items() if k != "fit_seconds"}
    write_text_atomic(paths.metrics / "train.json", json.dumps(metric, indent=2, sort_keys=True))
    return summary
