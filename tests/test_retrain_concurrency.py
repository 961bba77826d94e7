"""Two retrains on one project: the second is refused in one line naming the first (pid, start time), or waits
for it with ``--wait``; the lock is the kernel's (flock), so a killed retrain leaves none behind; within one
process it is re-entrant (the CLI holds it around the flow, which takes it again).

The holder is a real process holding ``flows.retrain_lock`` (what a running retrain holds from before Prefect
starts); the refused ``edgeloop retrain`` is a real subprocess. Only the slow tests start a retrain: ``--wait``
(Ctrl-C'd once it has begun) and the retrain flow run directly, as a worker runs it (killed once its stages
have begun).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge.contracts.layout import Paths
from edgeloop.testkit.project import override, repo_params_raw
from flows.retrain_lock import RetrainBusy, hold_retrain_lock, lock_file

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
HOLDER = """
import sys, time
from edge.contracts.layout import Paths
from flows.retrain_lock import hold_retrain_lock
with hold_retrain_lock(Paths.at(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def project(root: Path) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def holder(root: Path, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_retrain_is_refused_in_one_line_naming_the_first(tmp_path):
    root = project(tmp_path / "p")
    first = holder(root, 60)
    try:
        started = time.monotonic()
        done = subprocess.run([EDGELOOP, "retrain", "--root", str(root)], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    finally:
        first.kill()
        first.wait()
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(
        rf"error: another retrain is running on this project \(pid {first.pid}, started \d\d:\d\d:\d\d\); "
        r"wait for it or pass --wait\n", done.stderr), done.stderr
    assert took < 15, "refused before Prefect starts"
    assert not (root / "data/loop").exists(), "a refused retrain records nothing"


def test_a_killed_retrain_leaves_no_stale_lock(tmp_path):
    root = project(tmp_path / "p")
    first = holder(root, 60)
    with pytest.raises(RetrainBusy), hold_retrain_lock(Paths.at(root)):
        pass
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert lock_file(Paths.at(root)).is_file()  # the file stays; the kernel dropped the lock with the process
    with hold_retrain_lock(Paths.at(root)):
        assert lock_file(Paths.at(root)).read_text().split()[0] == str(os.getpid())


def test_the_lock_is_reentrant_in_one_process_and_waits_across_processes(tmp_path):
    root = project(tmp_path / "p")
    paths = Paths.at(root)
    with hold_retrain_lock(paths), hold_retrain_lock(paths, wait=False):  # the CLI around the flow
        busy = subprocess.run([sys.executable, "-c", HOLDER, str(root), "0"], capture_output=True, text=True,
                              timeout=60)
        assert busy.returncode != 0 and "another retrain is running" in busy.stderr
    first = holder(root, 1.5)
    told: list[str] = []
    started = time.monotonic()
    with hold_retrain_lock(paths, wait=True, on_wait=told.append):
        waited = time.monotonic() - started
    first.wait()
    assert 0.5 < waited < 10 and len(told) == 1 and f"pid {first.pid}" in told[0]


@pytest.mark.slow
def test_wait_waits_for_the_running_retrain_then_starts(tmp_path):
    root = project(tmp_path / "p")
    first = holder(root, 3)
    second = subprocess.Popen([EDGELOOP, "retrain", "--wait", "--root", str(root)], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    assert second.stderr is not None
    try:
        waiting = second.stderr.readline()
        assert f"waiting for another retrain on this project (pid {first.pid}, started " in waiting
        assert first.poll() is None, "it waited while the first one held the lock"
        starting = second.stderr.readline()
        assert first.wait(timeout=30) == 0 and "retrain flow on" in starting  # started once the first ended
    finally:
        os.killpg(second.pid, signal.SIGINT)
        code = second.wait(timeout=30)
    rest = second.stderr.read()
    assert code == 130 and "Traceback" not in rest, rest


FLOW = """
import sys
from flows.orchestration.retrain import retrain
retrain(root=sys.argv[1], publish=False, source="deployment", requested_by="a test standing in for a worker")
"""


def test_the_flow_itself_waits_for_the_project_lock_as_a_deployment_run_would(prefect_server, tmp_path):
    """The path a worker takes: the retrain flow (no CLI around it) waits while another retrain holds the
    lock, starts its stages once it is free, and once killed leaves the lock free."""
    from prefect.settings import PREFECT_API_URL

    root = project(tmp_path / "p")
    first = holder(root, 600)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    flow = subprocess.Popen([sys.executable, "-c", FLOW, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    assert flow.stdout is not None
    try:
        said = ""
        while "waiting for another retrain" not in said:
            line = flow.stdout.readline()
            assert line, f"the flow ended without waiting: {said}"
            said += line
        assert f"pid {first.pid}" in said
        time.sleep(1.0)
        assert not (root / "data/simulated").exists(), "no stage ran while the lock was held"
        first.kill()
        first.wait()
        deadline = time.monotonic() + 120
        while not (root / "data/simulated").exists():
            assert time.monotonic() < deadline and flow.poll() is None, "the flow never started its stages"
            time.sleep(0.2)
    finally:
        first.kill()
        flow.kill()
        flow.wait()
    with hold_retrain_lock(Paths.at(root)):  # the killed flow left no lock behind
        pass
