"""Recency in training (train.recency_half_life_h, train.window_h): the weights are 1/p times a half-life decay
from the newest training row, the window leaves old training rows out but never the holdout, train.json and
the gate's decision record both, with both null the fit is the plain one bit for bit, and a worse candidate
trained with recency is still blocked by the champion."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY
from flows.stages import StageError, evaluate, export, gate, train
from flows.stages.train import (
    build_estimator,
    class_indices,
    features_matrix,
    fit,
    row_ages_h,
    training_weights,
    within_window,
)
from tests.evaluation_helpers import make_params, project, read_json, write_splits

# small fits (these tests are about which rows and weights, not model quality), recency off unless a test sets it
FAST = {"train.hgb.max_iter": 15, "train.recency_half_life_h": None}
RECENT = FAST | {"train.recency_half_life_h": 24.0}


def timed(hours: list[float | None], p: list[float] | None = None) -> pd.DataFrame:
    base = pd.Timestamp("2026-03-01T00:00:00Z")
    times = [None if h is None else base + pd.Timedelta(hours=h) for h in hours]
    frame = pd.DataFrame({"event_time": pd.to_datetime(pd.Series(times), utc=True)})
    if p is not None:
        frame[INCLUSION_PROBABILITY] = p
    return frame


def test_weights_are_inclusion_times_half_life_decay_from_the_newest_row() -> None:
    params = make_params(RECENT)
    frame = timed([0.0, 24.0, 48.0, 36.0], p=[1.0, 0.5, 0.02, None])
    np.testing.assert_allclose(row_ages_h(frame, params.schema), [48.0, 24.0, 0.0, 12.0])
    weights = training_weights(frame, params)
    np.testing.assert_allclose(weights, [0.25, 2 * 0.5, 50.0, 2 ** -0.5], rtol=1e-12)
    # without p the decay alone; without a half-life the 1/p weights alone
    np.testing.assert_allclose(training_weights(timed([0.0, 24.0]), params), [0.5, 1.0])
    assert training_weights(timed([0.0, 24.0], p=[1.0, 1.0]), make_params(FAST)) is None


def test_a_row_without_time_is_as_old_as_the_oldest_timed_row() -> None:
    params = make_params(RECENT | {"train.window_h": 30.0})
    frame = timed([10.0, None, 58.0, 40.0])
    np.testing.assert_allclose(row_ages_h(frame, params.schema), [48.0, 48.0, 0.0, 18.0])
    kept = within_window(frame, params)
    assert len(kept) == 2 and kept["event_time"].notna().all()  # the untimed row left with the oldest
    np.testing.assert_allclose(row_ages_h(timed([None, None]), params.schema), [0.0, 0.0])
    with pytest.raises(StageError, match="need the event time column 'event_time'"):
        row_ages_h(pd.DataFrame({"x": [1.0]}), params.schema)


def test_window_leaves_out_old_training_rows_and_never_touches_the_holdout(tmp_path) -> None:
    params = make_params(FAST | {"train.window_h": 5.0})
    paths = Paths.at(tmp_path)
    write_splits(paths, params)  # 1,200 training rows, one a minute: 20 hours
    holdout_before = (paths.split / "holdout.parquet").read_bytes()
    split_rows = pd.read_parquet(paths.split / "train.parquet")
    summary = train.main(params, paths)
    kept = within_window(split_rows, params)
    assert len(kept) == 301 == summary["rows"]  # the newest row and 5 h (300 minutes) before it
    assert kept["event_time"].min() == split_rows["event_time"].max() - pd.Timedelta(hours=5)
    assert (paths.split / "holdout.parquet").read_bytes() == holdout_before
    metrics = read_json(paths.metrics / "train.json")
    assert metrics["recency"] == {
        "half_life_h": None, "window_h": 5.0, "rows_in_split": 1200, "rows_left_out_by_window": 899,
        "newest_event_time": split_rows["event_time"].max().isoformat(),
    }
    assert "weighting" not in metrics  # a window alone does not weigh rows
    model = pickle.loads((paths.model / "model.pkl").read_bytes())
    plain = build_estimator(params.train).fit(features_matrix(kept, params.schema), class_indices(kept, params.schema))
    probe = features_matrix(split_rows.iloc[:200], params.schema)
    np.testing.assert_array_equal(model.predict_proba(probe), plain.predict_proba(probe))

    narrow = make_params({"train.window_h": 0.01})  # a single row left: one class
    with pytest.raises(StageError, match=r"single class within train.window_h=0.01 h"):
        fit(split_rows, narrow)


def test_both_null_is_the_plain_fit_bit_for_bit_and_train_json_unchanged(tmp_path) -> None:
    params = make_params(FAST)
    assert params.train.recency_half_life_h is None and params.train.window_h is None
    paths = Paths.at(tmp_path)
    write_splits(paths, params)
    split_rows = pd.read_parquet(paths.split / "train.parquet")
    train.main(params, paths)
    plain = build_estimator(params.train).fit(features_matrix(split_rows, params.schema),
                                              class_indices(split_rows, params.schema))
    assert (paths.model / "model.pkl").read_bytes() == pickle.dumps(plain, protocol=5)
    assert set(read_json(paths.metrics / "train.json")) == {"model", "rows", "class_counts"}


def test_a_worse_candidate_trained_with_recency_is_still_blocked(tmp_path) -> None:
    params = make_params(FAST | {"gate.min_quality": 0.3, "gate.champion_tolerance": 0.01})
    paths = project(tmp_path, params)  # the champion: trained on all 1,200 rows
    evaluate.main(params, paths)
    assert gate.main(params, paths)["passed"]
    shutil.copytree(paths.candidate, paths.resolve(params.evaluate.champion))

    recent = make_params(FAST | {"gate.min_quality": 0.3, "gate.champion_tolerance": 0.01,
                          "train.recency_half_life_h": 0.5, "train.window_h": 1.5})
    train.main(recent, paths)  # the real train stage, on the last 91 rows, the newest weighing most
    export.main(recent, paths)
    evaluate.main(recent, paths)
    metrics = read_json(paths.metrics / "evaluate.json")
    assert metrics["champion"]["f1_macro"] - metrics["candidate"]["f1_macro"] > 0.01
    blocked = gate.main(recent, paths)
    assert blocked["passed"] is False
    assert {r["name"] for r in blocked["rules"] if not r["passed"]} == {"champion"}
    assert not (paths.candidate / "model.onnx").exists()
    # how it was trained is on record: train.json, and the gate's decision beside the verdict
    trained = read_json(paths.metrics / "train.json")
    assert trained["recency"]["half_life_h"] == 0.5 and trained["recency"]["window_h"] == 1.5
    assert trained["recency"]["rows_left_out_by_window"] == 1200 - 91 and trained["rows"] == 91
    assert trained["weighting"]["by"] == "1/inclusion_probability x 0.5**(age_h/0.5)"
    decision = read_json(paths.candidate / "decision.json")
    assert decision["training"] == {k: trained[k] for k in ("recency", "weighting", "rows")}
