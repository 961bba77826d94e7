"""``edgeloop status``: one screen, or one JSON document, whatever is up or missing (real subprocesses).

Fast: a project whose hub is down, with no release repository and an empty loop log: exit 0, one line
per missing part, fits 80x24, ``--json`` valid on stdout alone. Slow (one real hub for the module, its time
from a ManualClock): a fleet with long device ids that is degraded (with its reason), erroring, offline,
revoked but still heartbeating and near certificate expiry, a real release repository with a published
release, a halted channel, fired and quiet decisions and a quarantined batch: every one is named under
"needs attention", ids whole, lines <= 80; the JSON says the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.testkit.hub import ManualClock, free_port, hub_project, running_hub
from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
from flows.loop.log import append_decision
from flows.releases import publish
from hub.registry import add_device, revoke_device
from hub.store.certificates import IssuedCertificate, insert_certificate

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
START = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
DEGRADED = "press-line-07-station-0042-vibration-sensor-a"  # 45 characters: longer than a column can give
ERRORING = "press-line-07-station-0043-error"
SILENT = "press-line-07-station-0044-silent"
REVOKED = "press-line-07-station-0045-revoked-still-up"
HEALTHY = "press-line-07-station-0046-healthy-with-cert"
REASON = "accuracy 0.778 below floor 0.8"


def edgeloop(*args: str, columns: int = 80, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_HUB_")}
    done = subprocess.run([EDGELOOP, *args], capture_output=True, text=True, timeout=120,
                          env={**env, "COLUMNS": str(columns), "LINES": "24"})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def screen(*args: str) -> str:
    """The human screen on an 80x24 terminal, in this process (streams and exit codes: ``edgeloop``)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "LINES": "24"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_status_with_the_hub_down_no_releases_and_an_empty_log(tmp_path: Path) -> None:
    root = hub_project(tmp_path / "p")
    dead = f"http://127.0.0.1:{free_port()}"
    shown = screen("status", "--root", str(root), "--url", dead, "--timeout", "2")
    lines = shown.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), shown
    assert "UNREACHABLE" in lines[0] and dead in lines[0] and "no admin token" in shown
    assert "no release repository yet" in shown and "decisions: none yet" in shown

    (root / "keys").mkdir()
    (root / "keys" / "hub-admin.token").write_text("some-token\n")
    done = edgeloop("status", "--root", str(root), "--url", dead, "--timeout", "2", "--json")
    document = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert done.stderr == ""
    assert document["hub"] == {"url": dead, "reachable": False, "reason": document["hub"]["reason"]}
    assert "unreachable" in document["hub"]["reason"] and "refused" in document["hub"]["reason"]
    assert document["fleet"] is None and document["channels"] == [] and document["attention"] == []
    assert document["decisions"]["total"] == 0 and len(document["missing"]) == 3


