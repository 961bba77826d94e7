"""train: fit the scikit-learn model chosen in params.yaml on the training split.

Supported: HistGradientBoosting (default; handles missing sensor values natively), RandomForest (after
median imputation, because skl2onnx converts a RandomForest trained on NaN wrongly) and a
scaler + LogisticRegression pipeline (also imputed). The model learns class *indices* in schema class
order. Deterministic for a given seed and data. Does not tune hyper-parameters or weight classes.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_bytes_atomic, write_text_atomic
from flows.params import Params, Schema, TrainParams
from flows.paths import Paths
from flows.stages import StageError


def features_matrix(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Features in schema order as float32 (NaN = missing): exactly what the ONNX model receives."""
    matrix: np.ndarray = frame[schema.feature_names].to_numpy(dtype=np.float32)
    return matrix


def class_indices(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Label values mapped to their position in ``schema.label.classes``."""
    lookup = {value: index for index, value in enumerate(schema.label.classes)}
    labels = frame[schema.label.name]
    mapped = labels.map(lambda v: lookup.get(v.item() if hasattr(v, "item") else v))
    if mapped.isna().any():
        unknown = sorted(map(str, labels[mapped.isna()].unique()))[:5]
        raise StageError(f"labels not among schema classes: {unknown}")
    indices: np.ndarray = mapped.to_numpy(dtype=np.int64)
    return indices


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
    estimator.fit(features_matrix(frame, params.schema), y)
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
    paths.metrics.mkdir(parents=True, exist_ok=True)
    # fit_seconds varies run to run: keep it out of the DVC metric so reruns compare cleanly.
    metric = {k: v for k, v in summary.items() if k != "fit_seconds"}
    write_text_atomic(paths.metrics / "train.json", json.dumps(metric, indent=2, sort_keys=True))
    return summary
