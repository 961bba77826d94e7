"""kill -9 during a device update: a worker process (tests.edge_update_worker) installs and activates
release 2 over release 1 and is SIGKILLed at random moments spread over the whole update; after every
kill, StateDir.recover() and loading ``current`` give a complete release that verifies and predicts
(release 1 or release 2, never a torn one), state.json agrees with the links, and a second recover
changes nothing."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from edge.inference import Predictor
from edge.state import StateDir, release_problem
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import make_manifest, tiny_onnx

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

KILLS = 60
PAD = 24 * 1024 * 1024  # bytes of padding in each model: makes the copy long enough to be hit


def _release(folder: Path, version: str, seed: int) -> Path:
    folder.mkdir(parents=True)
    model = tiny_onnx(seed, PAD)
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.json").write_text(make_manifest(model, version).to_json())
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(template state dir with release 1 active, staged release 2)."""
    base = tmp_path_factory.mktemp("crash")
    template = StateDir(base / "template")
    template.recover()
    template.activate(template.install(_release(base / "staged-1" / "1", "1", seed=1)).name)
    return template.path, _release(base / "staging" / "2", "2", seed=2)


def _start(state: Path, staged: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.edge_update_worker", str(state), str(staged)],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _go(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


def _fresh(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, symlinks=True)
    return target


def _check(path: Path) -> str:
    """Recover, then the active release must be complete and serve; returns its version."""
    state = StateDir(path)
    with state.lock():
        state.recover()
        current = state.current_folder()
        assert current is not None, "no current release after recovery"
        assert release_problem(current) is None
        version = current.name
        assert version in {"1", "2"}
        assert state.previous_version() == ("1" if version == "2" else None)
        activation = state.activation()
        assert activation is not None and (activation.version, activation.previous) == (
            version, state.previous_version())
        prediction = Predictor.from_folder(current).predict([0.5, -0.25])
        assert prediction.model_version == version and prediction.label in (0, 1)
        links = (state.current_version(), state.previous_version(), state.installed())
        assert state.recover() == []  # nothing left to repair
        assert (state.current_version(), state.previous_version(), state.installed()) == links
        assert not any(p.name.startswith(".") for p in state.releases_dir.iterdir())
    return version


def test_update_killed_at_random_points_leaves_a_complete_release(world, tmp_path) -> None:
    template, staged = world
    durations = []
    for i in range(3):  # calibrate: the whole update, from "go" to "done"
        proc = _start(_fresh(template, tmp_path / f"calibrate-{i}"), staged)
        started = _go(proc)
        out, _ = proc.communicate(timeout=60)
        durations.append(time.perf_counter() - started)
        assert proc.returncode == 0 and out.startswith("done"), out
        assert _check(tmp_path / f"calibrate-{i}") == "2"
    duration = max(durations)
    rng = random.Random(5)
    outcomes: Counter[str] = Counter()
    partial_seen = 0
    began = time.perf_counter()
    for i in range(KILLS):
        path = _fresh(template, tmp_path / f"kill-{i}")
        proc = _start(path, staged)
        delay = rng.uniform(0.0, duration * 1.1)
        started = _go(proc)
        time.sleep(max(0.0, started + delay - time.perf_counter()))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        partial_seen += any(".partial-" in p.name for p in (path / "releases").iterdir())
        outcomes[_check(path)] += 1
        shutil.rmtree(path)
    elapsed = time.perf_counter() - began
    print(f"update {duration * 1000:.0f} ms; {KILLS} kills in {elapsed:.1f} s; outcomes {dict(outcomes)}; "
          f"killed mid-copy {partial_seen}")
    assert outcomes["1"] > 0 and outcomes["2"] > 0, outcomes  # kills landed before and after the switch
    assert partial_seen > 0  # and some in the middle of the copy
