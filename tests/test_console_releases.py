"""The console's releases page and its actions, on the hub's real app (FastAPI TestClient on create_app with the
console mounted), a real TUF release repository (three signed releases) and devices registered in the hub's
database that heartbeat through the hub's own API.

Covers: channel pointers and rollout progress (devices on it / following, rejected, rolled back); gate verdict,
metric vs champion and lineage per release; a release's own page; promote / roll back / halt / resume each behind
a confirmation page, each moving the real signed channel (or halt state), recorded in the loop log as manual with
the operator's name; refusals (no CSRF, unknown channel or release, nothing to roll back to, already there, stale
confirmation) change nothing; a halted channel needs "promote anyway" and is not moved by the promote-soaked logic.
"""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.contracts.layout import Paths
from edgeloop.console import mount
from edgeloop.testkit.project import REPO
from flows.loop.halts import halts_path, read_halts
from flows.loop.log import read_decisions
from flows.params import load_params
from flows.releases import ReleaseConfig, list_channels
from hub.app import create_app
from hub.registry import add_device
from hub.settings import HubSettings
from tests.test_release_halt import release_project


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("releases-template")
    release_project(root)
    return root


@pytest.fixture
def project(template, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(template, root)
    return root


def config_of(root: Path) -> ReleaseConfig:
    paths = Paths.at(root)
    return ReleaseConfig.from_params(load_params(paths.params), paths)


def heartbeat(client: TestClient, device: str, token: str, channel: str, version: str | None,
              events: list[dict] | None = None) -> None:
    body = {"channel": channel, "health": "ok", "model_version": version, "drift": {},
            "clock": datetime.now(UTC).isoformat(), "events": events or []}
    got = client.post(f"/v1/devices/{device}/heartbeat", json=body, headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200, got.text


def event(kind: str, version: str) -> dict:
    return {"kind": kind, "version": version, "at": datetime.now(UTC).isoformat(), "detail": "shadow 0.71 < 0.80"}


def login(client: TestClient, token: str, name: str = "alice") -> str:
    """Log in through the form; the page's CSRF value."""
    form = client.get("/console/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    done = client.post("/console/login", data={"login_csrf": login_csrf, "who": name, "token": token,
                                               "next": "/console/releases"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    page = client.get("/console/releases")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def console(project):
    """(client logged in as alice, its csrf, project root) with a fleet: stable 3 devices (2 on release 1, one
    not yet heard from), canary 3 devices (one on 3, one that blocked 3 and runs 2, one that rolled back from 3)."""
    shutil.copytree(project / "cand3", project / "data" / "candidate")  # the gate's last candidate folder
    settings = HubSettings.load(project)
    app = create_app(settings, extensions=(mount,))
    with TestClient(app) as client:
        token = settings.admin_token_file.read_text().strip()
        sessions = app.state.sessions
        fleet = {"s1": ("stable", "1", []), "s2": ("stable", "1", []), "s3": ("stable", None, None),
                 "c1": ("canary", "3", []), "c2": ("canary", "2", [event("blocked", "3")]),
                 "c3": ("canary", "2", [event("rolled_back", "3")])}
        for device, (channel, version, events) in fleet.items():
            device_token = add_device(sessions, device, channel)
            if events is not None:
                heartbeat(client, device, device_token, channel, version, events)
        yield client, login(client, token), project


def rows_of(html: str, heading: str) -> list[str]:
    section = html.split(f"<h2>{heading}", 1)[1].split("</table>", 1)[0]
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in section.split("<tr>")[2:]]


def cells(row: str) -> list[str]:
    return row.split()


def manual(root: Path) -> list[dict]:
    return read_decisions(root / "data/loop/decisions.jsonl", source="manual")


def test_releases_page_shows_pointers_rollout_and_each_release(console) -> None:
    client, _, _ = console
    page = client.get("/console/releases")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    channels = {cells(r)[0]: r for r in rows_of(page.text, "Channels")}
    assert set(channels) == {"canary", "stable"}
    # canary -> 3: 1 of 3 devices on it, 1 rejected it, 1 rolled back from it; stable -> 1: 2 of 3
    assert "1 / 3" in channels["canary"] and cells(channels["canary"])[1] == "3"
    assert re.search(r"1 / 3\s+1\s+1", channels["canary"]), channels["canary"]
    assert re.search(r"2 / 3\s+0\s+0", channels["stable"]), channels["stable"]
    assert "roll back to 2" in channels["canary"] and "roll back" not in channels["stable"]
    releases = rows_of(page.text, "Releases")
    assert [cells(r)[0] for r in releases] == ["3", "2", "1"]  # newest first
    newest = releases[0]
    assert "canary" in newest and "passed" in newest and "f1_macro 0.9100" in newest
    assert "data dddddddddddd" in newest and "params pppppppppppp" in newest
    running = re.search(r"commit \S+\s+(\d+)\s+(\d+)\s+(\d+)", newest)
    assert running.groups() == ("1", "1", "1")  # running, rejected, rolled back
    links = re.findall(r'<a href="(/console/reports/[^"]+)">candidate page</a>', page.text)
    assert links == ["/console/reports/candidate/index.html"]  # only release 3's candidate folder is still there
    one = client.get("/console/releases/1")
    assert one.status_code == 200 and "Release 1" in one.text and "quality_floor" in one.text
    assert "d" * 64 in one.text and "cand-000000000001" in one.text and "model.onnx" in one.text
    missing = client.get("/console/releases/9")
    assert missing.status_code == 409 and "no release 9 in the repository (releases: 1, 2, 3)" in missing.text


def test_not_logged_in_goes_to_the_login_page(project) -> None:
    with TestClient(create_app(HubSettings.load(project), extensions=(mount,))) as client:
        got = client.get("/console/releases/promote?channel=stable&version=3", follow_redirects=False)
        assert got.status_code == 303 and got.headers["location"].startswith("/console/login?next=")
        assert client.post("/console/releases/promote", data={"channel": "stable", "version": "3"},
                           follow_redirects=False).status_code == 303
    assert list_channels(config_of(project)) == {"canary": 3, "stable": 1}


def test_promote_is_confirmed_then_moves_the_signed_channel_and_is_logged_as_manual(console) -> None:
    client, csrf, root = console
    confirm = client.get("/console/releases/promote?channel=stable&version=3")
    assert confirm.status_code == 200
    assert "move stable from 1 to 3: 3 devices will update" in confirm.text
    assert list_channels(config_of(root)) == {"canary": 3, "stable": 1}  # the GET changed nothing
    refused = client.post("/console/releases/promote", data={"channel": "stable", "version": "3", "expect_from": "1"})
    assert refused.status_code == 403 and list_channels(config_of(root))["stable"] == 1  # no CSRF field
    wrong = client.post("/console/releases/promote",
                        data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": "x" * 64})
    assert wrong.status_code == 403 and list_channels(config_of(root))["stable"] == 1
    foreign = client.post("/console/releases/promote", headers={"Origin": "http://evil.example"},
                          data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf})
    assert foreign.status_code == 403 and list_channels(config_of(root))["stable"] == 1
    done = client.post("/console/releases/promote", follow_redirects=False,
                       data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf})
    assert done.status_code == 303, done.text
    assert list_channels(config_of(root)) == {"canary": 3, "stable": 3}
    shown = client.get(done.headers["location"])
    assert "channel stable: 1 -&gt; 3" in shown.text
    assert cells(rows_of(shown.text, "Channels")[1])[:2] == ["stable", "3"]
    [entry] = manual(root)
    assert (entry["kind"], entry["fired"], entry["by"]) == ("promote", True, "alice via console")
    assert entry["observed"] == {"channel": "stable", "from_version": 1, "to_version": 3}
    assert "alice via console" in entry["summary"] and entry["at"]
    # the same confirmation sent again is stale: refused, nothing changes
    again = client.post("/console/releases/promote",
                        data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf})
    assert again.status_code == 409 and "already points at release 3" in again.text
    assert len(manual(root)) == 1


