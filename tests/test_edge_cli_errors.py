"""``edge-runner`` mistakes as real commands: one line on stderr, exit 2, no traceback.

Covers: ``predict`` with a CSV header that lacks some of the model's features (the line names the missing
and unexpected columns and the expected ones; nothing on stdout); ``run`` on a port another process
holds, from runner.toml or ``--port`` (the line says so and how to change it; the state dir is not even
created, so nothing was started).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edge.contracts.manifest import Manifest
from edge.contracts.release_layout import MANIFEST_FILE
from edge.state import StateDir
from edgeloop.testkit.runner_world import params, runner_config, write_candidate

pytestmark = pytest.mark.slow  # real edge-runner processes

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device folder whose state dir serves release "7" (installed directly, no hub needed)."""
    base = tmp_path_factory.mktemp("cli-errors")
    folder = write_candidate(base / "candidate", 1)
    manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
    (folder / MANIFEST_FILE).write_text(replace(manifest, version="7").to_json())
    config = runner_config(base / "device", "http://127.0.0.1:9", "t" * 32, b"{}")
    state = StateDir(base / "device" / "state")
    state.install(folder)
    state.activate("7")
    return config


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGE_RUNNER, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_predict_with_a_wrong_csv_header_names_the_columns(device: Path) -> None:
    names = params().schema.feature_names
    header = ["event_id", "air_temp", *names[1:-1], "spare"]  # the first feature misspelt, the last missing
    out = run("predict", "-c", str(device), stdin=",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n")
    assert out.returncode == 2, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == (f"edge-runner: the CSV header does not match model 7: missing {names[0]}, {names[-1]}; "
                        f"unexpected air_temp, spare; expected the columns {', '.join(names)} (optionally "
                        f"event_id; other columns are ignored)")


@pytest.mark.parametrize("where", ["runner.toml", "--port"])
def test_run_on_a_busy_port_says_so_in_one_line_and_starts_nothing(device: Path, taken_port: int,
                                                                  tmp_path: Path, where: str) -> None:
    config = runner_config(tmp_path / "device", "http://127.0.0.1:9", "t" * 32, b"{}",
                           api={"port": taken_port if where == "runner.toml" else 0})
    extra = ["--port", str(taken_port)] if where == "--port" else []
    out = run("run", "-c", str(config), *extra)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"edge-runner: port {taken_port} on 127.0.0.1 is already in use: another runner? set "
                          f"[api] port in runner.toml or --port\n")
    assert not (tmp_path / "device" / "state").exists()  # no lock, no spool, no status.json: nothing started


def test_a_runner_whose_port_was_taken_after_the_check_writes_nothing(tmp_path: Path, taken_port: int) -> None:
    """The port can be taken between the command's check and the server's bind: the runner then stops
    without writing status.json or a summary, and leaves the state dir unlocked."""
    from edge.config import load_config
    from edge.runner import Runner, RunnerError

    config = load_config(runner_config(tmp_path / "device", "http://127.0.0.1:9", "t" * 32, b"{}",
                                       api={"port": taken_port}), environ={})
    runner = Runner(config)
    with pytest.raises(RunnerError) as refused:
        runner.start()
    assert str(refused.value) == (f"port {taken_port} on 127.0.0.1 is already in use: another runner? set [api] "
                                  f"port in runner.toml or --port")
    assert not (config.state_dir / "status.json").exists()
    Runner(config).stop()  # the lock was released: another runner can start here
