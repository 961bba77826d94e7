"""The simulated plant and the simulate stage: reproducible by seed, inside the params.yaml schema and
ranges, each drift kind changes what it claims to, the label is learnable, and the stage regenerates
its own folder idempotently, refuses a schema it cannot fill and writes nothing when switched off."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulator
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, PROBABILITIES, UPLOAD_REASON
from edgeloop.testkit.project import REPO, override
from flows.params import Params, load_params, parse_params
from flows.stages import simulate as simulate_stage

START = "2026-01-01T00:00:00Z"
SENSORS = list(simulator.SENSOR_COLUMNS)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(REPO / "params.yaml")


def device(index: int = 0, rows: int = 4000, seed: int = 7, drift: str = "none", **kw) -> pd.DataFrame:
    return simulator.simulate_device(index, rows, seed, START, 60, drift=drift, **kw)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- reproducibility -------------------------------------------------------------------------------


def test_same_seed_same_frame_other_seed_or_device_differs():
    a, b = device(seed=3), device(seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not device(seed=4)[SENSORS].equals(a[SENSORS])
    other = device(index=1, seed=3)
    assert not other[SENSORS].equals(a[SENSORS])
    assert (other["device_id"] == "dev-001").all() and (a["device_id"] == "dev-000").all()


def test_device_stream_does_not_depend_on_fleet_size():
    small = dict(simulator.simulate_fleet(2, 500, 9, START, 60))
    large = dict(simulator.simulate_fleet(5, 500, 9, START, 60))
    pd.testing.assert_frame_equal(small["dev-001"], large["dev-001"])
    assert list(large) == [f"dev-{i:03d}" for i in range(5)]


def test_write_fleet_same_bytes_batches_and_progress(tmp_path):
    seen: list[Path] = []
    first = simulator.write_fleet(tmp_path / "a", 2, 2500, 1000, 5, START, 60, on_batch=seen.append)
    simulator.write_fleet(tmp_path / "b", 2, 2500, 1000, 5, START, 60)
    assert seen == first and len(first) == 2 * math.ceil(2500 / 1000)
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    again = simulator.write_fleet(tmp_path / "a", 2, 2500, 1000, 5, START, 60)
    assert again == first  # content-addressed: nothing new
    rows = [len(pd.read_parquet(p)) for p in first]
    assert rows == [1000, 1000, 500, 1000, 1000, 500]
    other_seed = simulator.write_fleet(tmp_path / "c", 2, 2500, 1000, 6, START, 60)
    assert {p.name for p in other_seed}.isdisjoint(p.name for p in first)


def test_batches_read_back_equal_to_the_frame(tmp_path):
    paths = simulator.write_fleet(tmp_path, 1, 300, 100, 2, START, 60)
    back = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    pd.testing.assert_frame_equal(back, device(rows=300, seed=2), check_dtype=False)
    assert str(back["event_time"].dtype) == "datetime64[ns, UTC]"


# --- schema, dtypes, ranges ------------------------------------------------------------------------


def test_columns_and_dtypes_follow_the_params_schema(params):
    schema = params.schema
    frame = device(rows=3000)
    assert simulate_stage.schema_mismatch(schema) is None
    assert set(schema.column_names) <= set(frame.columns)
    assert {UPLOAD_REASON, INCLUSION_PROBABILITY} <= set(frame.columns)
    assert not {MODEL_VERSION, PREDICTION, PROBABILITIES} & set(frame.columns)
    for name in schema.feature_names:
        assert frame[name].dtype == np.float64, name
    assert frame[schema.label.name].dtype == np.int64
    assert set(frame[schema.label.name].unique()) <= set(schema.label.classes)
    assert frame[schema.event_id].dtype == np.int64
    assert frame[schema.event_id].is_unique and frame[schema.event_id].is_monotonic_increasing
    assert str(frame[schema.event_time].dtype) == "datetime64[ns, UTC]"
    assert frame[schema.event_time].iloc[0] == pd.Timestamp(START)
    assert (frame[schema.event_time].diff().dropna() == pd.Timedelta(seconds=60)).all()
    assert (frame[UPLOAD_REASON] == "labelled").all() and (frame[INCLUSION_PROBABILITY] == 1.0).all()


@pytest.mark.parametrize("drift", simulator.DRIFT_KINDS)
def test_values_stay_in_the_physical_ranges(params, drift):
    frame = device(rows=6000, drift=drift, drift_start=0.5)
    for feature in params.schema.features:
        values = frame[feature.name].dropna()
        assert values.min() >= feature.min and values.max() <= feature.max, feature.name


def test_positive_rate_missing_values_and_tool_changes():
    frame = pd.concat([device(i, rows=5000) for i in range(3)])
    assert 0.04 <= frame["failure"].mean() <= 0.10
    missing = frame[SENSORS].isna().mean()
    assert ((missing > 0.003) & (missing < 0.03)).all(), missing.to_dict()
    wear = device(rows=3000)["tool_wear_min"].interpolate()
    assert (wear.diff() < -100).sum() >= 5  # tools get changed (wear resets) ...
    assert wear.max() > 200  # ... late in their life


def test_regimes_change_the_operating_point():
    speed = device(rows=5000)["speed_rpm"]
    hourly = speed.groupby(np.arange(len(speed)) // 60).mean()
    assert hourly.max() - hourly.min() > 150  # regime switches move the hourly mean speed


# --- drift -----------------------------------------------------------------------------------------

ROWS, CUT = 6000, 4500  # drift_start 0.75


def test_sensor_offset_biases_one_sensor_after_drift_start_only():
    base, drifted = device(rows=ROWS), device(rows=ROWS, drift="sensor_offset")
    col = simulator.OFFSET_SENSOR
    shift_after = drifted[col].iloc[CUT:].mean() - base[col].iloc[CUT:].mean()
    assert shift_after == pytest.approx(simulator.OFFSET_AMOUNT, abs=0.01)
    pd.testing.assert_frame_equal(drifted.iloc[:CUT], base.iloc[:CUT])
    others = [c for c in base.columns if c != col]
    pd.testing.assert_frame_equal(drifted[others], base[others])  # physics (and label) unchanged
    within = drifted[col].iloc[CUT:].mean() - drifted[col].iloc[:CUT].mean()
    assert 4.0 < within < 12.0  # visible against the sensor's own history, too


def test_new_regime_goes_outside_the_seen_range():
    base, drifted = device(rows=ROWS), device(rows=ROWS, drift="new_regime")
    pd.testing.assert_frame_equal(drifted.iloc[:CUT], base.iloc[:CUT])
    seen_max = drifted["speed_rpm"].iloc[:CUT].max()
    after = drifted["speed_rpm"].iloc[CUT:]
    assert (after > seen_max).mean() > 0.3
    assert base["speed_rpm"].iloc[CUT:].max() <= seen_max + 300  # no drift: stays near the seen range


def test_relationship_drift_fails_more_for_the_same_sensors():
    base, drifted = device(rows=ROWS), device(rows=ROWS, drift="relationship")
    pd.testing.assert_frame_equal(drifted[SENSORS], base[SENSORS])
    pd.testing.assert_frame_equal(drifted.iloc[:CUT], base.iloc[:CUT])
    before, after = base["failure"].iloc[CUT:].mean(), drifted["failure"].iloc[CUT:].mean()
    assert after > 1.5 * before + 0.02


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown drift"):
        device(rows=10, drift="sideways")
    with pytest.raises(ValueError, match="drift_start"):
        device(rows=10, drift_start=1.5)
    assert len(device(rows=0)) == 0


# --- learnability ----------------------------------------------------------------------------------


def test_label_is_learnable_on_later_rows():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score

    frames = [df for _, df in simulator.simulate_fleet(4, 5000, 11, START, 60)]
    train = pd.concat([df.iloc[:3750] for df in frames])
    later = pd.concat([df.iloc[3750:] for df in frames])
    model = HistGradientBoostingClassifier(random_state=0).fit(train[SENSORS], train["failure"])
    score = f1_score(later["failure"], model.predict(later[SENSORS]), average="macro")
    assert score > 0.7, score


# --- the stage -------------------------------------------------------------------------------------


def small_params(raw: dict, **simulate) -> Params:
    dotted = {"simulate.devices": 2, "simulate.rows_per_device": 700, "simulate.batch_rows": 300}
    dotted.update({f"simulate.{k}": v for k, v in simulate.items()})
    return parse_params(override(raw, dotted))


def test_stage_regenerates_the_same_files_and_only_its_own_folder(raw_params, tmp_path):
    params, paths = small_params(raw_params), Paths.at(tmp_path)
    upload = paths.uploads / "dev-000" / "keep.csv"
    upload.parent.mkdir(parents=True)
    upload.write_text("x\n1\n")
    summary = simulate_stage.main(params, paths)
    first = files_of(paths.simulated)
    assert summary == {"devices": 2, "rows": 1400, "batches": 6, "path": "data/simulated"}
    assert len(first) == 6 and all(name.endswith(".parquet") for name in first)
    stale = paths.simulated / "dev-009" / ("0" * 64 + ".parquet")
    stale.parent.mkdir()
    stale.write_bytes(b"old run")
    assert simulate_stage.main(params, paths) == summary
    assert files_of(paths.simulated) == first  # stale batch gone, the rest byte-identical
    assert upload.read_text() == "x\n1\n"
    assert [p.name for p in paths.data.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_stage_failure_keeps_the_previous_history(raw_params, tmp_path, monkeypatch):
    params, paths = small_params(raw_params), Paths.at(tmp_path)
    simulate_stage.main(params, paths)
    before = files_of(paths.simulated)

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(simulator, "write_fleet", crash)
    with pytest.raises(RuntimeError):
        simulate_stage.main(small_params(raw_params, seed=99), paths)
    assert files_of(paths.simulated) == before
    assert [p.name for p in paths.data.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("schema.features.0.name", "ambient_c", "ambient_c"),
        ("schema.label.name", "broken", "broken"),
        ("schema.event_time", "ts", "ts"),
    ],
)
def test_stage_refuses_a_schema_it_cannot_fill(raw_params, tmp_path, key, value, named):
    raw = small_params(raw_params).model_dump(mode="json", by_alias=True)
    if key.startswith("schema.features"):
        raw["schema"]["features"][0]["name"] = value
    else:
        raw = override(raw, {key: value})
    with pytest.raises(UserError) as caught:
        simulate_stage.main(parse_params(raw), Paths.at(tmp_path))
    message = str(caught.value)
    assert named in message and "simulate.rows_per_device: 0" in message and "\n" not in message
    assert not (tmp_path / "data" / "simulated").exists() or not any((tmp_path / "data/simulated").iterdir())


def test_stage_with_zero_rows_writes_nothing_and_skips_the_schema(raw_params, tmp_path):
    paths = Paths.at(tmp_path)
    simulate_stage.main(small_params(raw_params), paths)  # an earlier run's history ...
    raw = override(raw_params, {"simulate.rows_per_device": 0, "schema.label.name": "my_label"})
    summary = simulate_stage.main(parse_params(raw), paths)
    assert summary == {"devices": 0, "rows": 0, "batches": 0, "path": "data/simulated"}
    assert paths.simulated.is_dir() and list(paths.simulated.iterdir()) == []  # ... is not kept
