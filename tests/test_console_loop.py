"""The console's loop page on the hub's real app (TestClient on create_app with the console mounted): a decision
log written by the loop's own recording functions (monitor passes, a retrain and its outcome, soak checks, a
manual promote and halt) and a real release repository.

Covers: fired decisions by default, newest first; filters by state, source and kind (an unknown value is one
clear message); observed values flattened into "name = value" lines, never raw JSON; the trend charts (gate
metrics per release, each release's soak accuracy, the monitor's accuracy and drift with thresholds) are SVG
whose points are the logged values.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.contracts.layout import Paths
from edgeloop.console import mount
from flows.loop.estimates import Estimate
from flows.loop.halts import halt_channel, halts_path, record_halt
from flows.loop.moves import record_manual_move, record_verdict
from flows.loop.promotion import SoakEvidence, Verdict
from flows.loop.retrains import record_automatic, record_outcome, record_request
from flows.loop.triggers import MonitorDecision, TriggerResult
from flows.params import load_params
from hub.app import create_app
from hub.settings import HubSettings
from tests.test_console_releases import login
from tests.test_release_halt import release_project


def monitor_pass(log: Path, fired: bool, accuracy: float, drift: float) -> None:
    triggers = (
        TriggerResult("data_volume", "quiet", 120, 5000, "120 new labelled rows (fires at >= 5000)"),
        TriggerResult("fleet_drift", "fired" if drift >= 0.5 else "quiet", drift, 0.5, f"{drift:.0%} drifting",
                      {"active": 4, "drifting": 2, "psi": 0.2}),
        TriggerResult("accuracy_drop", "quiet", accuracy, 0.8, f"accuracy {accuracy}"),
    )
    decision = MonitorDecision(fired, triggers, ("fleet_drift",) if fired else (), False, 0.0, None, "never",
                               "fleet drift fired: retrain" if fired else "all quiet")
    record_automatic(log, decision, "retrain", None)


def soak(log: Path, candidate_accuracy: float, stable_accuracy: float) -> None:
    evidence = SoakEvidence(now=datetime.now(UTC), candidate=3, stable=1,
                            on_channel_since=datetime.now(UTC) - timedelta(hours=1), devices=("c1",),
                            candidate_accuracy=Estimate(candidate_accuracy, 0.8, 0.95, 0.9, 400, 900.0),
                            stable_accuracy=Estimate(stable_accuracy, 0.8, 0.95, 0.9, 600, 1500.0))
    record_verdict(log, Verdict("wait", "release 3 is not soaked yet: soak: 3600 s of 86400 s"), evidence, None, None)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop-console")
    release_project(root)
    paths = Paths.at(root)
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    monitor_pass(log, False, 0.91, 0.25)
    monitor_pass(log, True, 0.86, 0.75)
    request = record_request(log, "manual", "edgeloop retrain", 3600)
    record_outcome(log, "manual", {"state": "Completed", "completed": True, "passed": True,
                                   "candidate": "cand-000000000003", "release": 3, "channel": "canary",
                                   "message": None}, request.at)
    soak(log, 0.9012, 0.8876)
    soak(log, 0.9123, 0.8811)
    record_manual_move(params, paths, "promote", {"channel": "stable", "from_version": 1, "to_version": 3},
                       by="alice via console")
    halt = halt_channel(halts_path(log), "stable", "bob via cli", "plant <audit> & review")
    record_halt(log, "halt", halt, "bob via cli")
    settings = HubSettings.load(root)
    with TestClient(create_app(settings, extensions=(mount,))) as client:
        login(client, settings.admin_token_file.read_text().strip())
        yield client


def table_rows(text: str) -> list[str]:
    section = text.split("<h2>Decisions</h2>", 1)[1].split("</table>", 1)[0]
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row.replace("<br>", " | "))).split())
            for row in section.split("<tr>")[2:]]


def test_fired_decisions_newest_first_with_readable_observed_values(console) -> None:
    page = console.get("/console/loop")
    assert page.status_code == 200
    rows = table_rows(page.text)
    assert [r.split(" UTC ")[1].split()[:2] for r in rows] == [
        ["manual", "halt"], ["manual", "promote"], ["manual", "retrain_outcome"], ["manual", "retrain"],
        ["monitor", "retrain"]]  # fired only, newest first: the quiet monitor pass and the soak waits are hidden
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r) for r in rows)
    halt, promote, _, _, monitor = rows
    assert "bob via cli" in halt and "reason = plant <audit> & review" in halt
    assert "alice via console" in promote and "from_version = 1 | to_version = 3" in promote
    assert "fleet_drift = 0.75" in monitor and "accuracy_drop = 0.86" in monitor and "fleet_drift fired" in monitor
    body = page.text.split("<h2>Decisions</h2>", 1)[1]
    assert "{&quot;" not in body and '{"' not in body  # no raw JSON
    assert "plant &lt;audit&gt; &amp; review" in body  # escaped


def test_filters_by_state_source_and_kind(console) -> None:
    everything = table_rows(console.get("/console/loop?state=all").text)
    assert len(everything) == 8
    soaks = table_rows(console.get("/console/loop?state=all&source=promote").text)
    assert len(soaks) == 2 and all("candidate_accuracy.value = 0.9" in r and "stable = 1" in r for r in soaks)
    assert "candidate_accuracy.value = 0.9123" in soaks[0]  # newest first
    quiet = table_rows(console.get("/console/loop?state=not+fired").text)
    assert len(quiet) == 3 and all("quiet" in r for r in quiet)
    halts = table_rows(console.get("/console/loop?kind=halt").text)
    assert len(halts) == 1 and "halt" in halts[0]
    limited = console.get("/console/loop?state=all&limit=2")
    assert len(table_rows(limited.text)) == 2 and "Show more (6 older)" in limited.text
    for query, message in (("source=robot", "source 'robot' is not one of: monitor, promote, manual, deployment"),
                           ("state=maybe", "state 'maybe' is not one of: fired, all, not fired")):
        refused = console.get(f"/console/loop?{query}")
        assert refused.status_code == 400 and message in html.unescape(refused.text)


def test_trend_charts_plot_the_logged_values(console) -> None:
    page = console.get("/console/loop").text
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(charts) == 4
    parsed = [ET.fromstring(svg) for svg in charts]  # well-formed SVG
    titles = [" ".join(t.text or "" for t in tree.iter() if t.tag.endswith("title")) for tree in parsed]
    gate, soaks, accuracy, drift = titles
    assert "f1_macro" in gate and "accuracy" in gate and "0.91" in gate
    assert "release 3" in soaks and "release 1" in soaks and "0.9123" in soaks and "0.8811" in soaks
    assert "0.86" in accuracy and "0.91" in accuracy and "accuracy floor" in accuracy
    assert "0.75" in drift and "0.25" in drift and "retrain at" in drift
