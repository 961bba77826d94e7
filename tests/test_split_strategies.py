"""split strategies: sizes, determinism, groups that never straddle, per-device newest rows, and a split
that would leave a class untrained stopping in one line before any training.

Unit tests on small frames, then the real ingest + split stages on one temp project (ingested once per
module) and the CLI's one-line error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edgeloop.testkit.project import override, repo_params_raw
from flows.params import Params, ParamsError, parse_params
from flows.stages import ingest, run_stage
from flows.stages.split import class_rows, split_frame
from simulator.batches import write_batch
from tests.bad_batches import good_frame

FRACTION = 0.2


def params_for(**split: Any) -> Params:
    dotted = {f"split.{k}": v for k, v in split.items()}
    return parse_params(override(repo_params_raw(), {"ingest.data_docs": False, **dotted}))


def small_frame(rows: int = 300, devices: int = 3, seed: int = 1) -> pd.DataFrame:
    """Rows of ``devices`` devices at shuffled times, a rare class 1, and a ``run`` of 30 rows each."""
    rng = np.random.default_rng(seed)
    schema = params_for().schema
    frame = pd.DataFrame({name: rng.uniform(0, 10, rows) for name in schema.feature_names})
    frame["failure"] = (rng.uniform(size=rows) < 0.3).astype("int64")
    frame["event_id"] = np.arange(rows, dtype="int64")
    frame["device_id"] = [f"d{i % devices}" for i in range(rows)]
    offsets = rng.permutation(rows)
    frame["event_time"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(offsets, unit="min")
    frame["tool_wear_min"] = np.arange(rows) // 30  # stands in for a run/batch column (10 runs)
    return frame


def test_time_per_device_holds_out_the_newest_rows_of_every_device() -> None:
    params = params_for(strategy="time_per_device")
    frame = small_frame()
    train, holdout, _ = split_frame(frame, params)
    assert len(train) + len(holdout) == len(frame)
    for device, rows in frame.groupby("device_id"):
        kept, held = train[train.device_id == device], holdout[holdout.device_id == device]
        assert len(held) == round(len(rows) * FRACTION)  # distinct times: exactly the share
        assert kept.event_time.max() < held.event_time.min()
    # the plain time split would give the newest rows overall, not per device
    assert list(split_frame(frame, params)[1].event_id) == list(holdout.event_id)


def test_stratified_random_keeps_each_class_share_and_is_seeded() -> None:
    params = params_for(strategy="stratified_random", seed=3)
    frame = small_frame()
    train, holdout, info = split_frame(frame, params)
    assert info == {"seed": 3}
    for value, rows in frame.groupby("failure"):
        assert (holdout.failure == value).sum() == round(len(rows) * FRACTION)
    again = split_frame(frame.sample(frac=1.0, random_state=5), params)[1]  # row order does not matter
    assert list(again.event_id) == list(holdout.event_id)
    other = split_frame(frame, params_for(strategy="stratified_random", seed=4))[1]
    assert set(other.event_id) != set(holdout.event_id)
    assert list(holdout.event_time) == sorted(holdout.event_time)  # outputs keep the time order


def test_group_split_never_straddles_and_is_deterministic() -> None:
    params = params_for(strategy="group", group_column="tool_wear_min", seed=1)
    frame = small_frame()
    train, holdout, info = split_frame(frame, params)
    assert not set(train.tool_wear_min) & set(holdout.tool_wear_min)
    assert info["groups"] == 10 and info["holdout_groups"] == 2  # 2 runs of 30 rows = 20%
    assert len(holdout) == 60
    assert list(split_frame(frame, params)[1].event_id) == list(holdout.event_id)


def test_group_needs_an_existing_column_and_params_say_so() -> None:
    with pytest.raises(UserError, match="split.group_column 'run' is not a column of the curated data.*batch"):
        split_frame(small_frame(), params_for(strategy="group", group_column="run"))
    with pytest.raises(ParamsError, match="split: strategy 'group' needs split.group_column"):
        params_for(strategy="group")
    with pytest.raises(ParamsError, match="split.strategy"):
        params_for(strategy="random")


# --- the real stages on one project -------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """Two devices, 10 batches of 40 rows each; class 1 only in the newest batch of each device (10%)."""
    paths = Paths.at(tmp_path_factory.mktemp("split-project"))
    schema = params_for().schema
    for device in ("m-1", "m-2"):
        for index in range(10):
            frame = good_frame(schema, device, rows=40, seed=index, first_event=index * 40, record=False)
            frame["failure"] = int(index == 9)
            write_batch(paths.uploads, device, frame)
    ingest.main(params_for(), paths)
    return paths


def write_params(paths: Paths, **split: Any) -> None:
    raw = override(repo_params_raw(), {"ingest.data_docs": False, **{f"split.{k}": v for k, v in split.items()}})
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_class_only_in_the_newest_rows_stops_split_before_training(project: Paths) -> None:
    for stale in ("train.parquet", "holdout.parquet"):
        (project.split / stale).unlink(missing_ok=True)
    started = time.perf_counter()
    with pytest.raises(UserError) as error:
        run_stage("split", params_for(), project)
    seconds = time.perf_counter() - started
    message = str(error.value)
    assert message == (
        "class 1 has 0 training rows (split.min_class_rows: 5) with split.strategy=time (they occur only in "
        "the newest 20% of rows); try split.strategy: stratified_random or group"
    )
    assert not (project.split / "train.parquet").exists()  # nothing half-written; train has nothing to run on
    assert not (project.model / "model.pkl").exists()
    assert seconds < 10, seconds  # generous: it reads the curated rows only; train would be next


def test_the_cli_prints_that_one_line_and_exits_2(project: Paths) -> None:
    write_params(project)
    done = subprocess.run([sys.executable, "-m", "flows", "split", "--root", str(project.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: class 1 has 0 training rows (split.min_class_rows: 5) with split.strategy=time (they occur only "
        "in the newest 20% of rows); try split.strategy: stratified_random or group"
    ]


@pytest.mark.parametrize("strategy", ["stratified_random", "group"])
def test_other_strategies_train_every_class_and_record_themselves(project: Paths, strategy: str) -> None:
    extra = {"group_column": "batch", "seed": 2} if strategy == "group" else {}
    params = params_for(strategy=strategy, **extra)
    summary = run_stage("split", params, project)
    train = pd.read_parquet(project.split / "train.parquet")
    holdout = pd.read_parquet(project.split / "holdout.parquet")
    assert summary["strategy"] == strategy and len(train) + len(holdout) == 800
    assert all(n >= 5 for n in class_rows(train, params.schema).values())
    assert list(train.columns) == list(holdout.columns) and "__edgeloop_batch__" not in train.columns
    recorded = json.loads((project.metrics / "split.json").read_text())
    assert recorded["strategy"] == strategy and recorded["train_class_rows"] == summary["train_class_rows"]
    if strategy == "group":  # whole 40-row batches held out: batches are identified by device + event range
        assert recorded["groups"] == 20 and recorded["holdout_groups"] == 4 and len(holdout) == 160
        held = {(d, e // 40) for d, e in zip(holdout.device_id, holdout.event_id, strict=True)}
        kept = {(d, e // 40) for d, e in zip(train.device_id, train.event_id, strict=True)}
        assert not held & kept
    again = run_stage("split", params, project)
    assert again == summary and pd.read_parquet(project.split / "holdout.parquet").equals(holdout)


def test_a_class_with_too_few_rows_in_all_is_named_with_its_count(project: Paths) -> None:
    params = params_for(strategy="stratified_random", min_class_rows=100)
    with pytest.raises(UserError, match=r"^class 1 has 80 rows in all the curated data, fewer than "
                                        r"split.min_class_rows \(100\)"):
        run_stage("split", params, project)


def test_a_holdout_without_some_class_is_recorded(project: Paths, caplog: pytest.LogCaptureFixture) -> None:
    params = params_for(strategy="group", group_column="device_id", seed=0, min_class_rows=1)
    summary = run_stage("split", params, project)
    assert summary["holdout_missing_classes"] == []  # each device has both classes
    raw = override(repo_params_raw(), {"schema.label.classes": [0, 1, 2], "ingest.data_docs": False,
                                       "split.min_class_rows": 1, "split.strategy": "stratified_random"})
    three = parse_params(raw)
    with pytest.raises(UserError, match="class 2 has 0 rows in all the curated data"):
        run_stage("split", three, project)
