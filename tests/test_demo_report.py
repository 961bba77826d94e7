"""The demo report tells the story, and the candidate overview links only reports that exist.

Covers, from a timeline shaped like a real demo run (events recorded out of order, with the runners' and
flows' own detail texts): summary rows named for people (no `v2: 3`, no JSON), every event described in
words and listed in time order (page and terminal), the drift chart's labelled "moderate" and "major" PSI
lines on its axis, no two text labels of any chart overlapping and all inside the chart (boxes computed
from the SVG), crowded markers included; the deliberately worse candidate said plainly in the summary, the
event log and on its own page. The overview page: only existing files linked, each missing report named
with the command that builds it, links relative (they resolve under the console's /console/reports/).
No servers: fast lane.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest

from edge.contracts.layout import Paths
from edgeloop.demo.charts import FONT_PX, PLOT, VIEW, label_boxes, line_chart, text_width
from edgeloop.demo.report import (
    describe_event,
    ordered_events,
    render,
    summary_rows,
    terminal_summary,
    worse_candidate_page,
)
from edgeloop.demo.timeline import Event, Sample, Timeline
from flows.evaluation.overview import (
    DATA_DOCS,
    ReportLink,
    candidate_report_links,
    existing_links,
    render_overview,
)
from flows.params import load_params

DEVICES = {"dev-000": "canary", "dev-001": "canary", "dev-002": "stable", "dev-003": "stable"}
SHADOW = ("blocked: shadow: f1_macro 0.0224 on 2390 labelled rows: worse than the active model's 0.7365 "
          "minus margin 0.02")
SUMMARY = {"v1": 1, "v2": 3, "worse candidate": 2, "drift onset -> fleet recovered (simulated h)": 253.3,
           "drift onset -> fleet recovered (wall s)": 98.2, "labelled rows uploaded": 9540,
           "demo wall time (s)": 153.9}


def demo_timeline() -> Timeline:
    """60 ticks of 6.67 h; release 1 everywhere, the worse release 2 refused by canary at 46.7 h, drift at
    106.7 h (PSI up to 8), release 3 on canary at 340 h and on stable at 366.7 h. Events are added in a
    shuffled order, as threads record them."""
    timeline = Timeline()
    for tick in range(1, 61):
        t_h = round(tick * 20 / 3, 6)
        for i, (device, group) in enumerate(DEVICES.items()):
            version = "3" if (group == "canary" and t_h >= 340) or t_h >= 366.6 else "1"
            drifted = t_h > 106.7 and version == "1"
            correct = 350 if drifted else 390
            timeline.add_sample(Sample(t_h, tick * 2.5, device, group, version, correct / 400,
                                       None if tick < 10 else (8.0 if drifted else 0.15 + i * 0.01),
                                       tick * 400, tick * 43_000, tick * 3_400, correct, 400))
    events = [
        Event(0.0, 6.3, "publish", "1", "v1 trained on the simulated history, published to canary"),
        Event(0.0, 7.4, "promote", "1", "v1 promoted to stable by hand (initial rollout)"),
        *[Event(6.67, 8.6, "activate", "1", f"{d} ({g}): activated: previous: None", d) for d, g in DEVICES.items()],
        Event(40.0, 15.2, "publish", "2", "a worse candidate (trained on flipped labels) to canary"),
        Event(46.67, 18.1, "reject", "2", f"dev-000 (canary): {SHADOW}", "dev-000"),
        Event(46.67, 18.1, "bundle_quarantined", None,
              "dev-000 (canary): quarantined: staging/2: release 2 refused: shadow: f1_macro 0.0224", "dev-000"),
        Event(46.67, 19.2, "rollback", None, "release 2 was rejected on 2 device(s); canary goes back"),
        Event(106.67, 39.5, "drift", None, "sensor_offset drift injected into every machine"),
        Event(333.33, 127.6, "retrain", None, "monitor fired: retrain: fleet_drift, accuracy_drop fired"),
        Event(333.33, 127.7, "quarantine", None, "dev-000/b34b6fbd9c98c086.reason.txt: failure: 20 values not in "
              "classes [0, 1] (e.g. 7)"),
        Event(333.33, 127.7, "publish", "3", "v2 retrained on uploaded ground truth, to canary"),
        Event(340.0, 129.3, "activate", "3", "dev-000 (canary): activated: previous: 1", "dev-000"),
        Event(350.0, 131.0, "gate_blocked", None, "gate blocked the candidate: {'passed': False, 'release': None, "
              "'reasons': ['quality_floor: 0.71 below 0.8'], 'ingest': {}}"),
        Event(360.0, 137.7, "promote", None, "release 3 soaked on canary: promote to stable"),
        Event(366.67, 138.3, "activate", "3", "dev-002 (stable): activated: previous: 1", "dev-002"),
    ]
    for index in (*range(1, len(events), 2), *range(0, len(events), 2)):  # odd ones first: out of order
        timeline.add_event(events[index])
    return timeline


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return demo_timeline()


@pytest.fixture(scope="module")
def page(timeline: Timeline) -> str:
    from edgeloop.demo.report import headline

    return render(timeline, "demo", {**headline(timeline), **SUMMARY})


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", html, re.S)


def test_summary_rows_are_named_for_people(timeline: Timeline) -> None:
    from edgeloop.demo.report import headline

    rows = dict(summary_rows(timeline, {**headline(timeline), **SUMMARY}))
    assert rows["devices in the fleet"] == "4 (2 canary, 2 stable)"
    assert rows["first model (v1)"] == "release 1, trained on the simulated history"
    assert rows["retrained model (v2)"].startswith("release 3, trained on the ground truth")
    assert rows["devices that updated to release 3"] == "4 of 4"
    assert rows["models running at the end"] == "release 3 on 4 of 4 devices"
    assert rows["sensor drift starts"] == "at hour 106.7"
    assert rows["from the drift to a recovered fleet"] == "253.3 simulated hours (98.2 s of demo time)"
    assert rows["data uploaded to the hub"].endswith("of what the devices saw (9,540 labelled rows)")
    assert rows["what happened"].startswith("3 releases published, 2 releases promoted, 6 times a device took")
    assert "1 rollback" in rows["what happened"] and "1 batch quarantined" in rows["what happened"]
    assert "v2" not in rows and "events" not in rows and "versions at the end" not in rows  # no machine keys
    assert not [v for v in rows.values() if re.search(r"[{}\[\]]|\w+_\w+", v)]  # no JSON, no snake_case
    text = terminal_summary(timeline, SUMMARY)
    assert "devices that updated to release 3: 4 of 4" in text and "v2: 3" not in text


def test_events_are_described_in_words_and_in_time_order(timeline: Timeline, page: str) -> None:
    ordered = ordered_events(timeline)
    assert [(e.t_h, e.wall_s) for e in ordered] == sorted((e.t_h, e.wall_s) for e in timeline.events)
    words = {f"{e.kind} {e.t_h} {e.device}": describe_event(e, worse=2) for e in ordered}
    assert words["activate 6.67 dev-003"] == "dev-003 (stable) now runs release 1 (its first model)"
    assert words["activate 340.0 dev-000"] == "dev-000 (canary) now runs release 3, replacing release 1"
    assert words["reject 46.67 dev-000"] == (
        "dev-000 (canary) refused release 2: on its own 2,390 labelled rows it scored f1_macro 0.0224, below the "
        "active model's 0.7365 minus the 0.02 margin")
    assert words["retrain 333.33 None"] == "the monitor fired a retrain (triggers: fleet drift, accuracy drop)"
    assert words["gate_blocked 350.0 None"] == "gate blocked the candidate: quality_floor: 0.71 below 0.8"
    assert words["quarantine 333.33 None"].startswith("ingest quarantined a batch from dev-000 (b34b6fbd9c98")
    assert not [w for w in words.values() if "{" in w or "None" in w]
    table = page[page.index("What happened, in time order"):]
    hours = [float(h) for h in re.findall(r'<tr><td class="num">([\d.,]+)</td>', table)]
    assert len(hours) == len(ordered) and hours == sorted(hours)
    assert table.index("dev-000 (canary) now runs release 3") < table.index("release 3 soaked on canary")
    assert '<td class="kind">device refused a release</td>' in table
    lines = terminal_summary(timeline, SUMMARY).split("events (latest last):\n")[1].splitlines()
    assert [float(line.split(":")[0].split()[-1]) for line in lines] == [round(e.t_h, 1) for e in ordered][-12:]


def test_drift_axis_shows_labelled_moderate_and_major_thresholds(page: str) -> None:
    drift = next(svg for svg in svgs(page) if "Drift score" in svg)
    assert "max feature PSI (log scale)" in drift
    labels = dict(label_boxes(drift))
    for name in ("moderate drift (PSI 0.1)", "major drift (PSI 0.25)"):
        line = re.search(r'<line x1="60" x2="600" y1="([\d.]+)" y2="\1"[^>]*><title>' + re.escape(name), drift)
        assert line, name
        y = float(line[1])
        assert PLOT.top < y < PLOT.bottom  # on the axis, not on its edge
        box = labels[name]  # labelled next to its own line
        assert box.bottom <= y + 1 or box.top >= y - 1
        assert min(abs(box.bottom - y), abs(box.top - y)) < 12
    lines = {name: float(re.search(r'y1="([\d.]+)"[^>]*><title>' + re.escape(name), drift)[1])
             for name in ("moderate drift (PSI 0.1)", "major drift (PSI 0.25)")}
    assert lines["moderate drift (PSI 0.1)"] - lines["major drift (PSI 0.25)"] > 20  # apart, though PSI reaches 8


def assert_no_overlap(svg: str) -> int:
    boxes = label_boxes(svg)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (a, box_a, b, box_b)
    outside = [(text, box) for text, box in boxes if not box.inside(VIEW)]
    assert not outside
    return len(boxes)


def test_no_two_chart_labels_overlap(page: str) -> None:
    charts = svgs(page)
    assert len(charts) == 5
    assert sum(assert_no_overlap(svg) for svg in charts) > 60
    accuracy = charts[0]
    placed = [text for text, _ in label_boxes(accuracy)]
    assert {"drift starts", "canary on release 3", "stable on release 3"} <= set(placed)  # close, all shown
    ticks = [float(text[:-1]) for text in placed if text.endswith("%")]
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(ticks) >= 3 and len(steps) == 1  # evenly spaced as labelled: 97.5 % is not shown as "98%"
    halves = line_chart("a", {"x": [(0, 0.87), (10, 0.99)]}, x_label="h", y_label="share", y_format="%")
    assert [t for t, _ in label_boxes(halves) if t.endswith("%")] == ["87.5%", "90.0%", "92.5%", "95.0%", "97.5%"]


def test_crowded_markers_never_overlap_and_widths_follow_the_font() -> None:
    markers = [(10.0 + i * 0.5, f"marker number {i}") for i in range(12)] + [(99.5, "at the right edge")]
    svg = line_chart("crowded", {"a": [(0.0, 0.2), (100.0, 0.9)]}, x_label="hours", y_label="share",
                     markers=markers, hlines=[(0.5, "a threshold"), (0.52, "another threshold")])
    assert_no_overlap(svg)
    shown = {text for text, _ in label_boxes(svg)}
    assert {"at the right edge", "a threshold", "another threshold"} <= shown
    assert sum(text.startswith("marker number") for text in shown) == 12  # all fit, row by row
    assert "<title>marker number 11</title>" in svg  # each line keeps its label as a tooltip too
    assert text_width("0", 100) == pytest.approx(63.6 * 1.03) and text_width("i  i", 10) == pytest.approx(9.0022)
    assert FONT_PX["marker"] < FONT_PX["legend"]


def test_the_worse_candidate_says_it_is_worse_on_purpose(timeline: Timeline, page: str) -> None:
    rows = dict(summary_rows(timeline, SUMMARY))
    worse = rows["deliberately worse candidate"]
    assert worse.startswith("release 2: trained on flipped labels and published to canary on purpose")
    assert "refused by 1 canary device; canary rolled back" in worse
    published = next(e for e in timeline.events if e.kind == "publish" and e.version == "2")
    assert "the deliberately worse candidate" in describe_event(published, worse=2)
    assert "the deliberately worse candidate" in page
    html = worse_candidate_page("cand-worse0123", {"copied_from": "cand-77af", "version": "cand-worse0123"})
    assert "deliberately worse" in html and "flipped labels" in html and "Never promote it." in html
    assert "never went through the gate" in html and "cand-77af" in html
    assert re.findall(r'href="([^"]+)"', html) == ["manifest.json", "decision.json"]


def overview(tmp_path: Path, present: list[str], data_docs: bool = True, passed: bool = True) -> tuple[str, Path]:
    paths = Paths.at(tmp_path / "project")
    page_dir = paths.candidate
    for name in present:
        (page_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (page_dir / name).write_text("<html></html>")
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params = params.model_copy(update={"ingest": params.ingest.model_copy(update={"data_docs": data_docs})})
    links, missing = candidate_report_links(params, paths, page_dir, passed)
    html = render_overview({"version": "cand-1", "passed": passed, "rules": []}, {}, {}, [], links, missing)
    (page_dir / "index.html").write_text(html)
    return html, page_dir


def test_overview_links_only_reports_that_exist_and_names_the_rest(tmp_path: Path) -> None:
    html, page_dir = overview(tmp_path / "a", ["reports/drift.html", "decision.json", "manifest.json"],
                              data_docs=False)
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs == ["reports/drift.html", "decision.json", "manifest.json"]
    assert all((page_dir / href).is_file() for href in hrefs)
    base = "http://127.0.0.1:8000/console/reports/candidate/index.html"  # served by the hub's console
    assert all(urljoin(base, href).startswith("http://127.0.0.1:8000/console/reports/") for href in hrefs)
    reports = html[html.index("<h2>Reports</h2>"):]
    assert "Evidently: candidate quality: <span class=\"muted\">not built; run <code>edgeloop stage evaluate" in reports
    assert "Great Expectations Data Docs (ingest): <span class=\"muted\">not built; this project turns Data Docs " \
           "off (ingest.data_docs: false in params.yaml)" in reports
    assert "<code>edgeloop stage ingest --root " in reports and "champion" not in reports  # no champion yet

    # Data Docs built (one folder up, as ingest writes them) and a blocked candidate: links resolve from the page
    docs = tmp_path / "b" / "project" / "data" / "reports"
    for name in ("ingest/data_docs/index.html", "evaluate/drift.html", "evaluate/candidate_quality.html",
                 "evaluate/champion_quality.html"):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text("<html></html>")
    html, page_dir = overview(tmp_path / "b", ["decision.json"], passed=False)
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert DATA_DOCS in hrefs and "../reports/evaluate/champion_quality.html" in hrefs and len(hrefs) == 5
    assert all((page_dir / href).resolve().is_file() for href in hrefs) and "not built" not in html


def test_existing_links_refuses_absolute_hrefs(tmp_path: Path) -> None:
    for href in ("/etc/passwd", "https://example.org/x.html", "C:/x.html"):
        with pytest.raises(ValueError, match="relative"):
            existing_links(tmp_path, [ReportLink("x", href, "build it")])
