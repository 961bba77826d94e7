"""The console in a real browser (Playwright + Debian's Chromium) against a real hub with seeded devices and
real signed releases: log in through the form, open every page, CSRF refusal changes nothing, no request
leaves the hub's host, logout ends the session, a screenshot of each page is saved.

One hub and one browser for the module; the tests run in order (each builds on the session of the one
before, as an operator would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.testkit.browser import NO_CHROMIUM, BrowserSession, browser_page, chromium_executable, screenshot
from edgeloop.testkit.console_world import ConsoleWorld, console_world

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_executable() is None, reason=NO_CHROMIUM)]

SHOTS: list[Path] = []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    root = tmp_path_factory.mktemp("console-browser")
    data = root / "data" / "candidate"
    data.mkdir(parents=True)
    (data / "index.html").write_text('<html><body><h1>Candidate overview</h1><a href="../reports/ingest/data_docs/'
                                     'index.html">Data Docs</a></body></html>')
    with console_world(root, devices=24, releases=3, decisions=120) as seeded:
        yield seeded


@pytest.fixture(scope="module")
def browser(world: ConsoleWorld) -> Iterator[BrowserSession]:
    with browser_page(world.url) as session:
        yield session


def _shot(browser: BrowserSession, name: str) -> None:
    path = screenshot(browser.page, name)
    assert path.is_file() and path.stat().st_size > 5000
    SHOTS.append(path)


def test_login_through_the_form(world: ConsoleWorld, browser: BrowserSession) -> None:
    answer = browser.go("/console/fleet?status=online")
    assert answer.status == 200 and browser.page.url.endswith("/console/login?next=/console/fleet%3Fstatus%3Donline")
    _shot(browser, "01-login")
    browser.page.fill("input[name=who]", "ada")
    browser.page.fill("input[name=token]", "ela_wrong")
    browser.page.click("button[type=submit]")
    assert "That is not this hub's admin token." in browser.page.inner_text("main")
    browser.page.fill("input[name=who]", "ada")
    browser.page.fill("input[name=token]", world.hub.admin_token)
    browser.page.click("button[type=submit]")
    browser.page.wait_for_url("**/console/fleet?status=online")
    assert "Logged in as ada" in browser.page.inner_text("header")
    assert world.hub.admin_token not in browser.page.content()


def test_fleet_page(world: ConsoleWorld, browser: BrowserSession) -> None:
    browser.go("/console/fleet")
    assert browser.page.inner_text("h1") == "Fleet"
    rows = browser.page.locator("tbody tr")
    assert rows.count() == len(world.specs)
    first = rows.first.inner_text()
    assert "error" in first and ("checksum" in first or "401" in first)  # problems first, with the reason
    _shot(browser, "02-fleet")
    browser.page.select_option("select[name=channel]", "canary")
    browser.page.click("form.filters button")
    browser.page.wait_for_url("**channel=canary**")
    canary = {s.device_id for s in world.specs if s.channel == "canary"}
    shown = set(browser.page.locator("tbody tr td:first-child a").all_inner_texts())
    assert shown == canary


def test_device_page(world: ConsoleWorld, browser: BrowserSession) -> None:
    browser.go("/console/fleet")
    browser.page.locator("tbody tr td:first-child a").first.click()
    browser.page.wait_for_url("**/console/devices/**")
    assert browser.page.inner_text("h1").startswith("Device")
    _shot(browser, "03-device")


@pytest.mark.parametrize(("path", "heading", "name"), [("/console/releases", "Releases", "04-releases"),
                                                       ("/console/loop", "Loop", "05-loop"),
                                                       ("/console/reports", "Reports", "06-reports")])
def test_pages_answer_with_their_heading(browser: BrowserSession, path: str, heading: str, name: str) -> None:
    answer = browser.go(path)
    assert answer.status == 200
    assert browser.page.inner_text("h1").startswith(heading)
    _shot(browser, name)


def test_the_loop_page_shows_fired_decisions_and_their_trend(browser: BrowserSession) -> None:
    browser.go("/console/loop")
    text = browser.page.inner_text("main")
    assert "retrain: accuracy_drop fired" in text and "gate passed; published release" in text
    assert "no trigger fired" not in text  # quiet passes are behind the state filter
    assert "accuracy_drop = 0.94" in text  # observed values flattened, not raw JSON
    assert browser.page.locator("svg polyline").count() >= 2  # the trend charts have lines


def test_releases_show_the_published_ones(world: ConsoleWorld, browser: BrowserSession) -> None:
    browser.go("/console/releases")
    text = browser.page.inner_text("main")
    assert "stable" in text and "canary" in text
    for version in range(1, world.releases + 1):
        assert browser.page.locator(f'a[href="/console/releases/{version}"]').count() >= 1


def test_reports_and_a_missing_one(browser: BrowserSession) -> None:
    browser.go("/console/reports")
    browser.page.click("text=Candidate overview")
    assert browser.page.inner_text("h1") == "Candidate overview"
    answer = browser.page.expect_navigation
    with answer() as navigation:
        browser.page.click("text=Data Docs")
    assert navigation.value.status == 404
    assert "edgeloop stage ingest" in browser.page.inner_text("main")
    _shot(browser, "07-missing-report")


def test_csrf_refusal_changes_nothing(world: ConsoleWorld, browser: BrowserSession) -> None:
    request = browser.context.request  # the browser's own cookies
    before = browser.go("/console/releases") and browser.page.inner_text("main")
    for form in ({"channel": "stable"}, {"channel": "stable", "csrf": "0" * 64}):
        answer = request.post(world.url + "/console/releases/halt", form=form)
        assert answer.status == 403 and "security token" in answer.text()
        refused = request.post(world.url + "/console/logout", form={k: v for k, v in form.items() if k == "csrf"})
        assert refused.status == 403
    browser.go("/console/releases")
    assert browser.page.inner_text("main") == before  # not halted, still logged in
    assert "halted" not in before


def test_nothing_left_the_hub(browser: BrowserSession) -> None:
    assert browser.requests, "the browser made no requests at all"
    assert browser.foreign_requests == []


def test_logout_ends_the_session(browser: BrowserSession) -> None:
    browser.go("/console/fleet")
    browser.page.click("header button[type=submit]")
    browser.page.wait_for_url("**/console/login")
    assert browser.context.cookies() == [] or all(c["name"] != "edgeloop_console" for c in browser.context.cookies())
    browser.go("/console/fleet")
    assert "/console/login" in browser.page.url
    assert len(SHOTS) == 7 and all(p.is_file() for p in SHOTS)
