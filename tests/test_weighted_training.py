"""Training and gating on filtered edge uploads, de-biased by 1/inclusion probability.

Edge runners upload every labelled mistake and uncertain row (p = 1) but only a random sample of the
rest (p = 0.02). Here a real "previous model" (HGB trained on simulator history) decides which newer
simulator rows are its mistakes, and ``edge_filter`` applies the runner's rule (``edge.upload_filter``'s
reasons and its sha256 ``sample_unit`` draw) to keep rows with their p. The tests show that the
weighted holdout metrics match the metrics on all rows while unweighted ones collapse, that weighted
training undoes the filter for every model kind, that the real pipeline (simulate, ingest, split,
train, export, evaluate, gate; champion installed from the first release) releases a good candidate
that the unweighted gate blocked, and that without the column, or with p = 1 everywhere, nothing changes.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from edge.contracts.decision import decide_many as decide
from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY, UPLOAD_REASON
from edge.upload_filter import UploadPolicy, sample_unit
from flows.evaluation.quality import sklearn_quality
from flows.inference import score
from flows.params import Params
from flows.stages import StageError, evaluate, export, gate, ingest, simulate, split, train
from flows.stages.train import build_estimator, class_indices, features_matrix, fit, inclusion_weights
from simulator.batches import write_batch
from simulator.fleet import simulate_device
from tests.evaluation_helpers import make_params, project, read_json

RATE = 0.02  # the edge runner's default random_rate
NAMES = ("accuracy", "balanced_accuracy", "f1_macro")


def fleet(rows: int, seed: int, start: str, devices: int = 2) -> pd.DataFrame:
    frames = [simulate_device(i, rows, seed, start, 60) for i in range(devices)]
    return pd.concat(frames).sort_values(["event_time", "device_id"], kind="stable").reset_index(drop=True)


def edge_filter(frame: pd.DataFrame, probabilities: np.ndarray, params: Params) -> pd.DataFrame:
    """The rows an edge runner running the previous model uploads, with reason and inclusion probability."""
    policy = UploadPolicy()
    truth = class_indices(frame, params.schema)
    positive = probabilities[:, 1].astype(np.float64)
    mistake = (positive >= params.gate.decision_threshold).astype(np.int64) != truth
    uncertain = ~mistake & (np.abs(positive - params.gate.decision_threshold) < policy.uncertain_margin)
    draws = np.array([sample_unit(d, int(e)) for d, e in zip(frame["device_id"], frame["event_id"], strict=True)])
    sampled = ~mistake & ~uncertain & (draws < policy.random_rate)
    out = frame.copy()
    out[UPLOAD_REASON] = np.where(mistake, "labelled", np.where(uncertain, "uncertain", "random"))
    out[INCLUSION_PROBABILITY] = np.where(mistake | uncertain, 1.0, policy.random_rate)
    return out[mistake | uncertain | sampled].reset_index(drop=True)


def predict(model: object, frame: pd.DataFrame, params: Params) -> np.ndarray:
    return model.predict(features_matrix(frame, params.schema))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def world() -> dict[str, object]:
    """History, a newer period, its uploads under a previous model, and an unseen test period."""
    params = make_params({"train.recency_half_life_h": None})
    history, later = fleet(6000, 7, "2026-01-01"), fleet(20000, 8, "2026-01-06")
    previous = fit(history.iloc[::2], params)
    probabilities = previous.predict_proba(features_matrix(later, params.schema))
    return {
        "params": params, "history": history, "later": later, "test": fleet(20000, 9, "2026-02-01"),
        "uploads": edge_filter(later, probabilities, params),
    }


def test_weighted_holdout_metrics_match_all_rows_and_unweighted_ones_do_not(world) -> None:
    params, later, uploads = world["params"], world["later"], world["uploads"]
    assert len(uploads) < 0.1 * len(later) and (uploads[UPLOAD_REASON] == "random").any()
    assert (uploads[INCLUSION_PROBABILITY] == 1.0).mean() > 0.5  # mostly the previous model's hard rows
    good = fit(world["history"], params)

    truth = sklearn_quality(class_indices(later, params.schema), predict(good, later, params))
    actual, predicted = class_indices(uploads, params.schema), predict(good, uploads, params)
    weights = inclusion_weights(uploads)
    assert weights is not None and set(np.unique(weights)) == {1.0, 1 / RATE}
    weighted = sklearn_quality(actual, predicted, weights)
    unweighted = sklearn_quality(actual, predicted)

    for name in NAMES:
        assert abs(weighted[name] - truth[name]) < 0.02, (name, weighted, truth)
    assert truth["accuracy"] - unweighted["accuracy"] > 0.25
    assert truth["f1_macro"] - unweighted["f1_macro"] > 0.2 and unweighted["f1_macro"] < 0.6  # the demo's collapse


@pytest.mark.parametrize("model", ["hgb", "rf", "logreg"])
def test_weighted_training_undoes_the_filter(world, model: str) -> None:
    params = make_params({"train.recency_half_life_h": None, "train.model": model})
    uploads, test = world["uploads"], world["test"]
    weighted = fit(uploads, params)
    unweighted = fit(uploads.drop(columns=[INCLUSION_PROBABILITY]), params)

    actual = class_indices(test, params.schema)
    w_pred, u_pred = predict(weighted, test, params), predict(unweighted, test, params)
    # trained on mistakes as if they were the world, a model cries failure far too often
    assert abs(w_pred.mean() - actual.mean()) < abs(u_pred.mean() - actual.mean())
    assert u_pred.mean() > 2 * actual.mean()
    assert sklearn_quality(actual, w_pred)["accuracy"] > sklearn_quality(actual, u_pred)["accuracy"] + 0.02


@pytest.mark.parametrize("model", ["rf", "logreg"])
def test_pipelines_pass_the_weights_to_their_final_step(world, model: str) -> None:
    params = make_params({"train.recency_half_life_h": None, "train.model": model})
    uploads = world["uploads"]
    x, y = features_matrix(uploads, params.schema), class_indices(uploads, params.schema)
    w = inclusion_weights(uploads)
    by_hand = build_estimator(params.train)
    prepared = x
    for _, step in by_hand.steps[:-1]:
        prepared = step.fit_transform(prepared)
    by_hand.steps[-1][1].fit(prepared, y, sample_weight=w)
    fitted = fit(uploads, params)
    probe = features_matrix(world["test"].iloc[:2000], params.schema)
    got = fitted.predict_proba(probe)
    np.testing.assert_allclose(got, by_hand.predict_proba(probe), rtol=0, atol=1e-12)  # threads may reorder sums
    ignored = fit(uploads.drop(columns=[INCLUSION_PROBABILITY]), params).predict_proba(probe)
    assert np.abs(got - ignored).max() > 0.05  # the weights did change the fit


def test_inclusion_weights_missing_is_one_and_bad_values_are_named() -> None:
    frame = pd.DataFrame({INCLUSION_PROBABILITY: [1.0, None, 0.25, 0.5]})
    assert inclusion_weights(frame).tolist() == [1.0, 1.0, 4.0, 2.0]
    assert inclusion_weights(pd.DataFrame({INCLUSION_PROBABILITY: [1.0, None]})) is None
    assert inclusion_weights(pd.DataFrame({"other": [0.5]})) is None
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(StageError, match=f"1 rows have {INCLUSION_PROBABILITY} outside"):
            inclusion_weights(pd.DataFrame({INCLUSION_PROBABILITY: [1.0, bad]}))


def test_without_the_column_or_with_p_all_one_nothing_changes(world, tmp_path) -> None:
    params, history = world["params"], world["history"].iloc[:4000]
    assert (history[INCLUSION_PROBABILITY] == 1.0).all()  # simulated history: p = 1
    x, y = features_matrix(history, params.schema), class_indices(history, params.schema)
    plain = build_estimator(params.train).fit(x, y)
    expected = pickle.dumps(plain, protocol=5)
    assert pickle.dumps(fit(history, params), protocol=5) == expected
    assert pickle.dumps(fit(history.drop(columns=[INCLUSION_PROBABILITY]), params), protocol=5) == expected

    paths = project(tmp_path, params)  # split files without the column
    evaluate.main(params, paths)
    gate.main(params, paths)
    before_json, before_md = (paths.metrics / "evaluate.json").read_bytes(), decision_markdown(paths)
    metrics = json.loads(before_json)
    assert "weighting" not in metrics and "unweighted" not in metrics["candidate"]
    assert metrics["sources"]["accuracy"] == "evidently:Accuracy"

    holdout = pd.read_parquet(paths.split / "holdout.parquet")
    holdout[INCLUSION_PROBABILITY] = 1.0
    holdout.loc[::7, INCLUSION_PROBABILITY] = np.nan  # missing p weighs 1 too
    holdout.to_parquet(paths.split / "holdout.parquet", index=False)
    evaluate.main(params, paths)
    gate.main(params, paths)
    assert (paths.metrics / "evaluate.json").read_bytes() == before_json
    assert decision_markdown(paths) == before_md and "weighted" not in before_md


def decision_markdown(paths: Paths) -> str:
    """decision.md with its decision time blanked out."""
    created = read_json(paths.candidate / "decision.json")["created"]
    return (paths.candidate / "decision.md").read_text().replace(created, "T")


def run_pipeline(params: Params, paths: Paths) -> dict[str, object]:
    for stage in (ingest, split, train, export, evaluate):
        stage.main(params, paths)
    return gate.main(params, paths)


def failed(summary: dict[str, object]) -> set[str]:
    return {rule["name"] for rule in summary["rules"] if not rule["passed"]}  # type: ignore[attr-defined]


@pytest.mark.slow  # a whole pipeline twice
def test_gate_passes_on_a_filtered_holdout_what_the_unweighted_gate_blocked(tmp_path) -> None:
    params = make_params({
        "train.recency_half_life_h": None, "split.strategy": "time",  # the holdout is the newest rows
        "simulate.devices": 2, "simulate.rows_per_device": 6000, "ingest.data_docs": False,
        "split.holdout_fraction": 0.1, "gate.min_quality": 0.7,
    })
    paths = Paths.at(tmp_path)
    simulate.main(params, paths)
    first = run_pipeline(params, paths)  # release 1, on simulated history only (p = 1): unweighted
    assert first["passed"] and "weighting" not in read_json(paths.metrics / "evaluate.json")
    champion_dir = paths.resolve(params.evaluate.champion)
    shutil.copytree(paths.candidate, champion_dir)

    later = fleet(20000, 8, "2026-01-06")  # the champion runs on the edge and uploads what its filter keeps
    champion_model = (champion_dir / "model.onnx").read_bytes()
    champion_scores = score(champion_model, features_matrix(later, params.schema)).probabilities
    uploads = edge_filter(later, champion_scores, params)
    for device, rows in uploads.groupby("device_id"):
        write_batch(paths.uploads, str(device), rows.reset_index(drop=True))

    second = run_pipeline(params, paths)
    holdout = pd.read_parquet(paths.split / "holdout.parquet")
    assert holdout["event_time"].min() >= later["event_time"].min()  # the holdout is filtered uploads only
    assert (holdout[INCLUSION_PROBABILITY] == RATE).any() and (holdout[INCLUSION_PROBABILITY] == 1.0).mean() > 0.5
    assert read_json(paths.metrics / "train.json")["weighting"]["rows_upweighted"] > 0
    metrics = read_json(paths.metrics / "evaluate.json")
    candidate, champion = metrics["candidate"], metrics["champion"]
    assert metrics["weighting"]["rows"] == len(holdout) == candidate["rows"]
    assert candidate["weighted_by"] == champion["weighted_by"] == "1/inclusion_probability"
    assert metrics["sources"]["f1_macro"].endswith("sample_weight=1/inclusion_probability)")
    assert candidate["unweighted"]["f1_macro"] < params.gate.min_quality <= candidate["f1_macro"]
    # the champion is scored on the same rows and weights: its own mistakes unweighted, the fleet weighted
    window = (later["event_time"] >= holdout["event_time"].min()).to_numpy()
    shipped = decide(champion_scores[window], 1, params.gate.decision_threshold)
    champion_truth = float((shipped == class_indices(later, params.schema)[window]).mean())
    assert abs(champion["accuracy"] - champion_truth) < 0.01 and champion["unweighted"]["accuracy"] < 0.6
    assert second["passed"], second["reasons"]
    label = f"f1_macro (weighted by 1/inclusion probability, {len(holdout)} rows)"
    assert label in (paths.candidate / "decision.md").read_text()
    assert label in (paths.candidate / "index.html").read_text()

    # the gate as it was: the same candidate on the same holdout, rows unweighted
    holdout.drop(columns=[INCLUSION_PROBABILITY]).to_parquet(paths.split / "holdout.parquet", index=False)
    evaluate.main(params, paths)
    blocked = gate.main(params, paths)
    assert not blocked["passed"] and failed(blocked) == {"quality_floor"}
    assert read_json(paths.metrics / "evaluate.json")["candidate"]["f1_macro"] == candidate["unweighted"]["f1_macro"]
