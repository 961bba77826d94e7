"""Test kit for the evaluate and gate stages: a project folder with split files, an ONNX model and the
metrics files of the stages before them, written directly (no other stage runs).

Models are real: scikit-learn HistGradientBoosting trained on class indices, converted with skl2onnx
(input ``features``, zipmap off, opset 17). ``flip`` trains on rotated labels (a worse-than-useless
model); ``weak`` trains a handful of stumps (worse than a full model, still above chance).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.contracts.layout import Paths
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import make_rows, second_schema
from flows.params import Params, parse_params
from flows.stages.train import class_indices, features_matrix


def make_params(overrides: dict[str, Any] | None = None, three_class: bool = False) -> Params:
    raw = repo_params_raw()
    if three_class:
        raw["schema"] = second_schema()
    return parse_params(override(raw, overrides or {}))


def write_splits(
    paths: Paths, params: Params, train_rows: int = 1200, holdout_rows: int = 400, seed: int = 11,
    shift: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/holdout parquet files; ``shift`` adds a constant to holdout features (drift)."""
    schema = params.schema
    train = make_rows(schema, "site-0", train_rows, seed)
    holdout = make_rows(schema, "site-0", holdout_rows, seed + 1, start="2026-02-01")
    for name, delta in (shift or {}).items():
        holdout[name] = holdout[name] + delta
    paths.split.mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths.split / "train.parquet", index=False)
    holdout.to_parquet(paths.split / "holdout.parquet", index=False)
    return train, holdout


def fit_onnx(train: pd.DataFrame, params: Params, flip: bool = False, weak: bool = False) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier

    schema = params.schema
    x, y = features_matrix(train, schema), class_indices(train, schema)
    if flip:
        y = (y + 1) % len(schema.label.classes)
    settings = {"max_iter": 3, "max_depth": 1} if weak else {"max_iter": 40}
    estimator = HistGradientBoostingClassifier(random_state=0, **settings).fit(x, y)
    model = to_onnx(
        estimator,
        initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
        options={"zipmap": False},
        target_opset=17,
    )
    return model.SerializeToString()


def install_candidate(paths: Paths, model: bytes, version: str = "cand-test") -> None:
    """data/model/model.onnx plus the export.json export would have written for it."""
    paths.model.mkdir(parents=True, exist_ok=True)
    (paths.model / "model.onnx").write_bytes(model)
    write_json(paths.metrics / "export.json", {
        "passed": True, "max_abs_diff": 2e-7, "label_flips": 0, "rows": 400, "rows_with_missing": 20,
        "threshold": 1e-5, "opset": 17, "candidate_version": version,
        "onnx_sha256": hashlib.sha256(model).hexdigest(), "onnx_bytes": len(model),
    })


def write_ingest(paths: Paths, quarantined_share: float = 0.0, curated: int = 4) -> None:
    write_json(paths.metrics / "ingest.json", {
        "batches": 4, "curated": curated, "quarantined": 0, "rows": 1600 if curated else 0,
        "duplicates_dropped": 0, "quarantined_share": quarantined_share,
    })


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def project(root: Path, params: Params, flip: bool = False, weak: bool = False, **split: Any) -> Paths:
    """A project ready for evaluate: splits, a candidate model and ingest/export metrics."""
    paths = Paths.at(root)
    train, _ = write_splits(paths, params, **split)
    install_candidate(paths, fit_onnx(train, params, flip=flip, weak=weak))
    write_ingest(paths)
    return paths


def flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    return float((a != b).mean())
