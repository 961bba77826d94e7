"""edge.drift (PSI against manifest reference statistics; the window itself is edge.pending's, tested in
tests/test_edge_pending.py), edge.health (rolling accuracy, status, the
post-activation watch) and edge.metrics (Prometheus text format 0.0.4, checked with a strict parser)."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from edge.contracts.manifest import Manifest, ReferenceStats
from edge.contracts.schema import FeatureSpec
from edge.drift import EPSILON, DriftMonitor, psi
from edge.health import HealthMonitor, WatchRules, WatchWindow
from edge.metrics import CONTENT_TYPE, Registry
from edgeloop.testkit.releases import make_manifest, tiny_onnx

# --- drift ---------------------------------------------------------------------------------------------

EDGES = (-1.0, 0.0, 1.0)
PROPORTIONS = (0.1, 0.4, 0.3, 0.2)
MISSING = 0.05
BIN_VALUES = (-2.0, -0.5, 0.5, 2.0)  # one value inside each of the four bins


def _manifest(**reference: ReferenceStats) -> Manifest:
    refs = reference or {
        "a": ReferenceStats(EDGES, PROPORTIONS, MISSING),
        "b": ReferenceStats((0.0,), (0.5, 0.5), 0.0),
    }
    features = tuple(FeatureSpec(name, "float", None, None, "", True) for name in refs)
    return replace(make_manifest(tiny_onnx()), features=features, reference=refs)


def _reference_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    a_bins = rng.choice(4, size=n, p=PROPORTIONS)
    a = np.asarray(BIN_VALUES)[a_bins] + rng.uniform(-0.2, 0.2, n)
    a[rng.random(n) < MISSING] = np.nan
    b = rng.choice([-1.0, 1.0], size=n)
    return np.column_stack([a, b])


def test_no_score_until_the_window_holds_min_rows() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(_manifest(), window_rows=5000, min_rows=300)
    rows = _reference_rows(rng, 300)
    assert monitor.scores(rows[:299]) == {} and monitor.max_score(rows[:299]) is None
    assert set(monitor.scores(rows)) == {"a", "b"}
    assert DriftMonitor(_manifest(), window_rows=50).min_rows == 50  # default: min(1000, window)
    with pytest.raises(ValueError, match="min_rows"):
        DriftMonitor(_manifest(), window_rows=50, min_rows=51)


def test_psi_is_near_zero_on_reference_draws_and_large_when_shifted() -> None:
    rng = np.random.default_rng(0)
    monitor = DriftMonitor(_manifest(), window_rows=5000)
    reference = _reference_rows(rng, 5000)
    calm = monitor.scores(reference)
    assert set(calm) == {"a", "b"}
    assert all(0.0 <= v < 0.01 for v in calm.values()), calm
    assert {DriftMonitor.level(v) for v in calm.values()} == {"none"}

    shifted = _reference_rows(rng, 5000)
    shifted[:, 0] += 1.5
    drifted = monitor.scores(np.concatenate([reference, shifted]))  # only the last window_rows count
    assert drifted == monitor.scores(shifted)
    assert drifted["a"] > 0.25 and DriftMonitor.level(drifted["a"]) == "major"
    assert drifted["b"] < 0.01  # untouched feature stays calm


def test_psi_matches_a_hand_computed_value() -> None:
    monitor = DriftMonitor(_manifest(x=ReferenceStats((0.0,), (0.5, 0.5), 0.0)), window_rows=10, min_rows=1)
    rows = np.array([[-1.0], [0.0], [1.0], [1.0]])  # 0.0 sits on the edge: side="right" puts it in the upper bin
    # actual (0.25, 0.75, missing 0) vs expected (0.5, 0.5, 0): the empty missing bin adds exactly 0
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert monitor.scores(rows)["x"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.25 * math.log(3.0))
    assert psi([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_missing_values_are_one_more_bin() -> None:
    monitor = DriftMonitor(_manifest(x=ReferenceStats((0.0,), (0.5, 0.5), 0.2)), window_rows=10, min_rows=1)
    rows = np.array([[None], [math.nan], [-1.0], [1.0], [1.0]], dtype=np.float64)
    actual = [1 / 5, 2 / 5, 2 / 5]
    reference = [0.5 * 0.8, 0.5 * 0.8, 0.2]
    expected = sum((a - e) * math.log(a / e) for a, e in zip(actual, reference, strict=True))
    assert monitor.scores(rows)["x"] == pytest.approx(expected, rel=1e-12)

    never_missing = DriftMonitor(_manifest(x=ReferenceStats((0.0,), (0.5, 0.5), 0.0)), window_rows=4, min_rows=1)
    # every value missing where training had none: epsilon-clipped
    a, e = (EPSILON, EPSILON, 1.0), (0.5, 0.5, EPSILON)
    clipped = sum((x - y) * math.log(x / y) for x, y in zip(a, e, strict=True))
    assert never_missing.scores(np.full((4, 1), np.nan))["x"] == pytest.approx(clipped, rel=1e-12)
    assert math.isfinite(clipped) and clipped > 5


def test_feature_with_empty_reference() -> None:
    monitor = DriftMonitor(_manifest(x=ReferenceStats((), (), 1.0)), window_rows=100, min_rows=1)
    assert monitor.scores(np.full((50, 1), np.nan))["x"] == 0.0  # still all missing, as in training
    half = np.concatenate([np.full((50, 1), np.nan), np.ones((50, 1))])
    assert monitor.scores(half)["x"] > 1.0  # half the rows now carry a value training never saw


def test_rows_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rows: expected shape \[rows, 2\]"):
        DriftMonitor(_manifest()).scores(np.zeros((3, 3)))


@pytest.mark.parametrize(("score", "level"), [
    (0.0, "none"), (0.0999, "none"), (0.1, "moderate"), (0.2499, "moderate"), (0.25, "major"), (3.0, "major"),
])
def test_levels(score: float, level: str) -> None:
    assert DriftMonitor.level(score) == level


# --- health --------------------------------------------------------------------------------------------

RULES = WatchRules(accuracy_floor=0.8, watch_window_s=100.0, watch_min_feedback=5, max_model_errors=2)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rolling_accuracy_and_counters() -> None:
    health = HealthMonitor(window=4)
    assert health.rolling_accuracy() is None
    for correct in (True, True, False, False, False):
        health.feedback(correct)
    assert health.rolling_accuracy() == 0.25  # the last four: T F F F
    health.model_ok()
    health.input_error()
    assert health.counters() == {"model_errors": 0, "input_errors": 1, "feedback": 5, "feedback_correct": 2}


def test_watch_rolls_back_below_floor_only_with_enough_feedback_and_inside_the_window() -> None:
    watch = WatchWindow(RULES, activated_at=1000.0, version="v2")
    for _ in range(4):
        watch.feedback(False, "v2")
    assert watch.rollback_reason(1050.0) is None  # 4 < watch_min_feedback
    watch.feedback(True, "v1")  # about the previous model's prediction: not counted
    assert watch.counts()["feedback"] == 4
    watch.feedback(True, "v2")
    reason = watch.rollback_reason(1050.0)
    assert reason is not None and "accuracy 0.200 on 5 feedback rows" in reason and "0.8" in reason
    assert watch.rollback_reason(999.0) is None  # before activation
    assert watch.rollback_reason(1100.5) is None  # window over: the model was kept
    for _ in range(20):
        watch.feedback(True)
    assert watch.rollback_reason(1050.0) is None  # 21/25 = 0.84 is above the floor


def test_watch_rolls_back_on_model_errors() -> None:
    clock = Clock(1010.0)
    health = HealthMonitor(clock=clock)
    assert health.rollback_reason() is None  # no watch yet
    health.start_watch(RULES, activated_at=1000.0, version="v2")
    health.model_error()
    health.model_error()
    assert health.rollback_reason() is None  # 2 is not more than max_model_errors
    health.model_error()
    reason = health.rollback_reason()
    assert reason is not None and reason.startswith("3 model errors since activation")
    clock.now = 1200.0
    assert health.rollback_reason() is None
    health.stop_watch()
    assert health.watch is None


def test_watch_rules_validate_and_map_from_a_policy() -> None:
    policy = SimpleNamespace(accuracy_floor=0.7, watch_window_s=60.0, watch_min_feedback=10, max_model_errors=0,
                             shadow_margin=0.02)
    assert WatchRules.from_policy(policy) == WatchRules(0.7, 60.0, 10, 0)
    with pytest.raises(ValueError, match="accuracy_floor"):
        WatchRules(1.5, 60.0, 10, 0)
    with pytest.raises(ValueError, match="watch_min_feedback"):
        WatchRules(0.5, 60.0, 0, 0)


def test_status_words() -> None:
    clock = Clock(1000.0)
    health = HealthMonitor(window=10, error_memory_s=60.0, clock=clock)
    assert health.status(model_loaded=False) == "error"
    assert health.status() == "ok"
    health.model_error()
    assert health.status() == "error"  # the last model call failed
    health.model_ok()
    assert health.status() == "degraded"  # recovered, but an error within error_memory_s
    clock.now = 1061.0
    assert health.status() == "ok"
    assert health.status(drift_level="major") == "degraded"
    assert health.status(drift_level="moderate") == "ok"
    for _ in range(5):
        health.feedback(False)
    assert health.status(accuracy_floor=0.8, min_feedback=5) == "degraded"
    assert health.status(accuracy_floor=0.8, min_feedback=6) == "ok"


# --- metrics -------------------------------------------------------------------------------------------

_HELP = re.compile(r"^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$")
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped)$")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? '
                     r"(NaN|[+-]Inf|-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, dict[str, object]]:
    """Strict parser for what edge.metrics emits: HELP then TYPE then samples, one block per family."""
    assert text.endswith("\n") and "\n\n" not in text
    families: dict[str, dict[str, object]] = {}
    current: str | None = None
    lines = text[:-1].split("\n")
    i = 0
    while i < len(lines):
        help_match = _HELP.match(lines[i])
        assert help_match, f"expected a HELP line, got {lines[i]!r}"
        name = help_match.group(1)
        assert name not in families, f"{name} appears twice"
        type_match = _TYPE.match(lines[i + 1])
        assert type_match and type_match.group(1) == name, lines[i + 1]
        samples: dict[tuple[tuple[str, str], ...], float] = {}
        families[name] = {"help": help_match.group(2), "type": type_match.group(2), "samples": samples}
        current, i = name, i + 2
        while i < len(lines) and not lines[i].startswith("#"):
            sample = _SAMPLE.match(lines[i])
            assert sample and sample.group(1) == current, f"bad sample line {lines[i]!r}"
            labels = tuple((k, v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\"))
                           for k, v in _PAIR.findall(sample.group(2) or ""))
            samples[labels] = float(sample.group(3).replace("Inf", "inf"))
            i += 1
    return families


def test_metrics_render_parses_and_escapes() -> None:
    registry = Registry()
    requests = registry.counter("requests_total", "Requests answered.\nBy route \\ code", ("route", "code"))
    drift = registry.gauge("drift_psi", "PSI per feature", ("feature",))
    plain = registry.counter("edgeloop_runner_predictions_total", "Predictions made")
    assert plain.name == "edgeloop_runner_predictions_total"  # the prefix is not doubled
    accuracy = registry.gauge("rolling_accuracy", "Rolling accuracy")
    nasty = 'a"b\\c\nd'
    requests.inc("/predict", 200)
    requests.inc("/predict", 200, amount=2)
    requests.labels(nasty, "500").inc()
    drift.set(0.125, "temp")
    drift.set(math.inf, "load")
    drift.set(math.nan, "speed")
    refreshed: list[int] = []

    def refresh() -> None:
        refreshed.append(1)
        accuracy.set(0.5)

    registry.on_render(refresh)
    text = registry.render()
    families = parse_exposition(text)
    assert list(families) == ["edgeloop_runner_requests_total", "edgeloop_runner_drift_psi",
                              "edgeloop_runner_predictions_total", "edgeloop_runner_rolling_accuracy"]
    assert families["edgeloop_runner_requests_total"]["help"] == "Requests answered.\\nBy route \\\\ code"
    assert families["edgeloop_runner_requests_total"]["type"] == "counter"
    assert families["edgeloop_runner_requests_total"]["samples"] == {
        (("route", "/predict"), ("code", "200")): 3.0, (("route", nasty), ("code", "500")): 1.0}
    psi_samples = families["edgeloop_runner_drift_psi"]["samples"]
    assert isinstance(psi_samples, dict) and psi_samples[(("feature", "temp"),)] == 0.125
    assert psi_samples[(("feature", "load"),)] == math.inf and math.isnan(psi_samples[(("feature", "speed"),)])
    assert families["edgeloop_runner_predictions_total"]["samples"] == {(): 0.0}  # unlabelled: starts at 0
    assert families["edgeloop_runner_rolling_accuracy"]["samples"] == {(): 0.5} and refreshed == [1]
    assert 'route="a\\"b\\\\c\\nd"' in text
    assert "edgeloop_runner_predictions_total 0\n" in text
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_metrics_refuse_misuse() -> None:
    registry = Registry()
    counter = registry.counter("events_total", "Events", ("kind",))
    with pytest.raises(ValueError, match="must end in _total"):
        registry.counter("events", "no suffix")
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("events_total", "again")
    with pytest.raises(ValueError, match="not a valid metric name"):
        registry.gauge("bad-name", "dash")
    with pytest.raises(ValueError, match="not a valid label name"):
        registry.gauge("g", "g", ("bad label",))
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc("x", amount=-1)
    with pytest.raises(ValueError, match=r"expected label values for \['kind'\]"):
        counter.inc()
    assert Registry().render() == ""


def test_counter_is_exact_under_threads() -> None:
    registry = Registry()
    counter = registry.counter("hits_total", "Hits", ("thread",))
    child = registry.counter("all_total", "All").labels()

    def worker(k: int) -> None:
        for _ in range(5000):
            counter.inc(k % 2)
            child.inc()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert counter.value(0) == counter.value(1) == 15_000
    samples = parse_exposition(registry.render())["edgeloop_runner_all_total"]["samples"]
    assert samples == {(): 30_000.0}