REFUSED_PROMOTES = [
    ("channel=stabel&version=3", "channel 'stabel' does not exist (channels: canary, stable)"),
    ("channel=stable&version=9", "no release 9 in the repository"),
    ("channel=stable&version=1", "already points at release 1"),
    ("channel=stable&version=x", "'x' is not a release number"),
]


def test_refused_promotes_say_why_and_change_nothing(console) -> None:
    client, csrf, root = console
    for query, message in REFUSED_PROMOTES:
        shown = client.get(f"/console/releases/promote?{query}")
        assert shown.status_code == 409 and message in html.unescape(shown.text), query
        assert '<form method="post"' not in shown.text.split("<main>")[1]  # nothing to confirm
        fields = dict(pair.split("=") for pair in query.split("&"))
        posted = client.post("/console/releases/promote", data={**fields, "expect_from": "1", "csrf": csrf})
        assert posted.status_code == 409 and message in html.unescape(posted.text), query
    assert list_channels(config_of(root)) == {"canary": 3, "stable": 1} and manual(root) == []


def test_rollback_goes_to_the_previous_release_and_refuses_when_there_is_none(console) -> None:
    client, csrf, root = console
    confirm = client.get("/console/releases/rollback?channel=canary")
    assert "roll back canary from 3 to 2: 1 device will update" in confirm.text
    stale = client.post("/console/releases/rollback", data={"channel": "canary", "expect_from": "2", "csrf": csrf})
    assert stale.status_code == 409 and "moved since you confirmed" in stale.text
    assert list_channels(config_of(root))["canary"] == 3
    done = client.post("/console/releases/rollback", follow_redirects=False,
                       data={"channel": "canary", "expect_from": "3", "csrf": csrf})
    assert done.status_code == 303 and list_channels(config_of(root))["canary"] == 2
    none = client.get("/console/releases/rollback?channel=stable")
    assert none.status_code == 409 and "no earlier release to roll back to" in none.text
    unknown = client.get("/console/releases/rollback?channel=nope")
    assert unknown.status_code == 409 and "channel 'nope' has no release to roll back" in html.unescape(unknown.text)
    [entry] = manual(root)
    assert (entry["kind"], entry["by"], entry["observed"]["to_version"]) == ("rollback", "alice via console", 2)


