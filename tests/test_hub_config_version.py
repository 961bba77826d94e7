"""The runner policy version in heartbeats, ``/v1/fleet``, ``edgeloop fleet`` and the console, on a real hub.

One real hub with the console mounted (uvicorn on 127.0.0.1, real HTTP, SQLite, a manual clock) for the
module: a heartbeat's ``config_version`` shows on ``/v1/fleet`` (null when a runner does not say), a wrong
type or a version below 1 is a 422 that stores nothing, the fleet table in the terminal and ``devices list``
(table and --json) have a ``config`` column, and the console's fleet and device pages show the version and a
``config_rejected`` event with its reason (escaped) in the "Runner policies refused" table.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from io import StringIO

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge.contracts.wire import device_path
from edgeloop.cli import app
from edgeloop.cli_tables import show
from edgeloop.fleet_cli import fleet_table
from edgeloop.testkit.hub import ManualClock, running_hub
from hub import tokens
from hub.db import Device

START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
REFUSED = {"kind": "config_rejected", "version": "5", "at": "2026-12-02T09:58:00+00:00",
           "detail": "drift.window_rows: expected a whole number >= 100, got 3 <b>"}


def beat(**over: object) -> dict:
    body = {"model_version": "3", "channel": "canary", "health": "ok", "clock": "2026-12-02T10:00:00+00:00"}
    body.update(over)
    return body


def register(hub, device_id: str) -> str:
    issued = tokens.issue()
    with hub.app.state.sessions() as session:
        session.add(Device(device_id=device_id, channel="canary", token_id=issued.token_id, token_salt=issued.salt,
                           token_digest=issued.digest, created_at=hub.clock.now()))
        session.commit()
    return issued.token


def post(hub, device_id: str, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{hub.url}{device_path(device_id, 'heartbeat')}", json=body,
                      headers={"Authorization": f"Bearer {token}"})


def fleet(hub) -> dict:
    answer = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("config-version") / "hub", clock=ManualClock(START),
                     console=True) as handle:
        tokens_ = {name: register(handle, name) for name in ("press-01", "press-02")}
        first = post(handle, "press-01", tokens_["press-01"], beat(config_version=4, events=[REFUSED]))
        assert first.status_code == 200, first.text
        assert post(handle, "press-02", tokens_["press-02"], beat()).status_code == 200  # an older runner
        handle.tokens = tokens_
        yield handle


@pytest.mark.slow
def test_config_version_shows_on_the_fleet(hub) -> None:
    devices = {d["device_id"]: d for d in fleet(hub)["devices"]}
    assert devices["press-01"]["config_version"] == 4
    assert devices["press-02"]["config_version"] is None
    buffer = StringIO()
    show(Console(file=buffer, width=220), fleet_table(fleet(hub), width=220), wide=True)
    lines = buffer.getvalue().splitlines()
    header = next(line for line in lines if "device" in line and "model" in line)
    assert "config" in header
    press = next(line for line in lines if "press-01" in line)
    assert re.search(r"\b4\b", press.split("press-01", 1)[1])
    narrow = fleet_table(fleet(hub), width=80)
    assert "config" in narrow.hidden  # dropped first on a narrow terminal

    listed = CliRunner().invoke(app, ["devices", "list", "--json", "--root", str(hub.root)])
    assert listed.exit_code == 0, listed.output
    assert {d["device_id"]: d["config_version"] for d in json.loads(listed.stdout)} == {"press-01": 4, "press-02": None}
    wide = CliRunner().invoke(app, ["devices", "list", "--wide", "--root", str(hub.root)], env={"COLUMNS": "200"})
    assert "config" in wide.stdout and re.search(r"press-01.*\b4\s*│?\s*$", wide.stdout, re.MULTILINE), wide.stdout


@pytest.mark.slow
@pytest.mark.parametrize("value", ["4", 0, -1, 1.5, True, [4]])
def test_a_wrong_config_version_is_a_422_and_stores_nothing(hub, value) -> None:
    answer = post(hub, "press-01", hub.tokens["press-01"], beat(config_version=value, model_version="9"))
    assert answer.status_code == 422, (value, answer.text)
    assert "config_version" in answer.text
    devices = {d["device_id"]: d for d in fleet(hub)["devices"]}
    assert devices["press-01"]["config_version"] == 4 and devices["press-01"]["model_version"] == "3"


@pytest.mark.slow
def test_the_console_shows_the_version_and_refused_policies(hub) -> None:
    with httpx.Client(base_url=hub.url) as client:
        form = client.get("/console/login")
        csrf = re.search(r'name="login_csrf" value="([0-9a-f]{32})"', form.text)
        assert csrf is not None
        answer = client.post("/console/login", data={"who": "ada", "token": hub.admin_token,
                                                     "login_csrf": csrf.group(1), "next": ""})
        assert answer.status_code == 303, answer.text
        page = client.get("/console/fleet").text
        assert "<th>Config</th>" in page or ">Config<" in page
        device = client.get("/console/devices/press-01").text
        other = client.get("/console/devices/press-02").text
    refused = device.split("Runner policies refused", 1)[1].split("<h2>", 1)[0]
    assert "drift.window_rows: expected a whole number" in refused and ">5<" in refused
    assert "<b>" not in refused and "&lt;b&gt;" in refused  # the device's words are escaped
    assert "Runner policy" in device
    assert "no runner policy refused" in other
