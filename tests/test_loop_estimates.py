"""Fleet estimates from filtered uploads against the simulator's known truth (flows.loop.estimates).

The uploads are made the way an edge runner makes them: simulated machines (simulator.fleet), a real
ONNX model (edgeloop.testkit.runner_world) served by edge.inference.Predictor, the real upload filter with its
default policy (edge.upload_filter.select), rows built and encoded by edge.ground_truth as the CSV
the runner sends, landed content-addressed in a temporary landing zone and read back with
``load_uploads``. The truth is the accuracy and label balance over every labelled row, uploaded or not.
Also: no rows, every row uploaded (p = 1), invalid probabilities, mixed model versions, float labels,
and the estimates file being absent, broken or not a JSON object.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge.contracts.layout import Paths
from edge.contracts.record import (
    INCLUSION_PROBABILITY,
    MODEL_VERSION,
    PREDICTION,
    UPLOAD_REASON,
    batch_id,
    landing_path,
)
from edge.ground_truth import UploadColumns, build_row, encode_rows
from edge.inference import Predictor
from edge.upload_filter import UploadPolicy, select
from edgeloop.testkit.runner_world import params, write_candidate
from flows.loop.estimates import (
    accuracy,
    fleet_estimates,
    ipw_mean,
    label_shares,
    load_uploads,
    read_estimates,
    wilson,
    write_estimates,
)
from simulator.fleet import simulate_device

DEVICES = 4
ROWS = 3000  # per device and seed
SEEDS = (21, 22, 23, 24, 25)
BATCH_ROWS = 200  # the runner's upload.batch_rows in tests


@dataclass
class Truth:
    correct: int = 0
    rows: int = 0
    failures: int = 0

    def add(self, correct: np.ndarray, failures: np.ndarray) -> None:
        self.correct += int(correct.sum())
        self.rows += int(correct.size)
        self.failures += int(failures.sum())

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows

    @property
    def failure_share(self) -> float:
        return self.failures / self.rows


@functools.lru_cache(maxsize=2)
def predictor(folder: Path, flip: bool = False) -> Predictor:
    return Predictor.from_folder(write_candidate(folder / ("flipped" if flip else "good"), 3, flip=flip))


def land_device(paths: Paths, model: Predictor, device: int, seed: int, rows: slice | None = None) -> Truth:
    """One simulated machine through the real edge path into ``paths``' landing zone; its truth."""
    schema = params().schema
    frame = simulate_device(device, ROWS, seed, pd.Timestamp("2026-03-01") + pd.Timedelta(days=10 * seed), 60.0)
    frame = frame.iloc[rows or slice(None)]
    x = frame[schema.feature_names].to_numpy(dtype=np.float64)
    labels = frame[schema.label.name].to_numpy(dtype=np.int64)
    name = str(frame[schema.device_id].iat[0])
    columns = UploadColumns(schema.event_id, schema.device_id, schema.event_time)
    policy = UploadPolicy()
    uploaded = []
    predictions = model.predict_batch(x, event_ids=frame[schema.event_id].astype(int).tolist())
    for i, prediction in enumerate(predictions):
        label, features = int(labels[i]), x[i].tolist()
        selection = select(policy, prediction, label, name, model.manifest, features)
        if selection is not None:
            when = frame[schema.event_time].iat[i].to_pydatetime()
            uploaded.append(build_row(model.manifest, prediction, features, label, when, name, {}, selection, columns))
    for start in range(0, len(uploaded), BATCH_ROWS):
        body = encode_rows(uploaded[start:start + BATCH_ROWS])
        target = landing_path(paths.uploads, name, batch_id(body), "csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    truth = Truth()
    truth.add(np.array([p.label == y for p, y in zip(predictions, labels, strict=True)]), labels == 1)
    return truth


@dataclass
class World:
    estimates: dict
    fleet: Truth
    devices: dict[str, Truth]
    uploaded_rows: int


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[int, World]:
    """A fleet of DEVICES machines per seed, each landed in its own project and estimated."""
    base = tmp_path_factory.mktemp("estimates")
    model = predictor(base)
    out = {}
    for seed in SEEDS:
        paths = Paths.at(base / f"seed-{seed}")
        devices = {f"dev-{d:03d}": land_device(paths, model, d, seed) for d in range(DEVICES)}
        fleet = Truth()
        for truth in devices.values():
            fleet.correct, fleet.rows, fleet.failures = (fleet.correct + truth.correct, fleet.rows + truth.rows,
                                                         fleet.failures + truth.failures)
        frame = load_uploads(paths, params())
        out[seed] = World(fleet_estimates(frame, params()), fleet, devices, len(frame))
    return out


def test_weighted_accuracy_is_within_two_points_of_the_truth_and_naive_is_not(worlds) -> None:
    for seed, world in worlds.items():
        assert 0 < world.uploaded_rows < 0.1 * DEVICES * ROWS  # the filter really filtered
        groups = [("fleet", world.estimates["fleet"], world.fleet)]
        groups += [(d, world.estimates["devices"][d], t) for d, t in world.devices.items()]
        for name, group, truth in groups:
            got = group["accuracy"]
            assert abs(got["value"] - truth.accuracy) < 0.02, (seed, name, got, truth.accuracy)
            assert abs(got["naive"] - truth.accuracy) > 0.02, (seed, name, got, truth.accuracy)
            assert got["low"] <= got["value"] <= got["high"] and got["high"] - got["low"] < 0.05
            assert got["weight"] == pytest.approx(truth.rows, rel=0.25)  # 1/p sums to about the rows seen
            assert got["ignored"] == 0


def test_the_truth_lies_inside_the_95_percent_interval_in_most_seeds(worlds) -> None:
    inside = {"accuracy": [], "failure share": []}
    for world in worlds.values():
        groups = [(world.estimates["fleet"], world.fleet)]
        groups += [(world.estimates["devices"][d], t) for d, t in world.devices.items()]
        for group, truth in groups:
            acc, share = group["accuracy"], group["label_shares"]["1"]
            inside["accuracy"].append(acc["low"] <= truth.accuracy <= acc["high"])
            inside["failure share"].append(share["low"] <= truth.failure_share <= share["high"])
    assert np.mean(inside["accuracy"]) >= 0.9, inside
    assert np.mean(inside["failure share"]) >= 0.7, inside  # rare, confidently predicted: rests on few rows


def test_label_balance_estimate_is_close_to_the_truth(worlds) -> None:
    for seed, world in worlds.items():
        shares = world.estimates["fleet"]["label_shares"]
        assert shares["1"]["value"] == pytest.approx(world.fleet.failure_share, abs=0.02), seed
        assert shares["0"]["value"] + shares["1"]["value"] == pytest.approx(1.0)
        assert shares["1"]["naive"] > world.fleet.failure_share + 0.1  # uploads over-represent failures


def test_no_rows(tmp_path) -> None:
    paths = Paths.at(tmp_path)
    assert load_uploads(paths, params()).empty  # no landing zone at all
    (paths.uploads / "dev-000").mkdir(parents=True)
    (paths.uploads / "dev-000" / "junk.csv").write_bytes(b"\xff\xfe not utf-8")  # unreadable: skipped
    frame = load_uploads(paths, params())
    assert frame.empty and INCLUSION_PROBABILITY in frame.columns
    estimates = fleet_estimates(frame, params())
    assert estimates["rows"] == 0 and estimates["fleet"] is None and estimates["devices"] == {}
    empty = ipw_mean(np.array([]), np.array([]))
    assert (empty.value, empty.low, empty.naive, empty.rows, empty.weight) == (None, None, None, 0, 0.0)


def test_every_row_uploaded_is_the_plain_mean_with_an_open_interval() -> None:
    y = np.array([1.0] * 27 + [0.0] * 3)
    got = ipw_mean(y, np.ones_like(y))
    assert got.value == pytest.approx(0.9) and got.naive == pytest.approx(0.9) and got.weight == 30
    assert got.low < 0.9 < got.high and got.high - got.low > 0.1
    perfect = ipw_mean(np.ones(30), np.ones(30))
    assert perfect.value == 1.0 and perfect.high == pytest.approx(1.0) and perfect.low == pytest.approx(0.8865, 1e-3)
    assert wilson(1.0, 30)[0] == pytest.approx(perfect.low)
    real = ipw_mean(np.array([2.0, 4.0]), np.array([1.0, 0.5]))  # not 0/1: a weighted mean, normal interval
    assert real.value == pytest.approx((2 + 2 * 4) / 3) and real.low is not None and real.low < real.value


def test_probabilities_outside_zero_one_are_ignored_and_counted(tmp_path) -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, np.nan])
    p = np.array([0.5, 1.0, 0.0, -0.2, 1.5, np.nan, 1.0])
    got = ipw_mean(y, p)
    assert got.rows == 2 and got.ignored == 5 and got.value == pytest.approx(2 / 3) and got.naive == 0.5
    with pytest.raises(ValueError, match="differ in shape"):
        ipw_mean(np.ones(3), np.ones(2))
    # the same in a landed batch, with a probability that is no number at all
    model = predictor(tmp_path)
    paths = Paths.at(tmp_path / "project")
    land_device(paths, model, 0, SEEDS[0], slice(0, 400))
    (batch,) = (paths.uploads / "dev-000").glob("*.csv")
    frame = pd.read_csv(batch, dtype=str)
    frame.loc[0, INCLUSION_PROBABILITY], frame.loc[1, INCLUSION_PROBABILITY] = "2.0", "lots"
    batch.write_text(frame.to_csv(index=False))
    loaded = load_uploads(paths, params())
    estimate = accuracy(loaded, params().schema.label.name)
    assert estimate.ignored == 2 and estimate.rows == len(frame) - 2
    assert label_shares(loaded, params().schema.label.name, [0, 1])["0"].ignored == 2