def test_status_without_params_is_one_line(tmp_path: Path) -> None:
    done = edgeloop("status", "--root", str(tmp_path), check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "params.yaml" in done.stderr


def _beat(hub, device: str, token: str, health: str, reason: str = "", version: str = "1") -> None:
    body = {"model_version": version, "channel": "canary", "health": health, "health_reason": reason,
            "health_since": (START - timedelta(minutes=30)).isoformat() if reason else None,
            "drift": {"temperature": 0.2}, "rolling_accuracy": 0.78, "spool_backlog": 3,
            "clock": hub.clock.now().isoformat()}
    answer = httpx.post(f"{hub.url}/v1/devices/{device}/heartbeat", json=body,
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = hub_project(tmp_path_factory.mktemp("status") / "p", repository=True)
    config = release_config(root / "release-project")
    publish(config, make_candidate(root / "cand", tiny_onnx(1), "cand-000000000001"), "canary")
    log = root / "data" / "loop" / "decisions.jsonl"
    append_decision(log, "monitor", "retrain", False, "no trigger fired")
    append_decision(log, "manual", "retrain_outcome", True, "gate passed; published release 1 to canary",
                    {"release": 1})
    append_decision(log, "monitor", "retrain", False, "no trigger fired (quiet and newest)")
    from flows.loop.halts import halt_channel, halts_path

    halt_channel(halts_path(log), "stable", "alice via cli", "waiting for the line-7 audit", START)
    (root / "data" / "quarantine" / "press-x").mkdir(parents=True)
    (root / "data" / "quarantine" / "press-x" / f"{'a' * 64}.reason.txt").write_text("schema: missing column\n")
    with running_hub(root, clock=ManualClock(START)) as handle:
        sessions = handle.app.state.sessions
        tokens = {name: add_device(sessions, name, "canary", clock=handle.clock)
                  for name in (DEGRADED, ERRORING, SILENT, REVOKED, HEALTHY)}
        _beat(handle, SILENT, tokens[SILENT], "ok")
        handle.clock.advance(handle.settings.section.stale_after_s + 60)
        _beat(handle, DEGRADED, tokens[DEGRADED], "degraded", REASON)
        _beat(handle, ERRORING, tokens[ERRORING], "error", "model file failed its check")
        _beat(handle, REVOKED, tokens[REVOKED], "ok")
        _beat(handle, HEALTHY, tokens[HEALTHY], "ok", version="0")  # not yet on release 1
        revoke_device(sessions, REVOKED, handle.clock)
        now = handle.clock.now()
        with handle.app.state.engine.begin() as connection:
            insert_certificate(connection, IssuedCertificate(HEALTHY, "f" * 64, "1a", now - timedelta(days=80),
                                                             now + timedelta(days=5)), now)
        yield handle


@pytest.mark.slow
def test_status_names_everything_that_needs_attention(hub) -> None:
    args = ("status", "--root", str(hub.root), "--url", hub.url)
    document = json.loads(edgeloop(*args, "--json").stdout)
    assert document["hub"]["reachable"] is True and document["hub"]["reason"] is None
    fleet = document["fleet"]
    assert (fleet["devices"], fleet["online"], fleet["offline"], fleet["revoked"]) == (5, 3, 1, 1)
    assert fleet["health"] == {"ok": 1, "degraded": 1, "error": 1}
    channels = {c["channel"]: c for c in document["channels"]}
    assert channels["canary"]["release"] == 1 and channels["canary"]["devices"] == 4
    assert channels["canary"]["on_release"] == 3  # the silent one's last report counts; the one on "0" does not
    assert channels["stable"]["halted"]["by"] == "alice via cli"
    attention = {(a["kind"], a["subject"]): a["detail"] for a in document["attention"]}
    assert REASON in attention[("degraded", DEGRADED)] and "since 2026-11-27" in attention[("degraded", DEGRADED)]
    assert "model file failed" in attention[("error", ERRORING)]
    assert "last heard" in attention[("offline", SILENT)]
    assert "revoked but heard" in attention[("revoked", REVOKED)]
    assert "(5 d left)" in attention[("certificate", HEALTHY)]
    assert "waiting for the line-7 audit" in attention[("halted", "stable")]
    assert "1 batch quarantined" in attention[("quarantine", "data/quarantine")]
    assert len(attention) == 7 and document["attention"][0]["kind"] == "error"  # the most serious first
    assert [d["summary"] for d in document["decisions"]["newest_fired"]] == [
        "gate passed; published release 1 to canary"]
    assert document["missing"] == []

    shown = screen(*args)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "reachable" in lines[0] and "5 devices: 3 online, 1 offline, 0 never seen, 1 revoked" in shown
    for name in (DEGRADED, ERRORING, SILENT, REVOKED, HEALTHY):
        assert any(name in line for line in lines), name  # whole, on one line
    assert "…" not in shown and "needs attention (7)" in shown and "halted" in shown
    assert "gate passed; published release 1" in shown and "no trigger fired" not in shown


def test_a_large_fleet_is_summarised_on_one_screen() -> None:
    """1,000 devices, 300 of them silent: counts, at most ATTENTION_SHOWN attention rows and how many more."""
    import io

    from rich.console import Console

    from edgeloop.status_cli import ATTENTION_SHOWN, Report, _fleet_part, render

    now = START.isoformat()
    devices = [{"device_id": f"dev-{i:04d}", "channel": "canary", "revoked": False,
                "status": "offline" if i % 10 < 3 else "online", "health": None if i % 10 < 3 else "ok",
                "last_heartbeat": {"age_s": 7200.0 if i % 10 < 3 else 5.0, "state": {}}} for i in range(1000)]
    report = Report(project="p", hub={"url": "http://127.0.0.1:8700", "reachable": True, "reason": None})
    _fleet_part(report, {"generated_at": now, "devices": devices, "estimates": None})
    document = report.as_dict()
    assert len(document["attention"]) == 300 and document["fleet"]["offline"] == 300
    buffer = io.StringIO()
    render(document, Console(file=buffer, width=80, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), buffer.getvalue()
    assert "1000 devices: 700 online, 300 offline" in lines[1] and "needs attention (300)" in buffer.getvalue()
    assert sum("dev-" in line for line in lines) == ATTENTION_SHOWN
    assert f"and {300 - ATTENTION_SHOWN} more: {300 - ATTENTION_SHOWN} offline" in lines[-1]


@pytest.mark.slow
def test_status_with_a_wrong_admin_token_says_so(hub, tmp_path: Path) -> None:
    from edgeloop.status_cli import gather

    wrong = tmp_path / "wrong.token"
    wrong.write_text("ela_not-the-token\n")
    document = gather(hub.root, url=hub.url, token_file=wrong)
    assert document["hub"]["reachable"] is False and "HTTP 401" in document["hub"]["reason"]
    assert "wrong admin token" in document["hub"]["reason"] and document["fleet"] is None
    assert {c["channel"] for c in document["channels"]} == {"canary", "stable"}  # the rest is still there
    assert {a["kind"] for a in document["attention"]} == {"halted", "quarantine"}
