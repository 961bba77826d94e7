"""Ctrl-C during a real ``edgeloop retrain`` (a git + DVC project, a temporary Prefect server): it ends within
5 s with one line and exit 130, a second Ctrl-C while it stops adds no traceback, the release repository is
byte for byte as before and still verifies, dvc runs cleanly, and the loop log records the run as cancelled;
meanwhile a second retrain of the same project was refused naming the first one's pid. A rerun then finishes
the work and says "already published as release 1" without signing anything new.

One project for the module: a first full retrain publishes release 1, the second (on a temporary Prefect
server, as a user's first try is) is interrupted during its stages, the third reruns; the first and third
use the session's Prefect server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.projects import env, make_git_project, run

pytestmark = pytest.mark.slow

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
SMALL = {"simulate.devices": 2, "simulate.rows_per_device": 1500}


def edgeloop(root: Path, *args: str, server: bool = False, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``server``: on the session's Prefect server (else the command starts a temporary one)."""
    environment = env()
    if server:
        from prefect.settings import PREFECT_API_URL

        environment["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return subprocess.run([EDGELOOP, *args, "--root", str(root)], cwd=root, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def published(tmp_path_factory, prefect_server) -> Path:
    """A project whose first retrain published release 1 (on the session's server: no temporary one to start)."""
    root = make_git_project(tmp_path_factory.mktemp("interrupt") / "p", SMALL)
    first = edgeloop(root, "retrain", server=True)
    assert first.returncode == 0, first.stderr
    assert "published release 1" in first.stderr
    return root


class Running:
    """`edgeloop retrain` in its own session (a terminal's Ctrl-C reaches the whole process group)."""

    def __init__(self, root: Path) -> None:
        self.process = subprocess.Popen([EDGELOOP, "retrain", "--root", str(root)], cwd=root, env=env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.err: list[str] = []
        self._seen: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.err.append(line)
                for text, event in self._seen.items():
                    if text in line:
                        event.set()

    def wait_for(self, text: str, timeout: float = 300) -> None:
        with self._lock:
            event = self._seen.setdefault(text, threading.Event())
            if any(text in line for line in self.err):
                event.set()
        assert event.wait(timeout), f"never saw {text!r}: {''.join(self.err)}"

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)


def test_ctrl_c_stops_a_retrain_within_5_s_in_one_line_leaving_everything_whole(published):
    root = published
    releases_before = snapshot(root / "data/releases")
    lock_before = (root / "dvc.lock").read_bytes()
    running = Running(root)  # on a temporary Prefect server, which a terminal's Ctrl-C reaches too
    running.wait_for("done simulate")  # inside the stages: ingest under way (or split, train: all write)

    refused = edgeloop(root, "retrain", timeout=60)  # a second retrain of the same project meanwhile
    assert refused.returncode == 2, refused.stderr
    assert f"another retrain is running on this project (pid {running.process.pid}, started " in refused.stderr
    assert "pass --wait" in refused.stderr and len(lines(refused.stderr)) == 1

    started = time.monotonic()
    running.ctrl_c()
    time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        running.ctrl_c()  # a second Ctrl-C while it stops
    code = running.process.wait(timeout=30)
    took = time.monotonic() - started
    time.sleep(0.2)  # the reader thread takes the last lines
    err = "".join(running.err)
    assert code == 130, err
    assert took <= 5.0, f"took {took:.1f} s"
    assert "Traceback" not in err and "ConnectError" not in err
    said = [line for line in lines(err) if line.startswith("interrupted")]
    assert len(said) == 1 and "nothing was published" in said[0], err
    assert lines(err)[-1] == said[0], err  # the last word, nothing after it

    assert snapshot(root / "data/releases") == releases_before
    assert (root / "dvc.lock").read_bytes() == lock_before  # recorded only after evaluate: untouched
    run([sys.executable, "-m", "dvc", "status"], root)  # dvc reads every output and the lock without error
    run([EDGELOOP, "release", "verify", "--root", str(root)], root)
    outcome = json.loads((root / "data/loop/decisions.jsonl").read_text().splitlines()[-1])
    assert outcome["kind"] == "retrain_outcome" and outcome["observed"]["state"] == "Cancelled"
    assert not list(root.glob("data/**/.tmp-*")), "a temporary file was left behind"


def test_a_rerun_finishes_and_says_already_published_without_signing_again(published):
    root = published
    releases_before = snapshot(root / "data/releases")
    done = edgeloop(root, "retrain", server=True)
    assert done.returncode == 0, done.stderr
    assert "already published as release 1" in done.stderr
    assert "already published as release 1" in done.stdout
    assert "Traceback" not in done.stderr
    assert snapshot(root / "data/releases") == releases_before  # nothing signed again, not even a pointer move
    status = run([sys.executable, "-m", "dvc", "status"], root)
    assert "up to date" in status.stdout, status.stdout
