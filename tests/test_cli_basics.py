"""What every command line owes a terminal and a script: ``--version`` on both commands, shell completion
offered by ``edgeloop``, and ``edge-runner status --json`` into a reader that stops early (``| head``) ending
quietly instead of with a BrokenPipeError traceback. Real processes, the installed console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import edge
import edgeloop

BIN = Path(sys.executable).parent
RUNNER_TOML = """
device_id = "press-1"
state_dir = "state"
[hub]
url = "http://127.0.0.1:9"
[releases]
trusted_root = "root.json"
"""


def test_both_commands_print_their_version() -> None:
    for command, version in (("edgeloop", edgeloop.__version__), ("edge-runner", edge.__version__)):
        done = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{command} {version}"


def test_edgeloop_offers_shell_completion() -> None:
    done = subprocess.run([str(BIN / "edgeloop"), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0 and "--install-completion" in done.stdout and "--show-completion" in done.stdout


def test_status_json_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "root.json").write_text("{}")
    (tmp_path / "runner.toml").write_text(RUNNER_TOML)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as `| head -c 0` would be
    try:
        done = subprocess.run([str(BIN / "edge-runner"), "status", "--json", "-c", str(tmp_path / "runner.toml")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                              env={**os.environ, "EDGE_RUNNER_TOKEN": "not-a-real-token"})
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
