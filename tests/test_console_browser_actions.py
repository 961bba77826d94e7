"""The console's release actions in a real browser: Playwright driving Debian's Chromium against a real hub
(uvicorn on 127.0.0.1 with the console mounted), a real signed release repository and devices heartbeating
over HTTP. Log in through the form, promote a release (confirmation page, then the button), roll a channel
back, halt one with a reason; each time the page shows the new pointer and the real TUF channel moved.
Screenshots of the releases, confirmation and loop pages are saved (edgeloop.testkit.browser). Skipped, with
the reason, only where no Chromium is installed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from edge.contracts.layout import Paths
from edgeloop.testkit.browser import NO_CHROMIUM, browser_page, chromium_executable, screenshot
from edgeloop.testkit.hub import running_hub
from flows.loop.log import read_decisions
from flows.params import load_params
from flows.releases import ReleaseConfig, list_channels
from hub.registry import add_device
from tests.test_release_halt import release_project

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_executable() is None, reason=NO_CHROMIUM)]


def channels(root) -> dict[str, int]:
    paths = Paths.at(root)
    return list_channels(ReleaseConfig.from_params(load_params(paths.params), paths))


def channel_row(session, channel: str) -> str:
    return session.page.locator("h2:text('Channels') + table tbody tr", has_text=channel).first.inner_text()


def test_promote_rollback_and_halt_by_clicking(tmp_path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    release_project(root)  # releases 1..3, canary -> 3, stable -> 1
    with running_hub(root, console=True) as hub:
        for device, channel, version in (("s1", "stable", "1"), ("s2", "stable", "1"), ("c1", "canary", "3")):
            token = add_device(hub.app.state.sessions, device, channel)
            body = {"channel": channel, "health": "ok", "model_version": version, "drift": {},
                    "clock": datetime.now(UTC).isoformat(), "events": []}
            got = httpx.post(f"{hub.url}/v1/devices/{device}/heartbeat", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200, got.text
        with browser_page(hub.url) as session:
            page = session.page
            session.go("/console/releases")
            assert "/console/login" in page.url  # not logged in yet
            page.fill("input[name=who]", "ada")
            page.fill("input[name=token]", hub.admin_token)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url.endswith("/console/releases"), (page.url, page.inner_text("main"))
            assert "2 / 2" in channel_row(session, "stable")
            screenshot(page, "releases")

            form = page.locator("form[action='/console/releases/promote']").filter(
                has=page.locator("input[name=version][value='3']"))
            form.locator("select").select_option("stable")
            form.locator("button").click()
            page.wait_for_url("**/console/releases/promote?**")
            assert "move stable from 1 to 3: 2 devices will update" in page.inner_text("main")
            screenshot(page, "releases-confirm-promote")
            assert channels(root)["stable"] == 1  # nothing moves before the button
            page.click("main form button[type=submit]")
            page.wait_for_url("**/console/releases?done=**")
            assert "channel stable: 1 -> 3" in page.inner_text("main")
            assert channel_row(session, "stable").split()[:2] == ["stable", "3"]
            assert channels(root) == {"canary": 3, "stable": 3}

            page.locator("h2:text('Channels') + table tbody tr", has_text="canary").get_by_text(
                "roll back to 2").click()
            assert "roll back canary from 3 to 2" in page.inner_text("main")
            page.click("main form button[type=submit]")
            page.wait_for_url("**/console/releases?done=**")
            assert channel_row(session, "canary").split()[:2] == ["canary", "2"]
            assert channels(root)["canary"] == 2

            page.locator("h2:text('Channels') + table tbody tr", has_text="stable").get_by_text("halt").click()
            page.fill("input[name=reason]", "waiting for the line 3 audit")
            page.click("main form button[type=submit]")
            page.wait_for_url("**/console/releases?done=**")
            assert "halted" in channel_row(session, "stable") and "line 3 audit" in channel_row(session, "stable")
            screenshot(page, "releases-after-actions")

            session.go("/console/loop")
            assert "manual halt: channel stable halted by ada via console" in page.inner_text("main")
            assert page.locator("svg").count() == 4
            screenshot(page, "loop")
            assert session.foreign_requests == []
    logged = [(e["kind"], e["by"]) for e in read_decisions(root / "data/loop/decisions.jsonl", source="manual")]
    assert logged == [("promote", "ada via console"), ("rollback", "ada via console"), ("halt", "ada via console")]
