"""kill -9 while a runner applies a signed policy: a real child process (tests.edge_policy_worker) applies
version 2 over version 1 and is SIGKILLed at each stage of the apply (temp file durable but not renamed,
renamed but the folder not synced, fully applied); afterwards ``policy/applied.json`` holds version 1 or
version 2 whole, never a mix, and a restarted runner (edge.runner.Runner) runs with exactly that version's
values."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_config
from edge.policy_updates import PolicyFollower
from edge.runner import Runner
from edge.state import StateDir
from edgeloop.testkit.project import REPO
from edgeloop.testkit.runner_world import runner_config
from tests.edge_policy_worker import SETTINGS, fetch_of

pytestmark = pytest.mark.slow  # kill -9 of real processes


def _values(runner_or_config: object) -> tuple[float, int, int]:
    config = getattr(runner_or_config, "config", runner_or_config)
    return (config.upload.random_rate, config.upload.batch_rows, config.drift.window_rows)  # type: ignore[attr-defined]


EXPECTED = {v: (s["upload"]["random_rate"], s["upload"]["batch_rows"], s["drift"]["window_rows"])
            for v, s in SETTINGS.items()}


@pytest.mark.parametrize(("stage", "version"), [("written", 1), ("renamed", 2), ("applied", 2)])
def test_kill_9_while_applying_leaves_the_old_or_the_new_policy(tmp_path: Path, stage: str, version: int) -> None:
    config_file = runner_config(tmp_path / "device", "http://127.0.0.1:9", "elt_press-1_secretsecret", b"{}")
    config = load_config(config_file, environ={})
    first = PolicyFollower(config, StateDir(config.state_dir), fetch_of(1))
    assert first.poll_now().kind == "applied"  # version 1 in force before the child starts
    child = subprocess.Popen([sys.executable, "-m", "tests.edge_policy_worker", str(config_file), stage],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        seen = []
        while not seen or seen[-1] != stage:
            line = child.stdout.readline().strip()
            assert line, f"the child ended before {stage} (saw {seen})"
            seen.append(line)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    applied = json.loads((config.state_dir / "policy" / "applied.json").read_text())
    assert applied["version"] == version and applied["requested"] == SETTINGS[version]  # whole: one version's
    runner = Runner(load_config(config_file, environ={}))  # restarted: loads what the file holds
    try:
        assert runner.policy.version == version
        assert _values(runner) == EXPECTED[version]
        assert runner.uploader.batch_rows == EXPECTED[version][1]
        assert runner.truth.policy.random_rate == EXPECTED[version][0]
    finally:
        runner.stop()
    shutil.rmtree(tmp_path / "device", ignore_errors=True)
