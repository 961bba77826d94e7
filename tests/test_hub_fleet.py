"""Heartbeats and the fleet view against a real hub (uvicorn on 127.0.0.1, real HTTP).

Devices are registered straight in the hub's database (a Device row with a token from hub.tokens), so
these tests do not depend on the registry's CLI. Covers: heartbeat -> fleet online with its state,
silent -> offline (never shown healthy), never seen, uploads totals, the HTML page (offline-safe, Basic
or Bearer admin auth), 401/403/422, /healthz, /metrics and the ``edgeloop fleet`` command.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from hub import tokens
from hub.db import Device, Heartbeat, Upload, utc_now
from hub.fleet_view import status_of
from tests.conftest import override, repo_params_raw
from tests.hub_server import running_hub

BEAT = {
    "model_version": "3",
    "channel": "canary",
    "health": "degraded",
    "drift": {"temperature": 0.31, "vibration": -0.02},
    "rolling_accuracy": 0.88,
    "spool_backlog": 12,
    "counters": {"predictions": 5000},
    "clock": "2026-11-27T02:00:00+00:00",
}


def register(hub, device_id: str, channel: str = "canary", revoked: bool = False) -> str:
    issued = tokens.issue()
    with hub.app.state.sessions() as session:
        session.add(Device(device_id=device_id, channel=channel, token_id=issued.token_id, token_salt=issued.salt,
                           token_digest=issued.digest, revoked_at=utc_now() if revoked else None))
        session.commit()
    return issued.token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def hub(tmp_path):
    with running_hub(tmp_path / "hub") as handle:
        yield handle


def fleet_by_id(hub) -> dict[str, dict]:
    response = httpx.get(f"{hub.url}/v1/fleet", headers=auth(hub.admin_token))
    assert response.status_code == 200, response.text
    return {d["device_id"]: d for d in response.json()["devices"]}


def test_heartbeat_then_fleet_shows_online_offline_and_never_seen(hub) -> None:
    fresh, silent = register(hub, "press-01"), register(hub, "press-02", "stable")
    register(hub, "press-03")
    register(hub, "old-04", revoked=True)
    got = httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(fresh))
    assert got.status_code == 200, got.text
    assert got.json()["device_id"] == "press-01" and got.json()["state"]["health"] == "degraded"
    second = {**BEAT, "health": "ok", "model_version": "4"}  # replaces the first one
    assert httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=second, headers=auth(fresh)).status_code == 200
    healthy = {**BEAT, "channel": "stable", "health": "ok"}
    assert httpx.post(f"{hub.url}/v1/devices/press-02/heartbeat", json=healthy, headers=auth(silent)).status_code == 200
    with hub.app.state.sessions() as session:  # press-02 went silent long ago; press-01 uploaded two batches
        session.get(Heartbeat, "press-02").received_at = utc_now() - timedelta(seconds=hub.settings.stale_after_s + 5)
        for n, size in ((1, 100), (2, 250)):
            session.add(Upload(device_id="press-01", batch_id=f"{n:064x}", path=f"x/{n}", bytes=size, rows=10))
        session.commit()

    fleet = fleet_by_id(hub)
    assert set(fleet) == {"press-01", "press-02", "press-03", "old-04"}
    one = fleet["press-01"]
    assert (one["status"], one["health"], one["channel"], one["revoked"]) == ("online", "ok", "canary", False)
    assert one["last_heartbeat"]["state"]["model_version"] == "4"
    assert one["last_heartbeat"]["state"]["drift"] == BEAT["drift"]
    assert one["uploads"] == {"count": 2, "bytes": 350}
    two = fleet["press-02"]
    assert two["status"] == "offline" and two["health"] is None  # said "ok", but silent: never shown healthy
    assert two["last_heartbeat"]["age_s"] > hub.settings.stale_after_s
    assert fleet["press-03"]["status"] == "never seen" and fleet["press-03"]["last_heartbeat"] is None
    assert fleet["old-04"]["revoked"] is True
    assert fleet["press-03"]["uploads"] == {"count": 0, "bytes": 0}


def test_a_device_turns_offline_when_silent_longer_than_the_poll_intervals(tmp_path) -> None:
    root = tmp_path / "hub"
    root.mkdir()
    raw = override(repo_params_raw(), {"hub.poll_interval_s": 0.2, "hub.stale_after_polls": 2})
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    with running_hub(root) as hub:
        assert hub.settings.stale_after_s == pytest.approx(0.4)
        token = register(hub, "pump-1")
        assert httpx.post(f"{hub.url}/v1/devices/pump-1/heartbeat", json=BEAT, headers=auth(token)).status_code == 200
        time.sleep(0.6)
        assert fleet_by_id(hub)["pump-1"]["status"] == "offline"
        assert httpx.post(f"{hub.url}/v1/devices/pump-1/heartbeat", json=BEAT, headers=auth(token)).status_code == 200
        assert fleet_by_id(hub)["pump-1"]["status"] == "online"


def test_fleet_page_is_offline_safe_html_behind_the_admin_token(hub) -> None:
    token = register(hub, "press-01")
    httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(token))
    register(hub, "quiet-9")
    refused = httpx.get(f"{hub.url}/fleet")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{hub.url}/fleet", headers=auth("wrong")).status_code == 401
    assert httpx.get(f"{hub.url}/fleet", auth=("admin", "wrong")).status_code == 401
    assert httpx.get(f"{hub.url}/fleet", params={"token": hub.admin_token}).status_code == 401  # never in the URL
    basic = "Basic " + base64.b64encode(f"anyone:{hub.admin_token}".encode()).decode()
    for headers in (auth(hub.admin_token), {"Authorization": basic}):
        page = httpx.get(f"{hub.url}/fleet", headers=headers)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "press-01" in html and "quiet-9" in html and "never seen" in html and "degraded" in html
        assert "<script" not in html.lower() and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)
        assert "http://" not in html and "https://" not in html and "@import" not in html


def test_fleet_needs_the_admin_token(hub) -> None:
    device = register(hub, "press-01")
    for headers in ({}, auth("nope"), auth(device), {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = httpx.get(f"{hub.url}/v1/fleet", headers=headers)
        assert response.status_code == 401 and response.json() == {"detail": "not authenticated"}


def test_heartbeat_as_another_device_or_malformed_is_refused_and_not_recorded(hub) -> None:
    a, b = register(hub, "dev-a"), register(hub, "dev-b")
    revoked = register(hub, "dev-r", revoked=True)
    url = f"{hub.url}/v1/devices/dev-b/heartbeat"
    assert httpx.post(url, json=BEAT, headers=auth(a)).status_code == 403
    assert httpx.post(url, json=BEAT).status_code == 401
    assert httpx.post(f"{hub.url}/v1/devices/dev-r/heartbeat", json=BEAT, headers=auth(revoked)).status_code == 401
    assert httpx.post(f"{hub.url}/v1/devices/..%2Fdev-b/heartbeat", json=BEAT, headers=auth(a)).status_code in (
        404, 422)
    bad_bodies = [
        {**BEAT, "health": "great"},
        {**BEAT, "spool_backlog": -1},
        {**BEAT, "rolling_accuracy": 1.5},
        {**BEAT, "unexpected": 1},
        {**BEAT, "clock": "yesterday"},
        {**BEAT, "clock": "2026-11-27T02:00:00"},  # no time zone
        {**BEAT, "drift": {f"f{i}": 0.1 for i in range(300)}},
        {**BEAT, "drift": {"../x": 0.1}},
        {k: v for k, v in BEAT.items() if k != "channel"},
        [],
    ]
    for body in bad_bodies:
        response = httpx.post(url, json=body, headers=auth(b))
        assert response.status_code == 422, (body, response.text)
    assert httpx.post(url, content=b"{not json", headers={**auth(b), "Content-Type": "application/json"}
                      ).status_code == 422
    fleet = fleet_by_id(hub)
    assert fleet["dev-b"]["status"] == "never seen"


def test_healthz_and_metrics(hub) -> None:
    token = register(hub, "press-01")
    httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(token))
    health = httpx.get(f"{hub.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": True}
    metrics = httpx.get(f"{hub.url}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert re.search(r'edgeloop_hub_requests_total\{method="GET",route="/healthz",status="200"\} 1\.0', text)
    assert 'route="/v1/devices/{device_id}/heartbeat"' in text
    assert "edgeloop_hub_heartbeats_total 1.0" in text
    assert hub.admin_token not in text and token not in text


def test_fleet_command_prints_the_table(hub, tmp_path) -> None:
    import typer

    from hub.fleet_cli import fleet

    token = register(hub, "press-01")
    httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(token))
    register(hub, "quiet-9")
    app = typer.Typer()
    app.command()(fleet)
    result = CliRunner().invoke(app, ["--url", hub.url, "--root", str(hub.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "press-01" in result.output and "online" in result.output and "never seen" in result.output
    as_json = CliRunner().invoke(app, ["--url", hub.url, "--root", str(hub.root), "--json"])
    assert as_json.exit_code == 0 and '"press-01"' in as_json.output
    wrong = tmp_path / "wrong.token"
    wrong.write_text("nope\n")
    refused = CliRunner().invoke(app, ["--url", hub.url, "--token-file", str(wrong)])
    assert refused.exit_code != 0


def test_status_rules() -> None:
    now = utc_now()
    assert status_of(None, now, 60) == "never seen"
    assert status_of(now - timedelta(seconds=59), now, 60) == "online"
    assert status_of((now - timedelta(seconds=61)).replace(tzinfo=None), now, 60) == "offline"  # naive = UTC
