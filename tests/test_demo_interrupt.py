"""`edgeloop demo` stopped with Ctrl-C (SIGINT) while its runners serve: it exits promptly and leaves no
process behind (the Prefect temporary server and anything else it started are gone), and its hub port is
closed again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeloop.testkit.project import REPO

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    process = subprocess.Popen([EDGELOOP, "demo", "--root", str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    for line in process.stdout:  # wait until the runners serve and the plant runs
        seen.append(line)
        if "tick  1" in line or time.monotonic() > deadline:
            break
    assert any("edge runners" in line for line in seen), "".join(seen)
    port = int(next(line for line in seen if "hub on 127.0.0.1:" in line).rsplit(":", 1)[1].split()[0])
    started = _children(process.pid)
    assert started  # at least the Prefect temporary server
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=90)
    assert process.returncode != 0
    assert "Traceback" not in rest, rest
    gone_by = time.monotonic() + 10  # the demo has exited: its children go within moments, never linger
    while (left := {pid for pid in started if _alive(pid)}) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the hub is gone
