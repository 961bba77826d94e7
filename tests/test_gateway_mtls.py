"""A gateway as an operator brings it up, every step a real process, against a real hub over mutual TLS.

The plant side: ``edgeloop devices add press-7`` prints the gateway's command with a one-time code. The
gateway: ``edge-runner enroll --code -`` (the code on stdin) makes its key, gets its certificate, writes
runner.toml; ``edge-runner run`` then heartbeats and polls releases by certificate only (the hub requires
one). Certificates live 10 s here, so the runner renews several times while it runs: heartbeats keep
arriving with no gap. ``edgeloop devices revoke press-7`` stops it on its next request. The code and the
private key appear in no output, log or configuration file of either side.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from edge.contracts.tls import client_context
from edgeloop.testkit.hub import HubHandle, hub_project, running_hub
from edgeloop.testkit.pki import PlantPki, make_pki

pytestmark = pytest.mark.slow  # a hub, the CLI and a runner daemon as processes

BIN = Path(sys.executable).parent
CERT_SECONDS = 10.0
DEVICE = "press-7"


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[HubHandle, PlantPki, Path]]:
    pki = make_pki(tmp_path / "pki")
    root = hub_project(tmp_path / "plant", tls=pki.tls_params("required", device_cert_days=CERT_SECONDS / 86400),
                       repository=True)
    with running_hub(root) as hub:
        yield hub, pki, root


def run(*command: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def last_seen(hub: HubHandle, pki: PlantPki) -> datetime | None:
    fleet = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"},
                      verify=client_context(pki.ca_file), timeout=10).json()
    seen = {d["device_id"]: d["last_seen"] for d in fleet["devices"]}[DEVICE]
    return None if seen is None else datetime.fromisoformat(seen)


def issued(root: Path) -> int:
    import sqlite3

    with sqlite3.connect(root / "data" / "hub" / "hub.db") as db:
        return int(db.execute("SELECT count(*) FROM device_certificates WHERE device_id = ?", (DEVICE,)).fetchone()[0])


def test_enroll_run_renew_and_revoke_a_gateway(plant: tuple[HubHandle, PlantPki, Path], tmp_path: Path) -> None:
    hub, pki, root = plant
    added = run(str(BIN / "edgeloop"), "devices", "add", DEVICE, "--channel", "canary", "--root", str(root))
    assert added.returncode == 0, added.stderr
    command = next(line for line in added.stderr.splitlines() if "edge-runner enroll" in line)
    code = re.search(r"--code (\S+)", command).group(1)  # type: ignore[union-attr]
    assert re.search(r"--hub https://\S+", command)

    etc, state = tmp_path / "gateway" / "etc", tmp_path / "gateway" / "state"
    enrolled = run(str(BIN / "edge-runner"), "enroll", "--hub", hub.url, "--code", "-", "--ca", str(pki.ca_file),
                   "--config-dir", str(etc), "--state-dir", str(state), stdin=code + "\n")
    assert enrolled.returncode == 0, enrolled.stderr
    key = etc / "identity" / "current" / "device.key"
    assert key.stat().st_mode & 0o777 == 0o600 and "token" not in (etc / "runner.toml").read_text()

    env = {"EDGE_RUNNER__HUB__HEARTBEAT_INTERVAL_S": "1", "EDGE_RUNNER__RELEASES__POLL_INTERVAL_S": "1",
           "EDGE_RUNNER__TLS__RENEW_BEFORE_DAYS": str(6 / 86400), "EDGE_RUNNER__TLS__RENEW_CHECK_S": "0.5",
           "EDGE_RUNNER__API__ENABLED": "false"}
    log = tmp_path / "runner.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([str(BIN / "edge-runner"), "run", "--config", str(etc / "runner.toml")],
                                  stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 30
        while last_seen(hub, pki) is None:
            assert time.monotonic() < deadline and daemon.poll() is None, log.read_text()
            time.sleep(0.2)
        gaps, previous, end = [], last_seen(hub, pki), time.monotonic() + 3 * CERT_SECONDS
        while time.monotonic() < end:  # three certificate lifetimes: the runner must renew, with no gap
            time.sleep(0.5)
            seen = last_seen(hub, pki)
            assert seen is not None and previous is not None
            if seen != previous:
                gaps.append((seen - previous).total_seconds())
                previous = seen
        assert issued(root) >= 3, log.read_text()  # enrollment plus at least two renewals
        assert gaps and max(gaps) < 4.0, gaps  # heartbeats every second went on through every renewal

        revoked = run(str(BIN / "edgeloop"), "devices", "revoke", DEVICE, "--root", str(root))
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(1.5)  # let a heartbeat already on the wire land
        after = last_seen(hub, pki)
        time.sleep(3.0)  # three more heartbeat intervals
        assert last_seen(hub, pki) == after  # refused from its next request on
        assert daemon.poll() is None  # the runner keeps serving locally, and keeps trying
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)

    private = key.read_text()
    secret_lines = [line for line in private.splitlines() if "PRIVATE KEY" not in line]
    outputs = {"devices add stdout": added.stdout, "enroll output": enrolled.stdout + enrolled.stderr,
               "runner log": log.read_text(), "runner.toml": (etc / "runner.toml").read_text()}
    for where, text in outputs.items():
        assert code not in text, where
        assert not any(line in text for line in secret_lines), where
