"""export: convert the trained model to ONNX and prove it predicts what scikit-learn predicts.

skl2onnx with zipmap off, the opset from params, one float32 input named ``features``; the model's
``metadata_props`` carry version, feature order, schema/data/params hashes and the git commit; the
onnx checker must pass. Parity is measured on the holdout, rows with missing values included: the max
absolute probability difference must stay within ``export.parity_max_abs_diff`` with no label flips,
else the stage fails naming the difference (this catches the RandomForest-with-NaN converter defect).
Does not quantise or optimise the graph.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_bytes_atomic, write_text_atomic
from edge.contracts.layout import Paths
from edge.contracts.release_layout import MODEL_FILE
from flows.inference import score
from flows.lineage import frame_hash, git_commit
from flows.params import Params
from flows.stages import StageError
from flows.stages.train import features_matrix

INPUT_NAME = "features"
# The params sections that shape the model; their hash is the model's params_hash (dvc.yaml lists the same).
MODEL_SECTIONS = ("schema", "split", "train", "export")


@dataclass(frozen=True)
class Parity:
    passed: bool
    max_abs_diff: float
    label_flips: int
    rows: int
    rows_with_missing: int
    max_abs_diff_missing: float
    threshold: float

    def describe(self) -> str:
        return (
            f"ONNX differs from scikit-learn on {self.rows} holdout rows: max |p_onnx - p_sklearn| = "
            f"{self.max_abs_diff:.3g} (limit {self.threshold:g}; {self.max_abs_diff_missing:.3g} on the "
            f"{self.rows_with_missing} rows with missing values), {self.label_flips} label flips"
        )


def candidate_version(data_hash: str, params_hash: str, commit: str) -> str:
    """Deterministic id of a candidate: same data, params and code give the same version."""
    digest = hashlib.sha256(f"{data_hash}:{params_hash}:{commit}".encode()).hexdigest()
    return f"cand-{digest[:12]}"


def to_onnx_bytes(estimator: Any, n_features: int, opset: int, metadata: dict[str, str]) -> bytes:
    """Convert a fitted classifier to checked ONNX bytes carrying ``metadata``."""
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={"zipmap": False},
        target_opset=opset,
    )
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def check_parity(estimator: Any, onnx_bytes: bytes, x: np.ndarray, threshold: float) -> Parity:
    """Compare scikit-learn and onnxruntime on the same float32 rows."""
    expected = estimator.predict_proba(x)
    got = score(onnx_bytes, x)
    diff = np.abs(got.probabilities.astype(np.float64) - expected)
    per_row = diff.max(axis=1) if len(diff) else np.zeros(0)
    missing = np.isnan(x).any(axis=1)
    flips = int((got.labels != estimator.predict(x)).sum())
    max_diff = float(per_row.max()) if len(per_row) else 0.0
    return Parity(
        passed=bool(max_diff <= threshold and flips == 0),
        max_abs_diff=max_diff,
        label_flips=flips,
        rows=int(len(x)),
        rows_with_missing=int(missing.sum()),
        max_abs_diff_missing=float(per_row[missing].max()) if missing.any() else 0.0,
        threshold=threshold,
    )


def model_metadata(params: Params, paths: Paths, train: pd.DataFrame) -> dict[str, str]:
    data_hash = frame_hash(train)
    params_hash = params.section_hash(*MODEL_SECTIONS)
    commit = git_commit(paths.root)
    return {
        "version": candidate_version(data_hash, params_hash, commit),
        "feature_order": json.dumps(params.schema.feature_names),
        "classes": json.dumps(list(params.schema.label.classes)),
        "schema_hash": params.schema.fingerprint(),
        "data_hash": data_hash,
        "params_hash": params_hash,
        "git_commit": commit,
    }


def main(params: Params, paths: Paths) -> dict[str, Any]:
    estimator = pickle.loads((paths.model / "model.pkl").read_bytes())
    train = pd.read_parquet(paths.split / "train.parquet")
    holdout = pd.read_parquet(paths.split / "holdout.parquet")
    metadata = model_metadata(params, paths, train)
    onnx_bytes = to_onnx_bytes(estimator, len(params.schema.features), params.export.opset, metadata)
    parity = check_parity(
        estimator, onnx_bytes, features_matrix(holdout, params.schema), params.export.parity_max_abs_diff
    )
    result = {
        **asdict(parity),
        "opset": params.export.opset,
        "candidate_version": metadata["version"],
        "onnx_bytes": len(onnx_bytes),
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
    }
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.metrics / "export.json", json.dumps(result, indent=2, sort_keys=True))
    if not parity.passed:
        (paths.model / MODEL_FILE).unlink(missing_ok=True)
        raise StageError(parity.describe())
    write_bytes_atomic(paths.model / MODEL_FILE, onnx_bytes)
    return result
