"""The closed loop end to end at small scale, through `edgeloop demo`'s own orchestration: a real hub,
real in-process edge runners pulling through python-tuf, the real retrain, monitor and promote-soaked
Prefect flows (temporary Prefect server), the simulated plant with injected drift.

Asserts what issue 6 asks of the loop: after drift the monitor fires exactly once within its cooldown,
the retrained model reaches canary and then stable, the worse candidate never reaches stable, the
malformed batch is quarantined, and post-recovery accuracy on the simulator's truth is back within 2
points of pre-drift accuracy. It runs over mutual TLS (`edgeloop demo --tls`): the hub on HTTPS with client
certificates required, every runner enrolled with a key made in its own folder, no device token anywhere,
so every upload, heartbeat and TUF download of the loop crossed an authenticated TLS connection. (The
README's `edgeloop demo`, plain HTTP on loopback, runs in tests/test_demo_interrupt.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeloop.demo.run import run_demo
from edgeloop.demo.workspace import DemoSettings
from edgeloop.testkit.project import REPO
from flows.loop.log import read_decisions

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    project = tmp_path_factory.mktemp("loop")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    lines: list[str] = []
    result = run_demo(project, DemoSettings(canary=2, stable=2, seed=3, tls=True), lines.append)
    return result, project


def test_drift_fires_one_retrain_and_the_fleet_recovers(demo) -> None:
    result, project = demo
    workspace = project / "data" / "demo"
    log = workspace / "data" / "loop" / "decisions.jsonl"
    fired = [d for d in read_decisions(log, source="monitor", kind="retrain") if d["fired"]]
    assert len(fired) == 1, [d["summary"] for d in fired]
    assert result["v2"] is not None and result["v2"] != result["v1"]
    history_file = workspace / "data" / "releases" / "history.jsonl"
    history = [json.loads(line) for line in history_file.read_text().splitlines()]
    stable = [h for h in history if h.get("channel") == "stable"]
    assert any(h.get("to") == result["v2"] for h in stable)
    assert not any(h.get("to") == result["worse candidate"] for h in stable)
    assert result["versions at the end"] == {str(result["v2"]): 4}
    assert result["accuracy at the end"] >= result["accuracy before drift"] - 0.02
    assert result["lowest accuracy after drift"] < result["accuracy before drift"] - 0.02  # the drift did hurt
    # issue 6 asked for <= 10%; since issue 15 drifting devices sample more (the demo raises them to 0.1), and this
    # seed-3 fleet measured up to 10.4% in a CI run (docs/benchmarks.md: 7.5-10.2% over seeds 1-3)
    assert result["uploaded / raw"] <= 0.12


def test_report_and_quarantine(demo) -> None:
    result, project = demo
    page = Path(result["report"]).read_text()
    assert page.count("<svg") == 6 and "http://" not in page and "https://" not in page
    assert 'aria-label="Sampling rate per group"' in page and "canary: policy rate, hour" in page  # issue 15
    quarantined = list((project / "data" / "demo" / "data" / "quarantine").rglob("*.reason.txt"))
    assert quarantined and "not in classes" in quarantined[0].read_text()


def test_the_loop_ran_over_mutual_tls_with_keys_born_on_each_device(demo) -> None:
    import sqlite3
    import stat

    import yaml

    _, project = demo
    workspace = project / "data" / "demo"
    tls = yaml.safe_load((workspace / "params.yaml").read_text())["hub"]["tls"]
    assert tls["client_certificates"] == "required" and tls["cert_file"]
    devices = sorted(p for p in (workspace / "devices").iterdir() if p.is_dir())
    assert len(devices) == 4
    with sqlite3.connect(workspace / "data" / "hub" / "hub.db") as db:
        issued = {row[0] for row in db.execute("SELECT device_id FROM device_certificates WHERE revoked_at IS NULL")}
        uploads = dict(db.execute("SELECT device_id, count(*) FROM uploads GROUP BY device_id").fetchall())
    assert issued == {d.name for d in devices}
    for device in devices:
        config = (device / "runner.toml").read_text()
        assert "https://127.0.0.1:" in config and "token" not in config and not (device / "token").exists()
        key = device / "identity" / "current" / "device.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert uploads.get(device.name, 0) >= 1  # its labelled rows arrived, by certificate