def test_halt_needs_promote_anyway_and_stops_the_promote_soaked_logic(console) -> None:
    from flows.loop.moves import apply_verdict, record_verdict
    from flows.loop.promotion import SoakEvidence, Verdict

    client, csrf, root = console
    assert "halt stable" in client.get("/console/releases/halt?channel=stable").text
    no_reason = client.post("/console/releases/halt", data={"channel": "stable", "csrf": csrf, "reason": " "})
    assert no_reason.status_code == 409 and "needs a reason" in no_reason.text
    halted = client.post("/console/releases/halt", follow_redirects=False,
                         data={"channel": "stable", "csrf": csrf, "reason": "bad sensor batch at line 3"})
    assert halted.status_code == 303
    halt = read_halts(halts_path(root / "data/loop/decisions.jsonl"))["stable"]
    assert (halt.by, halt.reason) == ("alice via console", "bad sensor batch at line 3")
    page = client.get("/console/releases").text
    assert "stable (halted)" in page and "bad sensor batch at line 3" in page
    assert client.get("/console/releases/halt?channel=stable").status_code == 409  # already halted

    # the promote-soaked flow's move: refused as "could not act", the channel stays, the decision says why
    paths = Paths.at(root)
    params = load_params(paths.params)
    evidence = SoakEvidence(now=datetime.now(UTC), candidate=3, stable=1, on_channel_since=None)
    verdict = Verdict("promote", "release 3 soaked on canary: promote to stable")
    from edge.contracts.errors import UserError

    with pytest.raises(UserError, match="halted by alice via console") as refused:
        apply_verdict(params, paths, verdict, evidence)
    entry = record_verdict(paths.resolve(params.loop.log), verdict, evidence, None, str(refused.value))
    assert entry["fired"] is False and "could not act: channel 'stable' is halted" in entry["summary"]
    assert list_channels(config_of(root))["stable"] == 1

    # a manual promote needs the second confirmation
    confirm = client.get("/console/releases/promote?channel=stable&version=3")
    assert "Promote anyway" in confirm.text and 'name="force" value="1"' in confirm.text
    plain = client.post("/console/releases/promote",
                        data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf})
    assert plain.status_code == 409 and "promote anyway" in plain.text
    assert list_channels(config_of(root))["stable"] == 1
    forced = client.post("/console/releases/promote", follow_redirects=False,
                         data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf, "force": "1"})
    assert forced.status_code == 303 and list_channels(config_of(root))["stable"] == 3
    resumed = client.post("/console/releases/resume", follow_redirects=False, data={"channel": "stable", "csrf": csrf})
    assert resumed.status_code == 303 and read_halts(halts_path(root / "data/loop/decisions.jsonl")) == {}
    kinds = [(e["kind"], e["by"]) for e in manual(root)]
    assert kinds == [("halt", "alice via console"), ("promote", "alice via console"),
                     ("resume", "alice via console")]
    assert "bad sensor batch" in manual(root)[1]["forced_over_halt"]
    assert client.get("/console/releases/resume?channel=stable").status_code == 409  # not halted any more


