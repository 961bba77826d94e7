"""Adaptive collection keeps the loop unbiased: the random rate changes mid-stream (0.02 -> 0.5 -> 0.02 ...),
every uploaded row carries the rate in force when it was kept, and the IPW accuracy of the uploads stays
within 2 points of the true accuracy on all rows; training weighs each row by its own 1/p.

Real parts: simulated plant rows (the simulator package, with a sensor drift half way so accuracy moves
while the rate moves), a real HGB model exported to ONNX and run by the edge's onnxruntime Predictor, the
edge's own upload filter (``edge.upload_filter.select``), the loop's estimator and the train stage's weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge.contracts.record import INCLUSION_PROBABILITY, PREDICTION
from edge.inference import Predictor
from edge.upload_filter import UploadPolicy, select
from edgeloop.testkit.runner_world import params, write_candidate
from flows.loop.estimates import accuracy
from flows.stages.train import inclusion_weights
from simulator.fleet import simulate_device

RATES = (0.02, 0.5, 0.02, 0.5, 0.02, 0.2, 0.02)  # the rate in force, segment by segment
ROWS = 14_000  # per device


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every labelled row of two machines with its prediction, and the rows the filter uploaded."""
    folder = write_candidate(tmp_path_factory.mktemp("release") / "candidate", seed=1)  # seed 1: cached
    predictor = Predictor.from_folder(Path(folder))
    schema = params().schema
    label = schema.label.name
    everything, uploaded = [], []
    for index in range(2):
        frame = simulate_device(index, ROWS, 11, "2026-03-01", 60.0, drift="sensor_offset", drift_start=0.5)
        features = frame[schema.feature_names].to_numpy(dtype=np.float64)
        predictions = predictor.predict_batch(features, frame[schema.event_id].tolist())
        segment = np.minimum(np.arange(ROWS) * len(RATES) // ROWS, len(RATES) - 1)
        policies = {rate: UploadPolicy(random_rate=rate) for rate in RATES}
        device = str(frame[schema.device_id].iat[0])
        truths = frame[label].astype(int).tolist()
        rows = []
        for i, prediction in enumerate(predictions):
            truth = truths[i]
            kept = select(policies[RATES[segment[i]]], prediction, truth, device, predictor.manifest,
                          features[i].tolist())
            rows.append((prediction.label, truth, None if kept is None else kept.inclusion_probability,
                         RATES[segment[i]], None if kept is None else kept.reason))
        table = pd.DataFrame(rows, columns=[PREDICTION, label, INCLUSION_PROBABILITY, "rate", "reason"])
        everything.append(table)
        uploaded.append(table[table[INCLUSION_PROBABILITY].notna()])
    return {"all": pd.concat(everything, ignore_index=True), "uploaded": pd.concat(uploaded, ignore_index=True),
            "label": label}


def test_ipw_accuracy_stays_within_two_points_while_the_rate_changes(stream: dict[str, object]) -> None:
    rows, uploaded, label = stream["all"], stream["uploaded"], str(stream["label"])
    assert isinstance(rows, pd.DataFrame) and isinstance(uploaded, pd.DataFrame)
    truth = float((rows[PREDICTION] == rows[label]).mean())
    estimate = accuracy(uploaded, label)
    assert estimate.value is not None and estimate.low is not None and estimate.high is not None
    assert abs(estimate.value - truth) <= 0.02, (estimate, truth)
    assert estimate.low <= truth <= estimate.high
    # the rows really came at several rates (random rows at 0.02, 0.2 and 0.5; mistakes and the like at 1)
    assert set(uploaded.loc[uploaded["reason"] == "random", INCLUSION_PROBABILITY].round(4)) == {0.02, 0.2, 0.5}
    assert len(uploaded) < 0.5 * len(rows)  # filtered: far fewer rows than the devices saw
    # the test can fail: the plain average of the uploads is far off, and so is weighting every random row
    # by the rate in force at the end of the stream (ignoring that p changed)
    assert abs(estimate.naive - truth) > 0.02  # type: ignore[operator]
    last_rate = uploaded.assign(**{INCLUSION_PROBABILITY: np.where(uploaded["reason"] == "random", RATES[-1], 1.0)})
    wrong = accuracy(last_rate, label).value
    assert wrong is not None and abs(wrong - truth) > 0.02, (wrong, truth)


def test_each_segment_is_estimated_with_its_own_rate(stream: dict[str, object]) -> None:
    """Per stretch of the stream, drifted or not, raised or not, the estimate holds (3 points on fewer rows)."""
    rows, uploaded, label = stream["all"], stream["uploaded"], str(stream["label"])
    assert isinstance(rows, pd.DataFrame) and isinstance(uploaded, pd.DataFrame)
    for rate in (0.5, 0.2):
        seen = rows[rows["rate"] == rate]
        truth = float((seen[PREDICTION] == seen[label]).mean())
        value = accuracy(uploaded[uploaded["rate"] == rate], label).value
        assert value is not None and abs(value - truth) <= 0.03, (rate, value, truth)


def test_training_weighs_every_row_by_its_own_inclusion_probability(stream: dict[str, object]) -> None:
    rows, uploaded, label = stream["all"], stream["uploaded"], str(stream["label"])
    assert isinstance(rows, pd.DataFrame) and isinstance(uploaded, pd.DataFrame)
    weights = inclusion_weights(uploaded)
    assert weights is not None
    np.testing.assert_allclose(weights, 1.0 / uploaded[INCLUSION_PROBABILITY].to_numpy())
    assert set(np.round(weights[uploaded["reason"].to_numpy() == "random"], 6)) == {50.0, 5.0, 2.0}
    # the weighted rows stand for all the rows the devices labelled (Horvitz-Thompson: within 3 standard
    # errors, sqrt(sum((1 - p) / p^2)), about 3% here), and for each class's share of them
    p = uploaded[INCLUSION_PROBABILITY].to_numpy()
    error = float(np.sqrt(((1 - p) / p**2).sum()))
    assert abs(weights.sum() - len(rows)) <= 3 * error and error < 0.05 * len(rows)
    positive = params().schema.label.positive
    share = float(weights[(uploaded[label] == positive).to_numpy()].sum() / weights.sum())
    assert share == pytest.approx(float((rows[label] == positive).mean()), abs=0.01)
