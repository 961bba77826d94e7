"""dvc repro, for real, in temporary git repositories: runs end to end from a fresh clone, a second
repro is a no-op, two clones produce byte-identical ONNX, and exp run / metrics / plots work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, override, repo_params_raw

pytestmark = pytest.mark.integration

PROJECT_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", "data/uploads/README.md"]
PROJECT_DIRS = ["flows", "edge", "simulator", "edgeloop"]


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding the project as committed, with small default data."""
    root = tmp_path_factory.mktemp("origin")
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 2000})
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "project"], root)
    return root


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
    from flows.retrain import retrain

    work = clone(origin, tmp_path / "flowrun")
    state = retrain(root=str(work), return_state=True)
    assert state.is_completed(), state.message
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"simulate", "ingest", "split", "train", "export", "evaluate", "gate"}
    assert json.loads(run(["dvc", "status", "--json"], work).stdout) == {}
    again = run(["dvc", "repro"], work)
    assert "Running stage" not in again.stdout, again.stdout
