"""dvc repro, for real, in temporary git repositories: runs end to end from a fresh clone, a second
repro is a no-op, two clones produce byte-identical ONNX, and exp run / metrics / plots work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.projects import make_git_project, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding the project as committed, with small default data."""
    root = tmp_path_factory.mktemp("origin") / "project"
    return make_git_project(root, {"simulate.devices": 2, "simulate.rows_per_device": 2000})


def clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    return dest


def test_repro_from_fresh_clone_then_noop_then_identical_in_second_clone(origin, tmp_path):
    first = clone(origin, tmp_path / "first")
    run(["dvc", "repro"], first)
    decision = json.loads((first / "data/candidate/decision.json").read_text())
    assert decision["passed"] is True, decision
    assert (first / "dvc.lock").is_file()

    again = run(["dvc", "repro"], first)
    assert "Running stage" not in again.stdout, again.stdout
    status = run(["dvc", "status", "--json"], first)
    assert json.loads(status.stdout) == {}

    second = clone(origin, tmp_path / "second")
    run(["dvc", "repro"], second)
    one = (first / "data/model/model.onnx").read_bytes()
    assert one == (second / "data/model/model.onnx").read_bytes()
    assert (first / "data/curated").is_dir()


def test_exp_run_metrics_and_plots(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    run(["dvc", "repro"], work)
    run(["dvc", "exp", "run", "-S", "train.hgb.max_iter=30"], work, timeout=600)
    assert yaml.safe_load((work / "params.yaml").read_text())["train"]["hgb"]["max_iter"] == 30
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], work).stdout)
    text = json.dumps(metrics)
    assert "f1_macro" in text and "max_abs_diff" in text
    run(["dvc", "plots", "show", "-o", str(work / "plots_html")], work)
    assert (work / "plots_html" / "index.html").is_file()


def test_flow_run_records_dvc_lock_so_repro_is_a_noop(origin, tmp_path, prefect_server):
    """The Prefect flow and dvc repro share the stages: after a flow run, DVC sees nothing to do."""
    from flows.orchestration.retrain import retrain

    work = clone(origin, tmp_path / "flowrun")
    state = retrain(root=str(work), return_state=True)
    assert state.is_completed(), state.message
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"simulate", "ingest", "split", "train", "export", "evaluate", "gate"}
    assert json.loads(run(["dvc", "status", "--json"], work).stdout) == {}
    again = run(["dvc", "repro"], work)
    assert "Running stage" not in again.stdout, again.stdout

    # The flow ended with a signed release on canary; it reproduces from its recorded lineage.
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.releases import ReleaseConfig
    from flows.releases.reproduce import reproduce_release

    result = state.result(raise_on_failure=False)
    assert result["release"]["version"] == 1 and result["release"]["channel"] == "canary"
    paths = Paths.at(work)
    report = reproduce_release(ReleaseConfig.from_params(load_params(paths.params), paths), 1, work)
    assert report["data_hash_matches"] and report["predictions_identical"], report
    assert report["onnx_bytes_identical"], report