def test_an_unreadable_halts_file_is_said_and_nothing_moves(console) -> None:
    """A damaged halts.json is never read as "no halts": the page says which file, actions are refused."""
    client, csrf, root = console
    (root / "data/loop").mkdir(parents=True, exist_ok=True)
    halts_path(root / "data/loop/decisions.jsonl").write_text("{not json")
    shown = client.get("/console/releases")
    assert shown.status_code == 503 and "halts.json is unreadable" in shown.text and "Traceback" not in shown.text
    posted = client.post("/console/releases/promote",
                         data={"channel": "stable", "version": "3", "expect_from": "1", "csrf": csrf})
    assert posted.status_code == 409 and "halts.json is unreadable" in posted.text
    assert list_channels(config_of(root)) == {"canary": 3, "stable": 1} and manual(root) == []
    assert client.get("/console/loop").status_code == 200


def test_a_project_without_releases_says_so(tmp_path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    settings = HubSettings.load(tmp_path)
    with TestClient(create_app(settings, extensions=(mount,))) as client:
        login(client, settings.admin_token_file.read_text().strip())
        shown = client.get("/console/releases")
        assert shown.status_code == 200 and "no releases yet" in shown.text and "no channels yet" in shown.text
        refused = client.get("/console/releases/promote?channel=stable&version=1")
        assert refused.status_code == 409
        assert "channel 'stable' does not exist (channels: none yet)" in html.unescape(refused.text)
        loop = client.get("/console/loop")
        assert loop.status_code == 200 and "0 of 0 matching" in loop.text and "no data yet" in loop.text


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_the_rollout_query_reads_the_heartbeat_json_on_both_databases(database, tmp_path) -> None:
    """release_data.fleet_rows extracts model_version and events in SQL (JSON_EXTRACT / ->>): same rows on both."""
    from edgeloop.console.release_data import Rollout, fleet_rows, rollout, tally
    from edgeloop.testkit.postgres import shared_postgres
    from hub.db import Heartbeat, make_engine, make_sessions

    url = (f"sqlite:///{tmp_path / 'hub.db'}" if database == "sqlite"
           else shared_postgres().fresh_database("rollout"))
    engine = make_engine(url)
    try:
        sessions = make_sessions(engine)
        for device, channel in (("a", "stable"), ("b", "stable"), ("c", "canary"), ("never", "stable")):
            add_device(sessions, device, channel)
        states = {"a": {"model_version": "3", "events": []}, "b": {"model_version": 2, "events": [
            {"kind": "rolled_back", "version": "3", "at": "2026-12-02T14:00:00Z", "detail": "watch"}]},
                  "c": {"model_version": None, "events": [
                      {"kind": "blocked", "version": "3", "at": "2026-12-02T14:00:00Z", "detail": "shadow"}]}}
        with sessions.begin() as session:
            session.add_all(Heartbeat(device_id=d, received_at=datetime.now(UTC), state=s) for d, s in states.items())
        rows = {r.device_id: r for r in fleet_rows(sessions)}
        assert {d: (r.channel, r.model_version) for d, r in rows.items()} == {
            "a": ("stable", "3"), "b": ("stable", "2"), "c": ("canary", None), "never": ("stable", None)}
        counts = tally(rows.values())
        assert rollout("stable", 3, counts, {}) == Rollout("stable", 3, on_it=1, expected=3, rejected=1, rolled_back=1,
                                                           halt=None)
    finally:
        engine.dispose()
