"""The console's fleet page: summary, filters, health with its reason, drift against the threshold,
credential state, problems first, hostile text escaped, and 1,000 devices in one page (the hub's real app
and heartbeat API through FastAPI's TestClient)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from edgeloop.console import mount
from edgeloop.console.fleet_pages import Filters, render_fleet
from edgeloop.testkit.console_world import (
    START,
    DeviceSpec,
    device_specs,
    heartbeat_body,
    login,
    seed_devices,
    write_estimates,
)
from edgeloop.testkit.project import REPO
from hub.app import create_app
from hub.clock import ManualClock
from hub.fleet_document import build_fleet
from hub.settings import HubSettings
from hub.store.fleet import FleetRow

HOSTILE = '<script>alert("x")</script>'
SPECS = [
    DeviceSpec("press-01", health="degraded", reason="accuracy 0.778 below floor 0.8", version="3"),
    DeviceSpec("press-02", health="error", reason=HOSTILE, version='<img src=x onerror="1">'),
    DeviceSpec("press-03", channel="canary", version="4", drift=0.41),
    DeviceSpec("press-04", version="3"),
    DeviceSpec("press-05", heartbeat=False),
    DeviceSpec("press-06", offline=True, health="degraded", reason="clock skew 42 s"),
    DeviceSpec("lathe-01", channel="canary", version="4", revoked=True),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("console-fleet")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    clock = ManualClock(START)
    write_estimates(root, SPECS)  # the loop's own estimates code over synthetic labelled rows
    app = create_app(HubSettings.load(root), clock, (mount,))
    token = HubSettings.load(root).admin_token_file.read_text().strip()
    with TestClient(app, base_url="http://testserver") as test_client:
        seed_devices(app, clock, test_client, SPECS)
        login(test_client, token)
        yield test_client


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr><td><a href=\"/console/devices/([^\"]+)\">", html)


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_problems_first_with_reasons_and_states(client: TestClient) -> None:
    page = client.get("/console/fleet")
    assert page.status_code == 200
    html = page.text
    order = _rows(html)
    assert order[:2] == ["press-02", "press-01"]  # error, then degraded
    assert order.index("press-06") < order.index("press-03") < order.index("press-04")  # offline, drifting, ok
    assert order[-1] == "lathe-01"  # revoked last
    assert "accuracy 0.778 below floor 0.8 since 13:47" in html  # health_since 17 min before its heartbeat at 14:04
    assert "last said" in html and "clock skew 42 s" in html  # an offline device: what it said, not its health
    assert "PSI 0.410 &gt; 0.25" in html and "drifting" in html  # against loop.monitor.drift_psi
    assert "PSI 0.050 ≤ 0.25" in html
    assert ">revoked<" in html and "token" in html
    assert "7 devices" in html and "1 never seen" in html and "1 offline" in html
    assert "no labelled rows" in html  # a device never seen has no estimate: says so instead of a number
    estimates = re.findall(r"([01]\.\d{3}) <span class=muted>\(([01]\.\d{3})–([01]\.\d{3}) · (\d+) rows\)", html)
    assert len(estimates) == 1 + 6  # the fleet's and each device that uploaded
    assert all(float(low) <= float(value) <= float(high) for value, low, high, _ in estimates)


def test_hostile_text_is_escaped(client: TestClient) -> None:
    html = client.get("/console/fleet").text
    checker = _Checker()
    checker.feed(html)
    assert checker.scripts == 0 and checker.handlers == []
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;1&quot;&gt;" in html


@pytest.mark.parametrize(("query", "expected"), [
    ({"channel": "canary"}, {"press-03", "lathe-01"}),
    ({"status": "never seen"}, {"press-05"}),
    ({"status": "offline"}, {"press-06"}),
    ({"health": "degraded"}, {"press-01"}),
    ({"version": "3"}, {"press-01", "press-04"}),
    ({"q": "LATHE"}, {"lathe-01"}),
    ({"channel": "canary", "version": "4", "q": "press"}, {"press-03"}),
    ({"q": "<nothing>"}, set()),
])
def test_filters(client: TestClient, query: dict[str, str], expected: set[str]) -> None:
    page = client.get("/console/fleet", params=query)
    assert page.status_code == 200
    assert set(_rows(page.text)) == expected
    if not expected:
        assert "no device matches these filters" in page.text
    for value in query.values():  # the form keeps what was chosen
        assert f'value="{value}"' in page.text or f'value="{value}" selected' in page.text or "&lt;" in page.text


def test_console_root_redirects_to_fleet(client: TestClient) -> None:
    answer = client.get("/console/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/fleet"


def _fleet_rows(count: int, now: datetime) -> list[FleetRow]:
    rows = []
    for spec in device_specs(count):
        received = None if not spec.heartbeat else now - timedelta(seconds=3600 if spec.offline else 20)
        state = heartbeat_body(spec, now) if spec.heartbeat else None
        rows.append(FleetRow(spec.device_id, spec.channel, spec.revoked, received, state, 3, 4096,
                             now + timedelta(days=5 if spec.device_id.endswith("7") else 300)))
    return rows


def test_a_thousand_devices_render_in_one_page() -> None:
    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    rows = _fleet_rows(1000, now)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        fleet = build_fleet(rows, now, 180.0, None)
        html = render_fleet(fleet, Filters(), 0.25)
        timings.append(time.perf_counter() - started)
    assert len(_rows(html)) == 1000
    assert html.count(">expiring<") == sum(1 for s in device_specs(1000) if s.device_id.endswith("7") and not s.revoked)
    # a loose bound (CI machines are shared): catches a quadratic slip; bench/console.py measures the budget
    assert sorted(timings)[2] < 1.0, f"median {sorted(timings)[2]:.3f} s for 1,000 devices"
