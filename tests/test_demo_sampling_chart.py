"""The demo report's "sampling rate per group" chart (issue 15, item 5).

From a timeline built by hand (canary's runners raised to a 50% random rate mid-run, stable kept at 2%):
the chart sits after accuracy and drift on the same time axis, names both groups in words (canary before
stable, the policy's rate and the rate used), carries every rate as a point whose tooltip reads it, keeps
its labels apart and inside the chart; the rates pool per time bucket and survive timeline.json; a
timeline from before rates were recorded draws no empty chart. The tallies the demo reads come from a
real runner (built, not started: no hub needed). No servers: fast lane.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.config import load_config
from edge.contracts.manifest import Manifest
from edge.contracts.release_layout import MANIFEST_FILE
from edge.runner import Runner
from edge.state import StateDir
from edgeloop.demo.charts import VIEW, label_boxes
from edgeloop.demo.report import render
from edgeloop.demo.run import sampling_rates
from edgeloop.demo.timeline import Rate, Sample, Timeline, sampling_by_group
from edgeloop.testkit.runner_world import runner_config, site_data, write_candidate

TICK_H = 5.0  # simulated hours per tick
GROUPS = {"dev-000": "canary", "dev-001": "stable"}
NAMES = ["canary: policy rate", "canary: used rate", "stable: policy rate", "stable: used rate"]


def rates_timeline(ticks: int = 30) -> Timeline:
    """Canary at 2% until tick 10, then 50%; stable at 2% throughout; 400 labels per group per tick, of which
    the random rule uploaded a share near the rate."""
    timeline = Timeline()
    for tick in range(1, ticks + 1):
        t_h = tick * TICK_H
        for device, group in GROUPS.items():
            timeline.add_sample(Sample(t_h, tick * 2.0, device, group, "1", 0.97, 0.05 if tick < 12 else 0.6,
                                       tick * 400, tick * 40_000, tick * 2_000, 388, 400))
        canary = 0.5 if tick > 10 else 0.02
        timeline.add_rates([Rate(t_h, tick * 2.0, "canary", canary, 400, int(400 * canary * 0.9)),
                            Rate(t_h, tick * 2.0, "stable", 0.02, 400, 6)])
    timeline.event(16 * TICK_H, "drift", None, "sensor_offset drift injected into every machine")
    return timeline


def chart(page: str, title: str) -> str:
    found = re.search(r'<svg[^>]*aria-label="' + re.escape(title) + r'".*?</svg>', page, re.S)
    assert found, title
    return found[0]


@pytest.fixture(scope="module")
def page() -> str:
    return render(rates_timeline(), "demo", {})


def test_the_chart_shows_both_groups_policy_and_used_rates_in_order(page: str) -> None:
    svg = chart(page, "Sampling rate per group")
    legend = [text for text, _ in label_boxes(svg) if text in NAMES]
    assert legend == NAMES  # canary first, then stable; words, not keys
    tips = dict(re.findall(r"<title>([^<]+), hour ([\d.,]+): [\d.]+%</title>", svg))
    assert set(tips) == set(NAMES)
    assert f"<title>canary: policy rate, hour {5 * TICK_H:,.1f}: 2.00%</title>" in svg
    assert f"<title>canary: policy rate, hour {20 * TICK_H:,.1f}: 50.00%</title>" in svg  # raised mid-run
    assert f"<title>canary: used rate, hour {20 * TICK_H:,.1f}: 45.00%</title>" in svg  # 180 of 400 labels
    assert f"<title>stable: used rate, hour {20 * TICK_H:,.1f}: 1.50%</title>" in svg  # 6 of 400
    assert svg.count("<circle") == 4 * 30
    assert svg.count('stroke-dasharray="6 3"') == 2 * 2  # the policy lines and their legend swatches
    boxes = label_boxes(svg)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (a, b)
    assert all(box.inside(VIEW) for _, box in boxes)
    assert "drift starts" in [text for text, _ in boxes]


def test_the_chart_shares_the_time_axis_of_accuracy_and_drift_and_follows_them(page: str) -> None:
    def x_ticks(svg: str) -> list[tuple[str, str]]:
        return re.findall(r'<text x="([\d.]+)" y="256"[^>]*class="tick">([^<]+)</text>', svg)

    accuracy, drift = chart(page, "Accuracy over time per group"), chart(page, "Drift score over time per group")
    sampling = chart(page, "Sampling rate per group")
    assert x_ticks(sampling) == x_ticks(accuracy) == x_ticks(drift) and len(x_ticks(sampling)) >= 5
    assert page.index(drift) < page.index(sampling) < page.index(chart(page, "Devices per release"))


def test_rates_pool_per_bucket_and_round_trip_through_json() -> None:
    timeline = rates_timeline(4)
    lines = sampling_by_group(timeline.rates, 2 * TICK_H)
    assert [round(y, 4) for _, y in lines["stable"]["used"]] == [0.015, 0.015]  # 12 of 800 per bucket
    assert [x for x, _ in lines["canary"]["configured"]] == pytest.approx([2 * TICK_H, 4 * TICK_H])
    again = Timeline.from_json(timeline.to_json())
    assert again.rates == timeline.rates
    old = Timeline.from_json('{"samples": [], "events": []}')  # a timeline.json from before rates
    assert old.rates == []
    assert "Sampling rate per group" not in render(Timeline(), "demo", {})  # no rates: no empty chart


def test_the_demo_reads_a_runners_policy_rate_and_tallies(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flows.stages.export import to_onnx_bytes

    x, y = site_data(600, 3)  # a small model: the rates are the point, not its accuracy
    model = to_onnx_bytes(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y), x.shape[1], 17, {})
    candidate = write_candidate(tmp_path / "candidate", 1, model=model, reference_rows=x)
    manifest = Manifest.from_json((candidate / MANIFEST_FILE).read_bytes())
    (candidate / MANIFEST_FILE).write_text(replace(manifest, version="1").to_json())
    config = load_config(runner_config(tmp_path / "device", "http://127.0.0.1:9", "t" * 32, b"{}",
                                       upload={"random_rate": 0.25}), environ={})
    state = StateDir(config.state_dir)
    state.install(candidate)
    state.activate("1")
    runner = Runner(config)  # built, not started: no loop competes, no hub needed
    try:
        x, _ = site_data(120, 7)
        seen: dict[str, dict[str, int]] = {}
        rows = [[None if np.isnan(v) else float(v) for v in row] for row in x]
        for row in rows:
            prediction = runner.predict_one(row)
            runner.feedback(prediction.event_id, prediction.label)  # right: only the random rule can pick it
        first = sampling_rates({"dev-000": (runner, "canary")}, seen, 1.0, 0.5)
        assert [(r.group, r.configured, r.labels) for r in first] == [("canary", 0.25, 120)]
        assert first[0].random == runner.truth.tallies()["random"] and 12 <= first[0].random <= 50
        runner.truth.policy = replace(runner.truth.policy, random_rate=0.5)  # as a signed runner policy does
        second = sampling_rates({"dev-000": (runner, "canary")}, seen, 2.0, 1.0)
        assert [(r.configured, r.labels, r.random) for r in second] == [(0.5, 0, 0)]  # the change since the last
    finally:
        runner.stop()
