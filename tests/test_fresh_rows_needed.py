"""The fresh-row requirement the gate sets (loop.monitor.min_fresh_rows: auto): a bigger effect needs fewer rows,
rows count by their IPW effective number, the floor and cap bound it, a number in params still means raw rows,
and the monitor's decision says how many rows it has, how many the gate needs and why."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edgeloop.testkit.project import override, repo_params_raw
from flows.loop.fresh_rows import Z95, FreshRule, effective_rows, fresh_rows_needed
from flows.loop.triggers import DeviceState, Observations, decide, fresh_requirement
from flows.params import ParamsError, parse_params

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RULE = FreshRule(holdout_fraction=0.2, champion_tolerance=0.01, metric="f1_macro")


def monitor(**changes):
    return parse_params(override(repo_params_raw(), {f"loop.monitor.{k}": v for k, v in changes.items()})).loop.monitor


def drifting(**changes) -> Observations:
    """Three of four devices drift; the fleet's estimated accuracy fell from 0.97 to 0.90."""
    devices = tuple(DeviceState(f"d{i}", "stable", True, 0.9 if i < 3 else 0.01) for i in range(4))
    base = {"devices": devices, "new_labelled_rows": 3000, "accuracy": 0.90, "accuracy_rows": 1000,
            "accuracy_before": 0.97, "fresh_effective_rows": 400.0, "model_time": NOW - timedelta(hours=1)}
    return Observations(**(base | changes))


def test_the_formula_and_a_bigger_effect_needs_fewer_rows() -> None:
    need = fresh_rows_needed(RULE, error_rate=0.1, drop=0.05)
    holdout = math.ceil(2 * Z95**2 * 0.1 * 0.9 / 0.05**2)
    assert need.holdout_rows == holdout == 277 and need.rows == math.ceil(holdout / 0.2) == 1385
    assert need.effect == 0.05 and need.bounded_by is None
    rows = [fresh_rows_needed(RULE, 0.1, drop).rows for drop in (0.0, 0.02, 0.04, 0.08, 0.16)]
    assert rows == sorted(rows, reverse=True) and rows[0] > 20 * rows[-1]
    # no drop (or a rise) is judged at the champion tolerance; a larger holdout share needs fewer fresh rows
    assert fresh_rows_needed(RULE, 0.1, None).effect == fresh_rows_needed(RULE, 0.1, -0.3).effect == 0.01
    wide = FreshRule(holdout_fraction=0.4, champion_tolerance=0.01)
    assert fresh_rows_needed(wide, 0.1, 0.05).rows == math.ceil(holdout / 0.4)
    # a noisier (less accurate) fleet needs more rows, up to e = 0.5
    assert fresh_rows_needed(RULE, 0.02, 0.05).rows < fresh_rows_needed(RULE, 0.2, 0.05).rows
    assert fresh_rows_needed(RULE, 0.5, 0.05).rows == fresh_rows_needed(RULE, 0.9, 0.05).rows


def test_floor_and_cap_bound_the_requirement() -> None:
    low = fresh_rows_needed(RULE, 0.1, drop=0.5, floor=800, cap=20000)
    assert low.rows == 800 and low.bounded_by == "floor" and "raised to the floor" in low.text(10)
    high = fresh_rows_needed(RULE, 0.1, drop=None, floor=800, cap=5000)
    assert high.rows == 5000 and high.bounded_by == "cap" and "held at the cap" in high.text(10)
    zero = FreshRule(champion_tolerance=0.0)
    assert fresh_rows_needed(zero, 0.1, None, cap=7000).rows == 7000
    with pytest.raises(ValueError, match="needs a cap"):
        fresh_rows_needed(zero, 0.1, None)


