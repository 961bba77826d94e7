"""train + export: every supported model converts with parity, missing values included, and
deterministically; the parity check catches a converter defect instead of shipping it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from edge.contracts.layout import Paths
from edgeloop.testkit.project import override
from flows.params import Params, parse_params
from flows.stages import StageError
from flows.stages import export as export_stage
from flows.stages import train as train_stage

FEATURES = ["a", "b", "c"]


def toy_params(raw: dict, model: str = "hgb", classes: list = [0, 1]) -> Params:  # noqa: B006
    raw = override(raw, {"train.model": model, "train.rf.n_estimators": 20, "train.hgb.max_iter": 40})
    raw["schema"]["features"] = [{"name": n, "dtype": "float", "min": -10.0, "max": 10.0} for n in FEATURES]
    raw["schema"]["label"] = {"name": "y", "classes": classes}
    return parse_params(raw)


def toy_frame(rows: int, seed: int, classes: list, missing: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    score = x[:, 0] + 0.5 * x[:, 1] ** 2 - x[:, 2]
    edges = np.quantile(score, np.linspace(0, 1, len(classes) + 1)[1:-1])
    y = np.searchsorted(edges, score)
    x[rng.random(x.shape) < missing] = np.nan
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["y"] = [classes[i] for i in y]
    frame["event_id"] = np.arange(rows)
    frame["device_id"] = "d1"
    frame["event_time"] = pd.date_range("2026-01-01", periods=rows, freq="min", tz="UTC")
    return frame


def run_train_export(params: Params, tmp_path, frame: pd.DataFrame) -> dict:
    paths = Paths.at(tmp_path)
    paths.split.mkdir(parents=True)
    frame.iloc[: len(frame) * 4 // 5].to_parquet(paths.split / "train.parquet", index=False)
    frame.iloc[len(frame) * 4 // 5 :].to_parquet(paths.split / "holdout.parquet", index=False)
    train_stage.main(params, paths)
    return export_stage.main(params, paths)


@pytest.mark.parametrize("model", ["hgb", "rf", "logreg"])
def test_every_model_exports_with_parity_on_missing_values(raw_params, tmp_path, model):
    params = toy_params(raw_params, model)
    result = run_train_export(params, tmp_path, toy_frame(1500, 1, [0, 1]))
    assert result["passed"], result
    assert result["rows_with_missing"] > 0
    assert result["max_abs_diff"] <= 1e-5 and result["label_flips"] == 0
    assert json.loads((tmp_path / "data/metrics/export.json").read_text())["candidate_version"].startswith("cand-")


def test_multiclass_string_labels_and_metadata(raw_params, tmp_path):
    import onnxruntime as ort

    classes = ["ok", "warn", "fail"]
    params = toy_params(raw_params, "hgb", classes)
    run_train_export(params, tmp_path, toy_frame(1500, 2, classes))
    session = ort.InferenceSession(str(tmp_path / "data/model/model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["feature_order"]) == FEATURES
    assert json.loads(meta["classes"]) == classes
    assert {"version", "schema_hash", "data_hash", "params_hash", "git_commit"} <= set(meta)
    assert [i.name for i in session.get_inputs()] == ["features"]
    probabilities = session.run(None, {"features": np.zeros((2, 3), np.float32)})[1]
    assert probabilities.shape == (2, 3)


def test_export_is_deterministic(raw_params, tmp_path):
    params = toy_params(raw_params, "hgb")
    frame = toy_frame(1500, 3, [0, 1])
    run_train_export(params, tmp_path / "one", frame)
    run_train_export(params, tmp_path / "two", frame)
    one = (tmp_path / "one/data/model/model.onnx").read_bytes()
    assert one == (tmp_path / "two/data/model/model.onnx").read_bytes()


def test_parity_check_catches_random_forest_trained_on_missing_values(raw_params, tmp_path):
    """skl2onnx converts a RandomForest fitted on NaN wrongly (docs/stack.md). Unimputed, it must fail."""
    from sklearn.ensemble import RandomForestClassifier

    frame = toy_frame(2000, 4, [0, 1], missing=0.3)
    params = toy_params(raw_params, "hgb")
    x = train_stage.features_matrix(frame, params.schema)
    y = train_stage.class_indices(frame, params.schema)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x[:1500], y[:1500])
    onnx_bytes = export_stage.to_onnx_bytes(forest, 3, 17, {})
    parity = export_stage.check_parity(forest, onnx_bytes, x[1500:], 1e-5)
    assert not parity.passed
    assert parity.max_abs_diff_missing > 1e-3
    assert "max |p_onnx - p_sklearn|" in parity.describe()


def test_failed_parity_fails_the_stage_and_ships_no_model(raw_params, tmp_path, monkeypatch):
    params = toy_params(raw_params, "hgb")

    def skewed(estimator, onnx_bytes, x, threshold):
        return export_stage.Parity(False, 0.5, 3, len(x), 0, 0.0, threshold)

    monkeypatch.setattr(export_stage, "check_parity", skewed)
    with pytest.raises(StageError, match="3 label flips"):
        run_train_export(params, tmp_path, toy_frame(800, 5, [0, 1]))
    assert not (tmp_path / "data/model/model.onnx").exists()
    assert json.loads((tmp_path / "data/metrics/export.json").read_text())["passed"] is False


def test_single_class_training_data_is_refused(raw_params, tmp_path):
    params = toy_params(raw_params, "hgb")
    frame = toy_frame(500, 6, [0, 1])
    frame["y"] = 0
    with pytest.raises(StageError, match="single class"):
        run_train_export(params, tmp_path, frame)
