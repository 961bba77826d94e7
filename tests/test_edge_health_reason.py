"""Health says why (issue 14, item 4): ``/health``, ``edge-runner status`` and the heartbeat carry the reason
for "degraded"/"error" and since when; a device the hub refuses (401) is an auth problem, not "health ok".

A real hub on 127.0.0.1, a real runner with its own HTTP API and an onnxruntime model; the device is
revoked at the hub for real. The reason texts of model errors and drift are checked on ``HealthMonitor``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.health import HealthMonitor
from edge.runner import Runner
from edgeloop.testkit.hub import HubHandle, running_hub
from edgeloop.testkit.runner_world import ReleaseWorld, model_bytes, runner_config, site_data, wait_for
from hub.registry import add_device, revoke_device

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


def heartbeat_state(hub: HubHandle) -> dict[str, Any]:
    fleet = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"}).json()
    device = next(d for d in fleet["devices"] if d["device_id"] == "press-1")
    return (device.get("last_heartbeat") or {}).get("state") or {}


@pytest.mark.slow
def test_reason_and_since_reach_health_status_and_the_hub_and_a_refused_token_is_an_auth_problem(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    model_bytes(1)
    w = ReleaseWorld(tmp_path / "world")
    version = w.publish(1)
    with running_hub(w.hub_root) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        config_file = runner_config(tmp_path / "device", hub.url, token, w.root_bytes)
        runner = Runner(load_config(config_file, environ={}))
        runner.start()
        try:
            wait_for(lambda: runner.model_version == str(version), what="activation")
            api = httpx.Client(base_url=runner.api_url)
            healthy = api.get("/health").json()
            assert (healthy["status"], healthy["reason"], healthy["since"]) == ("ok", "", None)
            assert healthy["hub"]["state"] == "ok"
            x, _ = site_data(30, 31)
            rows = [[None if np.isnan(v) else float(v) for v in row] for row in x]
            for answer in api.post("/predict", json={"rows": rows}).json():
                assert api.post("/feedback", json={"event_id": answer["event_id"],
                                                   "label": 1 - int(answer["label"])}).status_code == 200
            degraded = api.get("/health").json()
            assert degraded["status"] == "degraded"
            assert degraded["reason"] == "accuracy 0.000 below floor 0.8 on the last 30 labels"
            since = datetime.fromisoformat(degraded["since"])
            assert since.tzinfo is not None and abs(since.timestamp() - time.time()) < 30
            state = wait_for(lambda: "accuracy" in (s := heartbeat_state(hub)).get("health_reason", "") and s,
                             what="the reason at the hub")
            assert (state["health"], state["health_reason"]) == ("degraded", degraded["reason"])
            assert datetime.fromisoformat(state["health_since"]) == since
            assert any(r.levelno == logging.WARNING and r.getMessage() == f"health degraded: {degraded['reason']}"
                       for r in caplog.records)

            assert revoke_device(hub.app.state.sessions, "press-1")
            wait_for(lambda: runner.link.state == "refused", what="the hub refusing the device")
            time.sleep(3)  # three more heartbeats, each refused: still one log line
            refused = api.get("/health").json()
            assert refused["status"] == "degraded" and refused["hub"]["status"] == 401
            assert refused["reason"].startswith(degraded["reason"] + "; hub refused this device (401) since ")
            assert refused["reason"].endswith(" UTC: not authenticated")
            shown = subprocess.run([EDGE_RUNNER, "status", "-c", str(config_file)], capture_output=True, text=True,
                                   timeout=60)
            assert shown.returncode == 0, shown.stderr
            lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
            assert lines["health"].startswith("degraded since ") and "hub refused this device (401)" in lines["health"]
            assert lines["hub"].startswith("refused this device (401) since ")
            assert "not authenticated: check the token file (hub.token_file) or enroll again" in lines["hub"]
            report = json.loads(subprocess.run([EDGE_RUNNER, "status", "-c", str(config_file), "--json"],
                                               capture_output=True, text=True, timeout=60).stdout)
            assert report["hub"]["state"] == "refused" and report["health"] == "degraded"
        finally:
            runner.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "edge.runner.hub" and r.levelno == logging.ERROR]
    assert len(said) == 1, said  # rate-limited: not one line per heartbeat or upload attempt
    assert said[0].startswith("hub refused device press-1: 401 not authenticated (its token or certificate was not "
                              "accepted); check the token file (hub.token_file)")
    assert all(token not in r.getMessage() for r in caplog.records)
    assert token not in shown.stdout and token not in json.dumps(report)


def test_reason_texts_for_model_errors_and_drift() -> None:
    now = [1000.0]
    monitor = HealthMonitor(error_memory_s=60.0, clock=lambda: now[0])
    assert monitor.assess() == ("ok", [])
    assert monitor.assess(model_loaded=False) == ("error", ["no model loaded yet"])
    for _ in range(3):
        monitor.model_error()
    assert monitor.assess() == ("error", ["model errors: the last model call failed (3 in the last 60 s)"])
    monitor.model_ok()
    assert monitor.assess() == ("degraded", ["model errors: 3 in the last 60 s"])
    now[0] += 61
    assert monitor.assess(major_drift=("temperature", 0.414, 0.25)) == (
        "degraded", ["drift major: temperature PSI 0.41 >= 0.25"])
    assert monitor.status(drift_level="major") == "degraded" and monitor.status() == "ok"