def test_mixed_model_versions_are_estimated_per_version_and_can_be_filtered(tmp_path) -> None:
    good, flipped = predictor(tmp_path), predictor(tmp_path, flip=True)
    paths = Paths.at(tmp_path / "project")
    before = land_device(paths, good, 0, SEEDS[1], slice(0, ROWS // 2))
    after = land_device(paths, flipped, 0, SEEDS[1], slice(ROWS // 2, None))  # a confidently wrong update
    other = land_device(paths, good, 1, SEEDS[1])
    frame = load_uploads(paths, params())
    assert set(frame[MODEL_VERSION]) == {good.version, flipped.version}
    estimates = fleet_estimates(frame, params())
    by_version = estimates["device_versions"]["dev-000"]
    assert by_version[good.version]["accuracy"]["value"] == pytest.approx(before.accuracy, abs=0.02)
    assert by_version[flipped.version]["accuracy"]["value"] == pytest.approx(after.accuracy, abs=0.02)
    assert after.accuracy < 0.5 < before.accuracy
    mixed = (before.correct + after.correct) / (before.rows + after.rows)
    pooled = estimates["devices"]["dev-000"]["accuracy"]  # the mix rests on how many rows each version saw
    assert pooled["low"] <= mixed <= pooled["high"] and pooled["value"] == pytest.approx(mixed, abs=0.03)
    both = (before.correct + other.correct) / (before.rows + other.rows)
    assert estimates["versions"][good.version]["accuracy"]["value"] == pytest.approx(both, abs=0.02)
    assert list(estimates["device_versions"]["dev-001"]) == [good.version]
    only = load_uploads(paths, params(), model_versions=[flipped.version])
    assert set(only[MODEL_VERSION]) == {flipped.version} and set(only[params().schema.device_id]) == {"dev-000"}
    assert load_uploads(paths, params(), since=pd.Timestamp("2100-01-01", tz="UTC").to_pydatetime()).empty


def test_labels_read_as_numbers_or_text_compare_alike() -> None:
    frame = pd.DataFrame({PREDICTION: ["1", "0", "0"], "failure": [1.0, 0.0, 1.0],
                          INCLUSION_PROBABILITY: [1.0, 0.5, 1.0], UPLOAD_REASON: ["labelled", "random", "labelled"]})
    got = accuracy(frame, "failure")
    assert got.value == pytest.approx(3 / 4)  # weights 1, 2, 1: the two correct rows stand for 3 of 4
    assert label_shares(frame, "failure", [0, 1])["1"].value == pytest.approx(2 / 4)


def test_estimates_file_roundtrip_and_absent_or_broken(tmp_path, worlds) -> None:
    paths = Paths.at(tmp_path)
    assert read_estimates(paths) is None
    written = write_estimates(paths, worlds[SEEDS[0]].estimates)
    assert read_estimates(paths) == json.loads(written.read_text())
    for broken in ("{not json", "[1, 2]", "\xff"):
        written.write_text(broken, encoding="utf-8", errors="surrogateescape")
        assert read_estimates(paths) is None
