"""The ``edgeloop`` command as a user runs it (a real process): help everywhere, mistakes in one line
without a traceback, simulate into the landing zone, retrain against a running Prefect server; the command
modules and the logic they call without a server never load Prefect, and ``serve`` has no retrain schedule
of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.telemetry import SWITCHES, switch_off
from edgeloop.testkit.project import override, repo_params_raw

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
COMMANDS = ["simulate", "stage", "retrain", "serve", "check-params", "release", "hub", "devices", "fleet", "loop",
            "demo"]


def edgeloop(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [EDGELOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


def project(root: Path, changes: dict | None = None) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500, **(changes or {})})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(tmp_path, command):
    done = edgeloop(*([command] if command else []), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "--help" in done.stdout


@pytest.mark.parametrize(
    ("args", "changes", "expected"),
    [
        (["check-params"], {"train.hgb.max_iterr": 1}, "train.hgb.max_iterr: unknown key"),
        (["stage", "bake"], None, "unknown stage 'bake'"),
        (["simulate", "--drift", "sideways"], None, "--drift 'sideways' is not one of"),
        (["stage", "split"], None, "no curated data"),
        (["retrain"], {"gate.metric": "f9"}, "gate.metric"),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(tmp_path, args, changes, expected):
    root = project(tmp_path / "p", changes)
    done = edgeloop(*args, cwd=root)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 2


PLAIN_MODULES = [  # what the CLI (and tests) call without a Prefect server
    "edgeloop.cli", "flows.project_releases", "flows.loop.retrains", "flows.loop.moves", "flows.loop.evidence",
    "flows.loop.observe", "flows.loop.markdown", "flows.loop.triggers", "flows.loop.promotion", "flows.hub_client",
]


def test_the_cli_and_the_plain_logic_never_load_prefect(tmp_path):
    code = ("import importlib, sys\n"
            f"for name in {PLAIN_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_serve_has_no_retrain_schedule_of_its_own(tmp_path):
    done = edgeloop("serve", "--help", cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "--cron" not in done.stdout and "loop-monitor" in done.stdout and "nightly" in done.stdout
    refused = edgeloop("serve", "--cron", "0 3 * * *", cwd=tmp_path)
    assert refused.returncode == 2 and "--cron" in refused.stderr


def test_no_params_file_is_named(tmp_path):
    done = edgeloop("check-params", cwd=tmp_path)
    assert done.returncode == 2 and "params.yaml: not found" in done.stderr


def test_simulate_writes_content_addressed_batches(tmp_path):
    root = project(tmp_path / "p")
    done = edgeloop("simulate", "--devices", "2", "--rows", "300", "--batch-rows", "100", cwd=root)
    assert done.returncode == 0, done.stderr
    files = sorted((root / "data/uploads").rglob("*.parquet"))
    assert len(files) == 6
    import hashlib

    assert all(f.stem == hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


def test_telemetry_switches_respect_user_values(monkeypatch):
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    for name in SWITCHES:
        if name != "DO_NOT_TRACK":
            monkeypatch.delenv(name, raising=False)
    switch_off()
    assert os.environ["DO_NOT_TRACK"] == "0"
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


@pytest.mark.integration
def test_retrain_runs_on_the_server_in_prefect_api_url(prefect_server, tmp_path):
    """`edgeloop retrain` with PREFECT_API_URL set runs there: the flow run is recorded by that server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    root = project(tmp_path / "p")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = edgeloop("retrain", "--root", str(root), cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "passed the gate" in done.stderr and "quality_floor" in done.stdout
    assert PREFECT_API_URL.value() in done.stderr
    version = json.loads((root / "data/candidate/manifest.json").read_text())["version"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert any(run.state and run.state.message and version in run.state.message for run in runs)


@pytest.mark.integration
def test_retrain_exits_3_and_says_why_when_the_gate_blocks(prefect_server, tmp_path):
    from prefect.settings import PREFECT_API_URL

    root = project(tmp_path / "p", {"gate.min_quality": 0.999})
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = edgeloop("retrain", "--root", str(root), cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 3, done.stderr
    assert "gate blocked the candidate" in done.stderr and "quality_floor" in done.stderr
    assert "FAIL" in done.stdout and "Traceback" not in done.stderr