def test_effective_rows_count_ipw_rows_by_kish() -> None:
    assert effective_rows(500) == 500.0  # rows without p weigh 1
    assert effective_rows(300, np.ones(300)) == pytest.approx(300.0)
    # 1,000 mistakes (p = 1) and 200 random rows (p = 0.02): about the random rows' worth
    p = np.r_[np.ones(1000), np.full(200, 0.02)]
    w = 1 / p
    assert effective_rows(1200, p) == pytest.approx(w.sum() ** 2 / (w**2).sum()) == pytest.approx(241.5, abs=0.1)
    assert effective_rows(1200, p) < 0.25 * 1200
    # a missing or impossible p weighs 1; rows beyond the edge rows (simulated, own data) weigh 1
    assert effective_rows(3, np.array([np.nan, 1.7, 1.0])) == pytest.approx(3.0)
    assert effective_rows(10, np.array([0.5])) == pytest.approx(11**2 / 13)
    assert effective_rows(0) == 0.0


def test_auto_is_the_default_and_a_number_still_counts_raw_rows() -> None:
    default = monitor()
    assert default.min_fresh_rows == "auto" and default.fresh_rows_floor <= default.fresh_rows_cap
    fixed = fresh_requirement(drifting(), monitor(min_fresh_rows=2500))
    assert fixed == {"mode": "fixed", "have": 3000, "needed": 2500,
                     "text": "3000 of 2500 labelled rows since the last training"}
    auto = fresh_requirement(drifting(), default)
    assert auto["mode"] == "auto" and auto["have"] == 400.0 and auto["raw"] == 3000  # effective, not raw
    expected = fresh_rows_needed(RULE, 0.10, 0.07, default.fresh_rows_floor, default.fresh_rows_cap)
    assert auto["needed"] == expected.rows and auto["effect"] == pytest.approx(0.07)
    # without an effective count (a landing zone of plain rows) the raw count stands
    assert fresh_requirement(drifting(fresh_effective_rows=None), default)["have"] == 3000.0
    # without estimates the error rate comes from the accuracy floor, judged at the tolerance
    blind = fresh_requirement(drifting(accuracy=None, accuracy_before=None), default)
    assert blind["error_rate"] == pytest.approx(1 - default.accuracy_floor) and blind["effect"] == 0.01


@pytest.mark.parametrize("value, message", [
    (-1, "expected auto or a whole number >= 0, not -1"),
    ("often", "expected auto or a whole number >= 0, not 'often'"),
    (2.5, "expected auto or a whole number >= 0, not 2.5"),
    (True, "expected auto or a whole number >= 0, not True"),
])
def test_bad_min_fresh_rows_is_named(value, message) -> None:
    with pytest.raises(ParamsError, match=re.escape(f"loop.monitor.min_fresh_rows: {message}")):
        monitor(min_fresh_rows=value)
    with pytest.raises(ParamsError, match="fresh_rows_floor is above fresh_rows_cap"):
        monitor(fresh_rows_floor=30000, fresh_rows_cap=20000)


def test_the_decision_says_why_it_waits_and_fires_once_the_gate_can_judge() -> None:
    params = monitor(min_fresh_rows="auto", cooldown_s=0)
    waiting = decide(drifting(), params, NOW, None)
    need = fresh_requirement(drifting(), params)
    assert not waiting.fired and waiting.would_fire == ()
    assert "fleet_drift seen, waiting for fresh ground truth (fresh rows 400 of " in waiting.summary
    assert f"of {need['needed']:,} needed: the gate needs +-0.070 on f1_macro" in waiting.summary
    assert "effect = the accuracy drop" in waiting.summary
    logged = waiting.observed()["fresh_rows"]
    assert logged["needed"] == need["needed"] and logged["have"] == 400.0 and logged["text"] in waiting.summary
    assert waiting.as_dict()["fresh_rows"] == logged

    ready = decide(drifting(fresh_effective_rows=float(need["needed"])), params, NOW, None)
    assert ready.fired and ready.would_fire == ("fleet_drift",)
    # a smaller drop needs more fresh rows: the same count no longer suffices
    subtle = decide(drifting(fresh_effective_rows=float(need["needed"]), accuracy=0.95), params, NOW, None)
    assert not subtle.fired and subtle.observed()["fresh_rows"]["needed"] > need["needed"]
