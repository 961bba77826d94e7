"""The listing commands for terminals and scripts: ``devices list``, ``fleet`` and ``loop status``.

``--json`` is checked in real subprocesses (the whole of stdout parses, nothing on stderr, exit 0); the
tables on an 80-column terminal with long device ids (every id whole, every line <= 80, the hidden
columns named in a footer, ``--wide`` for all of them) in-process with CliRunner. ``loop status`` shows
fired decisions by default with a footer counting the quiet ones, flattens observed values, and refuses
an unknown ``--source`` in one line naming the valid ones (exit 2). The fleet test runs a real hub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.devices_cli import _sessions
from edgeloop.testkit.hub import hub_project, running_hub
from flows.loop.log import append_decision
from hub.registry import add_device, revoke_device

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
LONGEST = "press-line-07-" + "s" * 50  # 64 characters: the longest device id the hub accepts
LONG = "press-line-07-station-0042-vibration"  # 36 characters


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_HUB_")}
    return subprocess.run([EDGELOOP, *args], capture_output=True, text=True, timeout=120,
                          env={**env, "COLUMNS": "80"})


def table(*args: str) -> list[str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    assert "…" not in "\n".join(line for line in lines if "more columns" not in line)  # nothing cut
    return lines


def test_devices_list_as_json_and_as_an_80_column_table(tmp_path: Path) -> None:
    root = hub_project(tmp_path / "p")
    with _sessions(root) as sessions:
        for name in (LONGEST, LONG, "p2"):
            add_device(sessions, name, "canary")
        revoke_device(sessions, "p2")
    done = run("devices", "list", "--json", "--root", str(root))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    listed = {d["device_id"]: d for d in json.loads(done.stdout)}
    assert set(listed) == {LONGEST, LONG, "p2"} and listed["p2"]["status"] == "revoked"
    assert listed[LONG]["certificate_not_after"] is None and listed[LONG]["revoked_at"] is None
    assert "token" not in json.dumps(listed).replace("token_", "")  # no secrets, not even a field named so

    lines = table("devices", "list", "--root", str(root))
    for name in (LONGEST, LONG):
        assert any(name in line for line in lines), name
    wide = CliRunner().invoke(app, ["devices", "list", "--wide", "--root", str(root)], env={"COLUMNS": "80"})
    row = next(line for line in wide.stdout.splitlines() if LONGEST in line)
    assert "token only" in row and len(row) > 80  # one line per device, every column


def test_loop_status_shows_fired_decisions_and_refuses_an_unknown_source(tmp_path: Path) -> None:
    root = hub_project(tmp_path / "p")
    log = root / "data" / "loop" / "decisions.jsonl"
    append_decision(log, "monitor", "retrain", False, "no trigger fired", {"data_volume": 3, "fleet_drift": 0.0})
    checks = {"soak": {"observed": 2.0, "required": 6.0, "passed": False},
              "devices": {"observed": 2, "required": 1, "passed": True}}
    estimate = {"value": 0.9571, "low": 0.945, "high": 0.966, "rows": 344, "weight": 344.0}
    append_decision(log, "promote", "promote", True, "release 3 soaked on canary: promote to stable",
                    {"candidate": 3, "checks": checks, "stable_accuracy": estimate, "devices": [LONG, "p2"],
                     "on_channel_since": "2026-12-02T16:18:26+00:00", "fleet_error": None})
    append_decision(log, "monitor", "retrain", False, "no trigger fired (the newest quiet one)")

    lines = table("loop", "status", "--root", str(root))
    text = "\n".join(lines)
    assert "release 3 soaked on canary" in text and "no trigger fired" in text.split("hidden")[1]
    assert "2 quiet decisions hidden (--all shows them)" in " ".join(lines)
    words = text.replace("│", " ").split()
    for item in ("soak=2/6", "devices=2/1", "stable_accuracy=0.957", "n=344", "on_channel_since=2026-12-02"):
        assert item in words, item  # flattened, readable, whole
    assert "fleet_error" not in text and "{" not in text  # nothing empty, no raw JSON
    everything = "\n".join(table("loop", "status", "--all", "--root", str(root)))
    assert everything.count("no trigger fired") == 2 and "hidden" not in everything

    done = run("loop", "status", "--json", "--root", str(root))
    assert done.returncode == 0 and done.stderr == ""
    assert [e["fired"] for e in json.loads(done.stdout)] == [False, True, False]  # every decision, for scripts
    refused = run("loop", "status", "--source", "robot", "--root", str(root))
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert all(s in refused.stderr for s in ("'robot'", "monitor", "manual", "deployment", "promote"))


@pytest.mark.slow
def test_fleet_as_json_and_as_an_80_column_table(tmp_path: Path) -> None:
    root = hub_project(tmp_path / "p")
    with running_hub(root) as hub:
        tokens = {name: add_device(hub.app.state.sessions, name, "canary") for name in (LONGEST, LONG)}
        beat = {"model_version": "12", "channel": "canary", "health": "degraded",
                "health_reason": "accuracy 0.778 below floor 0.8", "drift": {"temperature": 0.31},
                "clock": "2026-11-27T02:00:00+00:00"}
        answer = httpx.post(f"{hub.url}/v1/devices/{LONG}/heartbeat", json=beat,
                            headers={"Authorization": f"Bearer {tokens[LONG]}"})
        assert answer.status_code == 200, answer.text
        done = run("fleet", "--json", "--url", hub.url, "--root", str(root))
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert {d["device_id"] for d in json.loads(done.stdout)["devices"]} == {LONGEST, LONG}

        lines = table("fleet", "--url", hub.url, "--root", str(root))
        for name in (LONGEST, LONG):
            assert any(name in line for line in lines), name
        footer = next(line for line in lines if "more columns: --wide or --json" in line)
        assert "health" in footer  # the hidden columns are named
        wide = CliRunner().invoke(app, ["fleet", "--wide", "--url", hub.url, "--root", str(root)],
                                  env={"COLUMNS": "80"})
        row = next(line for line in wide.stdout.splitlines() if LONG in line)
        assert "accuracy 0.778 below floor 0.8" in row and "12" in row and len(row) > 80
