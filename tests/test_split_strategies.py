"""split strategies: sizes, determinism, groups that never straddle, per-device newest rows, and a split
that would leave a class untrained stopping in one line before any training.

Unit tests on small frames, then the real split stage on one temp project (curated once per module) and
the CLI's one-line error; the evaluate stage's backstop message and the gate's record of the strategy.
"""

from __future__ import annotations

import hashlib
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
from flows.ingest import store
from flows.ingest.store import curated_frame
from flows.params import Params, ParamsError, parse_params
from flows.stages import run_stage
from flows.stages.split import class_rows, split_frame
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
    """Two devices, 10 batches of 40 rows each; class 1 only in the newest batch of each device (10%).

    Curated by the store's own chunk writer (what ingest commits), in two chunks; ingest itself is
    tested elsewhere and would cost seconds of Great Expectations here."""
    paths = Paths.at(tmp_path_factory.mktemp("split-project"))
    schema = params_for().schema
    for device in ("m-1", "m-2"):
        frames, entries = [], []
        for index in range(10):
            frame = good_frame(schema, device, rows=40, seed=index, first_event=index * 40, record=False)
            frame["failure"] = int(index == 9)
            frames.append(frame)
            entries.append((device, hashlib.sha256(f"{device}/{index}".encode()).hexdigest(), 40, 0))
        rows = curated_frame(pd.concat(frames, ignore_index=True), schema)
        store.write_chunk(paths.curated, rows, entries, np.repeat(np.arange(10), 40))
    return paths


def write_params(paths: Paths, **split: Any) -> None:
    raw = override(repo_params_raw(), {"ingest.data_docs": False, **{f"split.{k}": v for k, v in split.items()}})
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_class_only_in_the_newest_rows_stops_split_before_training(project: Paths) -> None:
    for stale in ("train.parquet", "holdout.parquet"):
        (project.split / stale).unlink(missing_ok=True)
    started = time.perf_counter()
    with pytest.raises(UserError) as error:
        run_stage("split", params_for(strategy="time"), project)
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
    write_params(project, strategy="time")
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


# --- the backstop in evaluate, and the gate's record ---------------------------------------------------


def two_class_onnx(n_features: int) -> bytes:
    """A real linear softmax model with 2 outputs, as a candidate trained without a third class would be
    (built with onnx.helper: skl2onnx costs seconds to import)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.linspace(-1, 1, n_features * 2, dtype=np.float32).reshape(n_features, 2),
                                      "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)],
        "two_classes",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_evaluate_names_the_classes_a_candidate_never_saw(tmp_path) -> None:
    from flows.stages import StageError, evaluate
    from tests.evaluation_helpers import install_candidate, make_params, write_ingest, write_splits

    params = make_params(three_class=True)
    paths = Paths.at(tmp_path)
    train, _ = write_splits(paths, params, train_rows=300, holdout_rows=100)
    label = params.schema.label
    lacking = train[train[label.name] != label.classes[2]]  # a split that missed the last class
    lacking.to_parquet(paths.split / "train.parquet", index=False)
    install_candidate(paths, two_class_onnx(len(params.schema.feature_names)))
    write_ingest(paths)
    with pytest.raises(StageError) as error:
        evaluate.main(params, paths)
    assert str(error.value) == (
        f"candidate model outputs probabilities for 2 of the schema's 3 classes: it never saw classes "
        f"{label.classes[2]} (0 rows in train.parquet); re-run split, which stops on such a split, and choose "
        "split.strategy: stratified_random or group"
    )


def test_the_gate_records_which_strategy_chose_the_holdout(tmp_path) -> None:
    from flows.stages import gate
    from tests.evaluation_helpers import read_json, write_ingest, write_json

    params = params_for(strategy="group", group_column="batch", seed=4)
    paths = Paths.at(tmp_path)
    write_ingest(paths)
    write_json(paths.metrics / "evaluate.json", {"candidate": {"accuracy": 0.9, "balanced_accuracy": 0.9,
                                                               "f1_macro": 0.9}, "champion": None})
    write_json(paths.metrics / "split.json", {"strategy": "group", "group_column": "batch", "seed": 4,
                                              "holdout_fraction": 0.2, "groups": 20, "holdout_groups": 4,
                                              "holdout_missing_classes": ["1"], "train_rows": 640})
    gate.main(params, paths)
    decision = read_json(paths.candidate / "decision.json")
    assert decision["split"] == {"strategy": "group", "group_column": "batch", "seed": 4, "holdout_fraction": 0.2,
                                 "groups": 20, "holdout_groups": 4, "holdout_missing_classes": ["1"]}
    quality = next(rule for rule in decision["rules"] if rule["name"] == "quality_floor")
    # the rule details are what the signed manifest's gate block carries
    assert quality["detail"].endswith("on the holdout of split.strategy=group (group_column batch, seed 4), "
                                      "20% held out")
    assert "- holdout: split.strategy=group (group_column batch, seed 4), 20% held out" in (
        paths.candidate / "decision.md").read_text()
    page = (paths.candidate / "index.html").read_text()
    assert "Holdout: split.strategy=group" in page and "no rows of classes 1" in page
    (paths.metrics / "split.json").unlink()  # a split from before the record: params.yaml says it
    gate.main(params_for(strategy="time"), paths)
    assert read_json(paths.candidate / "decision.json")["split"] == {"strategy": "time", "holdout_fraction": 0.2}
