"""Heartbeats and the fleet view against a real hub (uvicorn on 127.0.0.1, real HTTP).

Devices are registered straight in the hub's database (a Device row with a token from hub.tokens), so
these tests do not depend on the registry's CLI. The hub runs on a manual clock (hub.clock.ManualClock):
a device goes silent by advancing the clock, never by sleeping. Covers: heartbeat -> fleet online with
its state, silent -> offline (never shown healthy) exactly past the poll intervals, never seen, the
clock behind received_at and generated_at, uploads totals, the HTML page (offline-safe, Basic
or Bearer admin auth), 401/403/422, /healthz, /metrics and the ``edgeloop fleet`` command. The loop's
view: per device version, largest drift, backlog, last seen and IPW estimated accuracy (from an
estimates file written by flows.loop.estimates), the fleet summary, per release its devices; a
missing, broken or oddly shaped estimates file; device-provided text escaped on the page.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON
from edgeloop.testkit.hub import ManualClock, running_hub
from edgeloop.testkit.project import override, repo_params_raw
from flows.loop.estimates import ESTIMATES_FILE, fleet_estimates, write_estimates
from flows.params import load_params
from hub import tokens
from hub.db import Device, Upload
from hub.fleet_status import status_of

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


START = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def register(hub, device_id: str, channel: str = "canary", revoked: bool = False) -> str:
    issued = tokens.issue()
    now = hub.clock.now()
    with hub.app.state.sessions() as session:
        session.add(Device(device_id=device_id, channel=channel, token_id=issued.token_id, token_salt=issued.salt,
                           token_digest=issued.digest, created_at=now, revoked_at=now if revoked else None))
        session.commit()
    return issued.token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def hub(tmp_path):
    with running_hub(tmp_path / "hub", clock=ManualClock(START)) as handle:
        yield handle


def fleet_by_id(hub) -> dict[str, dict]:
    response = httpx.get(f"{hub.url}/v1/fleet", headers=auth(hub.admin_token))
    assert response.status_code == 200, response.text
    return {d["device_id"]: d for d in response.json()["devices"]}


def test_heartbeat_then_fleet_shows_online_offline_and_never_seen(hub) -> None:
    fresh, silent = register(hub, "press-01"), register(hub, "press-02", "stable")
    register(hub, "press-03")
    register(hub, "old-04", revoked=True)
    healthy = {**BEAT, "channel": "stable", "health": "ok"}
    assert httpx.post(f"{hub.url}/v1/devices/press-02/heartbeat", json=healthy, headers=auth(silent)).status_code == 200
    hub.clock.advance(hub.settings.section.stale_after_s + 5)  # press-02 says nothing more
    got = httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(fresh))
    assert got.status_code == 200, got.text
    assert got.json()["device_id"] == "press-01" and got.json()["state"]["health"] == "degraded"
    second = {**BEAT, "health": "ok", "model_version": "4"}  # replaces the first one
    assert httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=second, headers=auth(fresh)).status_code == 200
    with hub.app.state.sessions() as session:  # press-01 uploaded two batches
        for n, size in ((1, 100), (2, 250)):
            session.add(Upload(device_id="press-01", batch_id=f"{n:064x}", path=f"x/{n}", bytes=size, rows=10,
                               stored_at=hub.clock.now()))
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
    assert two["last_heartbeat"]["age_s"] == pytest.approx(hub.settings.section.stale_after_s + 5)
    assert fleet["press-03"]["status"] == "never seen" and fleet["press-03"]["last_heartbeat"] is None
    assert fleet["old-04"]["revoked"] is True
    assert fleet["press-03"]["uploads"] == {"count": 0, "bytes": 0}


def test_a_device_turns_offline_when_silent_longer_than_the_poll_intervals(tmp_path) -> None:
    root = tmp_path / "hub"
    root.mkdir()
    raw = override(repo_params_raw(), {"hub.poll_interval_s": 20, "hub.stale_after_polls": 2})
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    with running_hub(root, clock=ManualClock(START)) as hub:
        assert hub.settings.section.stale_after_s == pytest.approx(40)
        token = register(hub, "pump-1")
        assert httpx.post(f"{hub.url}/v1/devices/pump-1/heartbeat", json=BEAT, headers=auth(token)).status_code == 200
        hub.clock.advance(40)  # silent for exactly two poll intervals: still online
        assert fleet_by_id(hub)["pump-1"]["status"] == "online"
        hub.clock.advance(0.001)  # a millisecond longer: offline
        assert fleet_by_id(hub)["pump-1"]["status"] == "offline"
        assert httpx.post(f"{hub.url}/v1/devices/pump-1/heartbeat", json=BEAT, headers=auth(token)).status_code == 200
        assert fleet_by_id(hub)["pump-1"]["status"] == "online"


def test_heartbeat_and_fleet_times_come_from_the_hubs_clock(hub) -> None:
    token = register(hub, "press-01")
    beat_at = hub.clock.advance(12.5)
    answer = httpx.post(f"{hub.url}/v1/devices/press-01/heartbeat", json=BEAT, headers=auth(token)).json()
    assert datetime.fromisoformat(answer["received_at"]) == beat_at
    asked_at = hub.clock.advance(7)
    document = httpx.get(f"{hub.url}/v1/fleet", headers=auth(hub.admin_token)).json()
    assert datetime.fromisoformat(document["generated_at"]) == asked_at
    one = document["devices"][0]
    assert datetime.fromisoformat(one["last_seen"]) == beat_at and one["last_heartbeat"]["age_s"] == 7.0
    assert "7 s ago" in httpx.get(f"{hub.url}/fleet", headers=auth(hub.admin_token)).text


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

    from edgeloop.fleet_cli import fleet

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
    now = START
    assert status_of(None, now, 60) == "never seen"
    assert status_of(now - timedelta(seconds=59), now, 60) == "online"
    assert status_of((now - timedelta(seconds=61)).replace(tzinfo=None), now, 60) == "offline"  # naive = UTC


def uploads(device: str, version: str, right: int, wrong: int, failures: int = 0) -> list[dict]:
    """Uploaded rows as the edge sends them: ``right`` random-sample rows (p=0.5; the first ``failures``
    of them are label 1) and ``wrong`` mistakes (p=1, label 1)."""
    rows = [{"device_id": device, MODEL_VERSION: version, "failure": "1" if i < failures else "0",
             PREDICTION: "1" if i < failures else "0", INCLUSION_PROBABILITY: 0.5, UPLOAD_REASON: "random"}
            for i in range(right)]
    rows += [{"device_id": device, MODEL_VERSION: version, "failure": "1", PREDICTION: "0",
              INCLUSION_PROBABILITY: 1.0, UPLOAD_REASON: "labelled"} for _ in range(wrong)]
    return rows


def write_loop_estimates(root, rows: list[dict]) -> dict:
    estimates = fleet_estimates(pd.DataFrame(rows), load_params(root / "params.yaml"))
    write_estimates(Paths.at(root), estimates)
    return estimates


def beat(hub, device: str, token: str, **state) -> None:
    response = httpx.post(f"{hub.url}/v1/devices/{device}/heartbeat", json={**BEAT, **state}, headers=auth(token))
    assert response.status_code == 200, response.text


def test_fleet_shows_versions_drift_estimates_and_who_runs_which_release(hub) -> None:
    tokens_ = {d: register(hub, d, c) for d, c in (("press-01", "canary"), ("press-02", "stable"),
                                                    ("press-03", "stable"), ("press-04", "stable"))}
    register(hub, "press-05")
    beat(hub, "press-03", tokens_["press-03"], model_version="7")
    hub.clock.advance(hub.settings.section.stale_after_s + 5)  # press-03 went silent
    beat(hub, "press-01", tokens_["press-01"], model_version="8", drift={"torque_nm": 0.42, "speed_rpm": 0.1})
    beat(hub, "press-02", tokens_["press-02"], model_version="7", drift={}, spool_backlog=3)
    beat(hub, "press-04", tokens_["press-04"], model_version="10")
    # press-01 ran 7 before 8; press-02 has rows for 7; press-03 and press-04 uploaded nothing
    written = write_loop_estimates(hub.root, uploads("press-01", "7", 10, 10) + uploads("press-01", "8", 40, 10, 4)
                                   + uploads("press-02", "7", 30, 3))

    document = httpx.get(f"{hub.url}/v1/fleet", headers=auth(hub.admin_token)).json()
    fleet = {d["device_id"]: d for d in document["devices"]}
    one = fleet["press-01"]
    assert one["model_version"] == "8" and one["max_drift"] == {"feature": "torque_nm", "psi": 0.42}
    assert one["backlog"] == 12 and one["last_seen"] == one["last_heartbeat"]["received_at"]
    accuracy = one["estimated_accuracy"]  # for the version it runs: 80 correct of 90 after weighting
    assert accuracy["model_version"] == "8" and accuracy["value"] == pytest.approx(80 / 90)
    assert accuracy["rows"] == 50 and accuracy["naive"] == pytest.approx(40 / 50)
    assert accuracy["low"] < accuracy["value"] < accuracy["high"]
    assert fleet["press-02"]["estimated_accuracy"]["value"] == pytest.approx(60 / 63)
    assert fleet["press-02"]["max_drift"] is None and fleet["press-02"]["backlog"] == 3
    assert fleet["press-03"]["status"] == "offline" and fleet["press-03"]["model_version"] == "7"
    assert fleet["press-03"]["estimated_accuracy"] is None and fleet["press-04"]["estimated_accuracy"] is None
    five = fleet["press-05"]
    assert (five["model_version"], five["last_seen"], five["max_drift"], five["backlog"]) == (None, None, None, None)

    summary = document["estimates"]
    assert summary["rows"] == 103 and summary["computed_at"] == written["computed_at"]
    assert summary["accuracy"]["value"] == pytest.approx((20 + 80 + 60) / (30 + 90 + 63))
    assert summary["label_shares"]["1"]["value"] == pytest.approx((10 + 8 + 10 + 3) / (30 + 90 + 63))
    assert summary["label_shares"]["0"]["value"] + summary["label_shares"]["1"]["value"] == pytest.approx(1)
    releases = {r["model_version"]: r for r in document["releases"]}
    assert [r["model_version"] for r in document["releases"]] == ["7", "8", "10"]  # natural order
    assert releases["7"]["devices"] == ["press-02", "press-03"] and releases["7"]["online"] == 1
    assert releases["7"]["channels"] == ["stable"] and releases["8"]["channels"] == ["canary"]
    assert releases["7"]["estimated_accuracy"]["value"] == pytest.approx((20 + 60) / (30 + 63))
    assert releases["10"]["estimated_accuracy"] is None

    # a device whose current version has no rows yet falls back to every version it ran, said so
    beat(hub, "press-02", tokens_["press-02"], model_version="8")
    two = fleet_by_id(hub)["press-02"]["estimated_accuracy"]
    assert two["model_version"] is None and two["value"] == pytest.approx(60 / 63)

    html = httpx.get(f"{hub.url}/fleet", headers=auth(hub.admin_token)).text
    assert "0.889 [" in html and "(v 8)" in html and "(all versions)" in html and "torque_nm 0.42" in html
    assert "Fleet estimate" in html and f"{summary['accuracy']['value']:.3f} [" in html
    assert "<code>press-02</code>, <code>press-03</code>" not in html  # press-02 moved to 8
    assert "<td><code>press-03</code></td><td>0 of 1</td>" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html


@pytest.mark.parametrize("content", [
    None,  # no file
    "{not json",
    "[1, 2, 3]",
    '{"fleet": 5, "devices": [], "versions": "x", "rows": "many"}',
    '{"fleet": {"accuracy": {"value": NaN, "low": 0, "high": 1}}, '
    '"devices": {"press-01": {"accuracy": {"value": 7, "low": 0, "high": 1}}}, '
    '"device_versions": {"press-01": {"3": {"accuracy": {"value": "high"}}}}}',
])
def test_the_hub_keeps_working_without_a_sound_estimates_file(hub, content) -> None:
    token = register(hub, "press-01")
    beat(hub, "press-01", token)
    target = hub.root / "data" / ESTIMATES_FILE
    if content is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    response = httpx.get(f"{hub.url}/v1/fleet", headers=auth(hub.admin_token))
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["devices"][0]["estimated_accuracy"] is None
    assert document["estimates"] is None or document["estimates"]["accuracy"] is None
    assert document["releases"][0]["model_version"] == "3"
    page = httpx.get(f"{hub.url}/fleet", headers=auth(hub.admin_token))
    assert page.status_code == 200 and "press-01" in page.text
    # a sound file written later is picked up (the hub caches by file time and size)
    write_loop_estimates(hub.root, uploads("press-01", "3", 10, 0))
    assert fleet_by_id(hub)["press-01"]["estimated_accuracy"]["value"] == 1.0


def test_fleet_page_escapes_everything_a_device_or_file_provides(hub) -> None:
    token = register(hub, "press-01")
    evil = '<script>alert("v")</script>'
    beat(hub, "press-01", token, model_version=evil, health="ok")
    rows = uploads("press-01", evil, 10, 2)
    for row in rows:
        row["failure"] = row[PREDICTION] = "<b>x</b>" if row[UPLOAD_REASON] == "random" else "0"
    estimates = write_loop_estimates(hub.root, rows)
    estimates["computed_at"] = "<img src=x onerror=alert(1)>"
    estimates["fleet"]["label_shares"]["<i>c</i>"] = estimates["fleet"]["accuracy"]
    write_estimates(Paths.at(hub.root), estimates)
    html = httpx.get(f"{hub.url}/fleet", headers=auth(hub.admin_token)).text
    assert "&lt;script&gt;alert(&quot;v&quot;)&lt;/script&gt;" in html
    assert "<script" not in html.lower() and "<img" not in html and "<i>c</i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;i&gt;c&lt;/i&gt;" in html
    assert fleet_by_id(hub)["press-01"]["estimated_accuracy"]["model_version"] == evil  # JSON keeps it as is
