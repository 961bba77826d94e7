"""The monitor's triggers as pure functions: each trigger fires on its own condition and stays quiet (or
unknown) otherwise, the last training comes from the log before the model file, and the cooldown turns
a storm of drifting observations into exactly one fired decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeloop.testkit.project import override, repo_params_raw
from flows.loop.triggers import DeviceState, Observations, decide, last_training, parse_time
from flows.params import parse_params

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def monitor_params(**changes):
    changes = {"min_fresh_rows": 0} | changes  # tests of one trigger; the fresh-data wait has its own test
    raw = override(repo_params_raw(), {f"loop.monitor.{k}": v for k, v in changes.items()})
    return parse_params(raw).loop.monitor


def fleet(drifting: int, calm: int, inactive_drifting: int = 0) -> tuple[DeviceState, ...]:
    devices = [DeviceState(f"d{i}", "stable", True, 0.9) for i in range(drifting)]
    devices += [DeviceState(f"c{i}", "stable", True, 0.01) for i in range(calm)]
    devices += [DeviceState(f"x{i}", "stable", False, 0.9) for i in range(inactive_drifting)]
    return tuple(devices)


def quiet_obs(**changes) -> Observations:
    """Nothing to fire on: fresh model, few rows, calm fleet, good accuracy."""
    base = {"devices": fleet(0, 4), "new_labelled_rows": 10, "accuracy": 0.95, "accuracy_rows": 1000,
            "model_time": NOW - timedelta(hours=1)}
    return Observations(**(base | changes))


def by_name(decision):
    return {t.name: t for t in decision.triggers}


def test_quiet_observations_fire_nothing():
    decision = decide(quiet_obs(), monitor_params(), NOW, None)
    assert not decision.fired and not decision.suppressed
    assert {t.name: t.state for t in decision.triggers} == {
        "scheduled": "quiet", "data_volume": "quiet", "fleet_drift": "quiet", "accuracy_drop": "quiet"}
    assert decision.summary == "no trigger fired"
    assert decision.last_training_source == "model file"


def test_scheduled_fires_once_a_nightly_slot_has_passed():
    params = monitor_params(nightly_cron="0 2 * * *")
    trained_yesterday = quiet_obs(model_time=datetime(2026, 11, 26, 23, 0, tzinfo=UTC))  # 02:00 today passed
    trained_today = quiet_obs(model_time=datetime(2026, 11, 27, 3, 0, tzinfo=UTC))  # next slot tomorrow
    fired = by_name(decide(trained_yesterday, params, NOW, None))["scheduled"]
    assert fired.state == "fired" and fired.value == "2026-11-27T02:00:00+00:00"
    waiting = by_name(decide(trained_today, params, NOW, None))["scheduled"]
    assert waiting.state == "quiet" and waiting.value == "2026-11-28T02:00:00+00:00"
    never = decide(quiet_obs(model_time=None), params, NOW, None)
    assert by_name(never)["scheduled"].state == "fired" and never.last_training_source == "never"


def test_bad_cron_is_unknown_not_a_crash():
    result = by_name(decide(quiet_obs(), monitor_params(nightly_cron="every night"), NOW, None))["scheduled"]
    assert result.state == "unknown" and "not usable" in result.detail


@pytest.mark.parametrize(("rows", "state"), [(19_999, "quiet"), (20_000, "fired"), (None, "unknown")])
def test_data_volume_threshold(rows, state):
    decision = decide(quiet_obs(new_labelled_rows=rows), monitor_params(min_new_rows=20_000), NOW, None)
    assert by_name(decision)["data_volume"].state == state
    assert decision.fired is (state == "fired")


def test_fleet_drift_counts_only_active_devices():
    params = monitor_params(drift_psi=0.25, drift_device_share=0.3)
    one_of_four = by_name(decide(quiet_obs(devices=fleet(1, 3, inactive_drifting=5)), params, NOW, None))
    assert one_of_four["fleet_drift"].state == "quiet" and one_of_four["fleet_drift"].value == 0.25
    two_of_five = by_name(decide(quiet_obs(devices=fleet(2, 3)), params, NOW, None))["fleet_drift"]
    assert two_of_five.state == "fired" and two_of_five.value == 0.4
    assert two_of_five.extra["drifting"] == ["d0", "d1"] and two_of_five.extra["active"] == 5
    at_threshold = DeviceState("edge", "stable", True, 0.25)  # "above" the threshold: equal is not drift
    assert by_name(decide(quiet_obs(devices=(at_threshold,)), params, NOW, None))["fleet_drift"].value == 0.0


def test_fleet_unknown_when_hub_unreachable_or_nobody_active():
    unreachable = decide(quiet_obs(devices=None, fleet_error="hub at http://x unreachable", new_labelled_rows=10**6),
                         monitor_params(), NOW, None)
    drift = by_name(unreachable)["fleet_drift"]
    assert drift.state == "unknown" and "unreachable" in drift.detail
    assert unreachable.fired and unreachable.would_fire == ("data_volume",)  # the other triggers still work
    assert "unknown: fleet_drift" in unreachable.summary
    nobody = by_name(decide(quiet_obs(devices=fleet(0, 0, inactive_drifting=3)), monitor_params(), NOW, None))
    assert nobody["fleet_drift"].state == "unknown"


def test_accuracy_drop_needs_enough_rows_below_the_floor():
    params = monitor_params(accuracy_floor=0.85, min_rows_for_accuracy=200)
    low = by_name(decide(quiet_obs(accuracy=0.70, accuracy_rows=500), params, NOW, None))["accuracy_drop"]
    assert low.state == "fired" and low.value == 0.7
    few = by_name(decide(quiet_obs(accuracy=0.70, accuracy_rows=199), params, NOW, None))["accuracy_drop"]
    assert few.state == "quiet" and "too few" in few.detail
    none = by_name(decide(quiet_obs(accuracy=None, accuracy_note="no release repository yet"), params, NOW, None))
    assert none["accuracy_drop"].state == "unknown" and none["accuracy_drop"].detail == "no release repository yet"


def test_accuracy_drop_fires_on_a_relative_drop_only_when_the_whole_interval_is_below() -> None:
    params = monitor_params(accuracy_floor=0.85, accuracy_margin=0.02, min_rows_for_accuracy=200)
    seen = {"accuracy": 0.93, "accuracy_rows": 400, "accuracy_before": 0.98}
    sure = by_name(decide(quiet_obs(**seen, accuracy_interval=(0.91, 0.95)), params, NOW, None))["accuracy_drop"]
    assert sure.state == "fired" and "interval up to 0.950" in sure.detail and "0.980" in sure.detail
    # the same estimate with an interval reaching above 0.98 - 0.02: not sure enough
    unsure = by_name(decide(quiet_obs(**seen, accuracy_interval=(0.88, 0.965)), params, NOW, None))["accuracy_drop"]
    assert unsure.state == "quiet" and "or when its interval lies below 0.960" in unsure.detail
    # no margin configured: the floor alone decides, as before
    floor_only = monitor_params(accuracy_floor=0.85, accuracy_margin=None, min_rows_for_accuracy=200)
    plain = by_name(decide(quiet_obs(**seen, accuracy_interval=(0.91, 0.95)), floor_only, NOW, None))
    assert plain["accuracy_drop"].state == "quiet"
    # no release accuracy to compare with: nothing relative to judge
    blind = by_name(decide(quiet_obs(accuracy=0.93, accuracy_rows=400, accuracy_interval=(0.91, 0.95)), params,
                           NOW, None))["accuracy_drop"]
    assert blind.state == "quiet"


def test_last_training_prefers_the_log_over_the_model_file():
    logged = {"at": "2026-11-27T10:00:00+00:00", "fired": True}
    model = datetime(2026, 11, 20, tzinfo=UTC)
    assert last_training(logged, model) == (datetime(2026, 11, 27, 10, tzinfo=UTC), "loop log")
    assert last_training(None, model) == (model, "model file")
    assert last_training({"at": "garbage"}, None) == (None, "never")
    assert parse_time("2026-11-27T10:00:00") == datetime(2026, 11, 27, 10, tzinfo=UTC)  # naive means UTC


def test_cooldown_turns_a_drift_storm_into_one_retrain():
    params = monitor_params(cooldown_s=3600, interval_s=300)
    drifting = quiet_obs(devices=fleet(3, 1))
    last_fired = None
    fired_at = []
    for i in range(30):  # 30 monitor passes, 5 minutes apart: 2.5 hours of a drifting fleet
        now = NOW + timedelta(minutes=5 * i)
        decision = decide(drifting, params, now, last_fired)
        assert decision.would_fire == ("fleet_drift",)
        if decision.fired:
            fired_at.append(i)
            last_fired = {"at": now.isoformat(), "fired": True}
        elif i not in (0, 12, 24):
            assert decision.suppressed and "suppressed by cooldown" in decision.summary
            assert decision.observed()["fleet_drift"] == 0.75  # the values are still recorded
    assert fired_at == [0, 12, 24]  # one per cooldown hour, not one per pass
    within = [i for i in fired_at if i * 300 < 3600]
    assert within == [0]


def test_cooldown_left_counts_down_from_the_last_fired_decision():
    params = monitor_params(cooldown_s=600)
    last = {"at": (NOW - timedelta(seconds=200)).isoformat(), "fired": True}
    decision = decide(quiet_obs(new_labelled_rows=10**6), params, NOW, last)
    assert decision.suppressed and not decision.fired and decision.cooldown_left_s == pytest.approx(400)
    after = decide(quiet_obs(new_labelled_rows=10**6), params, NOW + timedelta(seconds=401), last)
    assert after.fired and after.cooldown_left_s == 0


def test_drift_waits_for_fresh_ground_truth_before_it_retrains() -> None:
    params = monitor_params(drift_psi=0.25, drift_device_share=0.3, min_fresh_rows=2000)
    waiting = decide(quiet_obs(devices=fleet(3, 1), new_labelled_rows=1999), params, NOW, None)
    assert not waiting.fired and by_name(waiting)["fleet_drift"].fired
    assert "waiting for fresh ground truth (1999 of 2000" in waiting.summary
    ready = decide(quiet_obs(devices=fleet(3, 1), new_labelled_rows=2000), params, NOW, None)
    assert ready.fired and ready.would_fire == ("fleet_drift",)
