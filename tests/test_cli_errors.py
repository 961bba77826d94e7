"""Mistakes around retrain and the servers, answered in one line with exit code 2 and no traceback (real
``edgeloop`` processes): a broken params.yaml names its line and column, a retrain with no data names what is
missing and the commands that make data (before Prefect starts), ``hub serve`` and ``serve`` on a busy port
say so before any banner and name the way out; a user mistake found inside the retrain flow (every batch
quarantined) is that one line too, without Prefect's tracebacks (slow: it runs the flow).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeloop.testkit.project import override, repo_params_raw

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def edgeloop(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run([EDGELOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def project(root: Path, changes: dict | None = None) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500, **(changes or {})})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(said) == 1, done.stderr
    return said[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on (127.0.0.1)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_broken_yaml_names_line_and_column(tmp_path):
    root = project(tmp_path / "p")
    text = (root / "params.yaml").read_text().splitlines()
    line = next(i for i, row in enumerate(text) if row.startswith("  devices:"))
    text[line] = "  devices: 2: 3"  # a mapping value where none is allowed
    (root / "params.yaml").write_text("\n".join(text) + "\n")
    for command in (["check-params"], ["retrain"], ["stage", "split"], ["hub", "serve"], ["hub", "ca", "init"]):
        said = one_error_line(edgeloop(*command, cwd=root))
        assert said == (f"error: {root / 'params.yaml'} line {line + 1}, column 13: not valid YAML: "
                        "mapping values are not allowed here"), said
    from hub.settings import HubSettings, HubSettingsError  # the hub's own reader of params.yaml says it too

    with pytest.raises(HubSettingsError, match=f"line {line + 1}, column 13: not valid YAML: mapping values"):
        HubSettings.load(root)


def test_retrain_without_data_says_what_is_missing_before_prefect_starts(tmp_path):
    root = project(tmp_path / "p", {"simulate.rows_per_device": 0})
    started = time.monotonic()
    said = one_error_line(edgeloop("retrain", cwd=root))
    assert time.monotonic() - started < 15
    assert said.startswith("error: no data to train on: the landing zone (data/uploads")
    assert "simulate.rows_per_device is 0" in said
    assert "`edgeloop simulate`" in said and "`edgeloop import FILE`" in said
    assert not (root / "data/loop").exists(), "nothing recorded, no flow run"


def test_hub_serve_on_a_busy_port_says_so_before_the_banner(tmp_path, busy_port):
    root = project(tmp_path / "p")
    done = edgeloop("hub", "serve", "--port", str(busy_port), "--root", str(root), cwd=root)
    said = one_error_line(done)
    assert said == (f"error: port {busy_port} on 127.0.0.1 is already in use (another hub?): stop it, or choose "
                    "another with --port")
    assert "hub on" not in done.stderr + done.stdout


def test_serve_with_prefects_runner_webserver_on_a_busy_port_says_so(tmp_path, busy_port):
    root = project(tmp_path / "p")
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_RUNNER_SERVER_ENABLE": "true",
           "PREFECT_RUNNER_SERVER_HOST": "127.0.0.1", "PREFECT_RUNNER_SERVER_PORT": str(busy_port)}
    said = one_error_line(edgeloop("serve", "--root", str(root), cwd=root, env=env))
    assert f"port {busy_port} on 127.0.0.1 is already in use" in said and "PREFECT_RUNNER_SERVER_PORT" in said


@pytest.mark.slow
def test_a_user_mistake_inside_the_flow_is_one_line_without_prefect_tracebacks(tmp_path):
    root = project(tmp_path / "p", {"simulate.rows_per_device": 0})
    device = root / "data/uploads/m1"
    device.mkdir(parents=True)
    (device / "batch.csv").write_text("not,a,batch\n1,2,3\n")  # ingest quarantines it: no curated rows
    done = edgeloop("retrain", cwd=root, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no curated data:") and "quarantine" in last, done.stderr
