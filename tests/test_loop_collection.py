"""Adaptive collection decisions (flows.loop.collection.plan_collection) on constructed fleet views."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest

from flows.loop.collection import (
    ChannelState,
    CurrentRaise,
    DeviceDecision,
    DeviceObservation,
    expected_bytes,
    merge_overrides,
    plan_collection,
)
from flows.params import CollectionParams, MonitorParams, load_params

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MONITOR = MonitorParams(interval_s=300, cooldown_s=7200, nightly_cron="0 2 * * *", min_new_rows=20000,
                        drift_psi=0.25, drift_device_share=0.3, accuracy_floor=0.85, min_rows_for_accuracy=200,
                        min_fresh_rows=2000)
PARAMS = CollectionParams(enabled=True, base_rate=0.02, raised_rate=0.5, device_daily_bytes=50_000_000,
                          fleet_daily_bytes=500_000_000, drift_psi=0.25)  # most tests raise by PSI


def device(name: str = "dev-1", channel: str = "canary", psi: float | None = 0.05, **kw: object
           ) -> DeviceObservation:
    values: dict[str, object] = {"active": True, "model_version": "3", "labelled_per_day": 1440.0,
                                 "kept_per_day": 40.0, "bytes_per_row": 200.0, "accuracy": 0.97,
                                 "accuracy_rows": 1000, "accuracy_before": 0.975}
    values.update(kw)
    return DeviceObservation(name, channel, max_psi=psi, **values)  # type: ignore[arg-type]


def test_the_projects_params_carry_the_collection_section() -> None:
    params = load_params("params.yaml").loop.collection
    assert params.enabled and 0 < params.base_rate < params.raised_rate <= 1
    assert params.device_daily_bytes <= params.fleet_daily_bytes


def test_a_quiet_fleet_changes_nothing() -> None:
    plan = plan_collection([device("a"), device("b", "stable")], {}, {}, PARAMS, MONITOR)
    assert plan.changes == {}
    assert [d.state for d in plan.decisions] == ["normal", "normal"]
    assert plan.summary() == "collection: no change"
    # expected bytes at the base rate: 200 B x (40 + 0.02 x 1400)
    assert plan.decisions[0].expected_bytes == pytest.approx(200 * (40 + 0.02 * 1400))


def test_psi_raises_nothing_unless_collection_drift_psi_is_set() -> None:
    default = load_params("params.yaml").loop.collection
    assert default.drift_psi is None  # the default: why in docs/loop.md#adaptive-collection
    plan = plan_collection([device("a", psi=3.8)], {}, {}, PARAMS.model_copy(update={"drift_psi": None}), MONITOR)
    assert plan.decisions[0].state == "normal" and plan.changes == {}


def test_a_drop_in_the_devices_own_rolling_accuracy_raises_it_before_the_uploads_show_it() -> None:
    few_uploads = {"accuracy": None, "accuracy_rows": 0, "accuracy_before": 0.98}
    dropped = device("a", rolling_accuracy=0.90, rolling_labels=300, **few_uploads)
    close = device("b", rolling_accuracy=0.955, rolling_labels=300, **few_uploads)  # within the margin's reach
    too_few = device("c", rolling_accuracy=0.50, rolling_labels=150, **few_uploads)  # < min_rows_for_accuracy
    plan = plan_collection([dropped, close, too_few], {}, {}, PARAMS, MONITOR)
    states = {d.device_id: d for d in plan.decisions}
    assert states["a"].state == "raised" and "on its last 300 labels" in states["a"].reason
    assert states["b"].state == "normal" and states["c"].state == "normal"
    assert states["a"].observed["rolling_accuracy"] == 0.90


def test_drift_raises_the_device_to_the_raised_rate() -> None:
    plan = plan_collection([device("a", psi=0.6), device("b")], {}, {}, PARAMS, MONITOR)
    a, b = plan.decisions
    assert (a.state, a.rate, a.previous) == ("raised", 0.5, None)
    assert "drifts (largest PSI 0.6 >= 0.25)" in a.reason
    assert b.state == "normal" and not b.changed
    assert plan.changes == {"canary": {"a": 0.5}}
    assert a.observed["psi"] == 0.6 and a.expected_bytes == pytest.approx(200 * (40 + 0.5 * 1400))


def test_an_accuracy_drop_raises_without_drift() -> None:
    below_floor = device("a", accuracy=0.80)
    dropped = device("b", accuracy=0.93, accuracy_before=0.975)
    too_few_rows = device("c", accuracy=0.60, accuracy_rows=50)
    within_margin = device("d", accuracy=0.955, accuracy_before=0.975)
    plan = plan_collection([below_floor, dropped, too_few_rows, within_margin], {}, {}, PARAMS, MONITOR)
    states = {d.device_id: d for d in plan.decisions}
    assert states["a"].state == "raised" and "below the floor 0.85" in states["a"].reason
    assert states["b"].state == "raised" and "dropped from 0.975" in states["b"].reason
    assert states["c"].state == "normal" and states["d"].state == "normal"


def test_the_device_budget_caps_the_raised_rate() -> None:
    # 10,000 labelled rows a day, 1,000 of them kept anyway, 1 kB a row, 2 MB a day: (2e6 - 1e6) / (9,000 x 1e3)
    params = PARAMS.model_copy(update={"device_daily_bytes": 2_000_000})
    busy = device("a", psi=1.0, labelled_per_day=10_000.0, kept_per_day=1000.0, bytes_per_row=1000.0)
    plan = plan_collection([busy], {}, {}, params, MONITOR)
    decision = plan.decisions[0]
    assert decision.state == "raised"
    assert decision.rate == pytest.approx(1 / 9, abs=1e-4) and decision.rate <= 1 / 9
    assert decision.expected_bytes is not None and decision.expected_bytes <= 2_000_000
    assert "device budget of 2,000,000 bytes/day allows" in decision.reason


def test_no_room_in_the_device_budget_is_no_raise() -> None:
    params = PARAMS.model_copy(update={"device_daily_bytes": 100_000})  # the kept rows alone take 1 MB
    busy = device("a", psi=1.0, labelled_per_day=10_000.0, kept_per_day=1000.0, bytes_per_row=1000.0)
    decision = plan_collection([busy], {}, {}, params, MONITOR).decisions[0]
    assert decision.state == "normal" and decision.rate is None
    assert "leaves no room above the base rate" in decision.reason


def test_a_device_with_no_landed_rows_is_not_raised_blindly() -> None:
    decision = plan_collection([device("a", psi=2.0, labelled_per_day=None)], {}, {}, PARAMS, MONITOR).decisions[0]
    assert decision.state == "normal" and not decision.changed
    assert "no landed rows to size its byte budget on" in decision.reason


def test_the_fleet_budget_scales_every_rise_down_together() -> None:
    fleet = [device(f"d{i}", psi=1.0, labelled_per_day=10_000.0, kept_per_day=100.0, bytes_per_row=500.0)
             for i in range(4)]
    params = PARAMS.model_copy(update={"fleet_daily_bytes": 6_000_000})
    plan = plan_collection(fleet, {}, {}, params, MONITOR)
    rates = {d.rate for d in plan.decisions}
    assert len(rates) == 1 and all(d.state == "raised" for d in plan.decisions)  # same devices, same rate
    (rate,) = rates
    assert rate is not None and 0.02 < rate < 0.5
    assert plan.scale < 1 and plan.fleet_expected_bytes <= 6_000_000
    assert "fleet budget of 6,000,000 bytes/day scales every rise" in plan.decisions[0].reason


@pytest.mark.parametrize("seed", range(300))
def test_budgets_hold_on_random_fleets(seed: int) -> None:
    rng = random.Random(seed)
    params = CollectionParams(enabled=True, base_rate=rng.choice([0.0, 0.01, 0.02, 0.05]),
                              raised_rate=rng.uniform(0.1, 1.0), device_daily_bytes=rng.randint(0, 5_000_000),
                              fleet_daily_bytes=rng.randint(0, 60_000_000))
    fleet = []
    current = {}
    for i in range(rng.randint(1, 30)):
        labelled = rng.uniform(0, 20_000)
        obs = device(f"d{i:02d}", rng.choice(["canary", "stable"]), psi=rng.choice([None, 0.01, 0.3, 3.0]),
                     active=rng.random() > 0.1, labelled_per_day=labelled, kept_per_day=rng.uniform(0, labelled),
                     bytes_per_row=rng.uniform(50, 2000), accuracy=rng.uniform(0.5, 1.0))
        fleet.append(obs)
        if rng.random() < 0.3:
            current[obs.device_id] = CurrentRaise(round(rng.uniform(0.05, 1.0), 4), T0)
    plan = plan_collection(fleet, current, {}, params, MONITOR)
    by_id = {d.device_id: d for d in fleet}
    for decision in plan.decisions:
        obs = by_id[decision.device_id]
        if decision.changed and decision.rate is not None:  # every newly published rise respects both budgets
            assert params.base_rate < decision.rate <= params.raised_rate
            assert expected_bytes(obs, decision.rate) <= params.device_daily_bytes + 1e-6  # type: ignore[operator]
    rising = [d for d in plan.decisions if d.state == "raised" and obs_active(by_id[d.device_id])]
    if rising:  # a rise is only ever allowed inside the fleet budget
        assert plan.fleet_expected_bytes <= params.fleet_daily_bytes + 1e-6
    assert plan_collection(fleet, current, {}, params, MONITOR) == plan  # deterministic


def obs_active(obs: DeviceObservation) -> bool:
    return obs.active


def _after_raise(channel: ChannelState, **kw: object) -> DeviceDecision:
    return plan_collection([device("a", **kw)], {"a": CurrentRaise(0.5, T0)}, {"canary": channel}, PARAMS,
                           MONITOR).decisions[0]


def test_back_down_only_after_a_stable_release_trained_after_the_raise() -> None:
    later = T0 + timedelta(hours=5)
    retrained_stable = ChannelState(release=4, release_created=later, release_stable=True)
    back = _after_raise(retrained_stable, model_version="4", psi=0.05)
    assert back.state == "normal" and back.rate is None and back.previous == 0.5
    assert "release 4 (trained after the raise) is stable" in back.reason

    waits = [
        _after_raise(ChannelState(release=4, release_created=later, release_stable=False), model_version="4"),
        _after_raise(ChannelState(release=3, release_created=T0 - timedelta(days=1), release_stable=True),
                     model_version="3"),
        _after_raise(retrained_stable, model_version="3"),  # the device does not run it yet
        _after_raise(retrained_stable, model_version="4", psi=0.9),  # still drifts under the new release
    ]
    for decision in waits:
        assert decision.state == "raised" and decision.rate == 0.5 and not decision.changed


def test_a_raised_rate_is_kept_while_close_so_nothing_is_republished() -> None:
    params = PARAMS.model_copy(update={"device_daily_bytes": 2_000_000})
    busy = device("a", psi=1.0, labelled_per_day=10_000.0, kept_per_day=1000.0, bytes_per_row=1000.0)
    # the cap is 0.1111; the device has 0.1 (a little below): kept; 0.05 (the cap is > 1.25x): raised to the cap
    kept = plan_collection([busy], {"a": CurrentRaise(0.1, T0)}, {}, params, MONITOR)
    assert kept.changes == {} and kept.decisions[0].rate == 0.1
    grown = plan_collection([busy], {"a": CurrentRaise(0.05, T0)}, {}, params, MONITOR)
    assert grown.changes == {"canary": {"a": pytest.approx(0.1111)}}
    over = plan_collection([busy], {"a": CurrentRaise(0.3, T0)}, {}, params, MONITOR)  # above the cap: lowered
    assert over.changes == {"canary": {"a": pytest.approx(0.1111)}}


def test_inactive_and_operator_devices_keep_what_they_have() -> None:
    offline = device("a", psi=3.0, active=False)
    pinned = device("b", psi=3.0)
    plan = plan_collection([offline, pinned], {"a": CurrentRaise(0.3, T0)},
                           {"canary": ChannelState(operator_devices=frozenset({"b"}))}, PARAMS, MONITOR)
    assert plan.changes == {}
    assert "operator" in plan.decisions[1].reason and plan.decisions[0].rate == 0.3


def test_disabled_changes_nothing() -> None:
    params = PARAMS.model_copy(update={"enabled": False})
    plan = plan_collection([device("a", psi=5.0), device("b")], {"b": CurrentRaise(0.4, T0)}, {}, params, MONITOR)
    assert plan.changes == {} and not plan.enabled
    assert plan.summary().startswith("adaptive collection is off")


def test_the_channel_base_rate_is_the_normal_level() -> None:
    channel = ChannelState(base_rate=0.6)  # the channel already samples more than the raised rate allows
    decision = plan_collection([device("a", psi=3.0)], {}, {"canary": channel}, PARAMS, MONITOR).decisions[0]
    assert decision.state == "normal" and "no room above the base rate 0.6" in decision.reason


def test_merge_overrides_touches_only_the_random_rate() -> None:
    existing = {"a": {"upload": {"random_rate": 0.5, "uncertain_margin": 0.2}, "drift": {"window_rows": 100}},
                "b": {"upload": {"random_rate": 0.3}}}
    merged = merge_overrides(existing, {"a": None, "b": None, "c": 0.25})
    assert merged == {"a": {"upload": {"uncertain_margin": 0.2}, "drift": {"window_rows": 100}},
                      "c": {"upload": {"random_rate": 0.25}}}
    assert existing["b"] == {"upload": {"random_rate": 0.3}}  # the input is not changed


# --- what the monitor's step gathers (flows.loop.collection_step), on a project folder ---------------------

def test_device_numbers_come_from_the_landed_batches(tmp_path) -> None:
    import numpy as np
    import yaml

    from edge.contracts.layout import Paths
    from edgeloop.testkit.project import repo_params_raw
    from edgeloop.testkit.synthetic import make_rows
    from flows.loop.collection_step import device_observations
    from simulator.batches import write_batch

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params_raw(), sort_keys=False))
    params = load_params(tmp_path / "params.yaml")
    frame = make_rows(params.schema, "press-1", 500, 3)
    wrong = np.arange(500) < 50  # 50 mistakes (p = 1), 450 random rows at p = 0.1: they stand for 4,550 rows
    label = params.schema.label.name
    frame["prediction"] = np.where(wrong, 1 - frame[label].astype(int), frame[label])
    frame["model_version"] = "4"
    frame["probabilities"] = "[0.5, 0.5]"
    frame["upload_reason"] = np.where(wrong, "labelled", "random")
    frame["inclusion_probability"] = np.where(wrong, 1.0, 0.1)
    batch = write_batch(tmp_path / "data/uploads", "press-1", frame)
    landed = datetime.fromtimestamp(batch.stat().st_mtime, UTC)
    fleet = {"devices": [
        {"device_id": "press-1", "channel": "canary", "status": "online", "revoked": False,
         "last_heartbeat": {"state": {"model_version": 4, "drift": {"torque_nm": 0.7, "speed_rpm": 0.1}}}},
        {"device_id": "press-2", "channel": "stable", "status": "offline", "revoked": False, "last_heartbeat": None},
    ]}
    now = landed + timedelta(hours=6)  # the batch landed 6 hours ago: a quarter of a day
    one, two = device_observations(Paths.at(tmp_path), params, fleet, {"4": 0.97}, now)
    assert (one.device_id, one.channel, one.active, one.max_psi, one.model_version) == (
        "press-1", "canary", True, 0.7, "4")
    assert one.labelled_per_day == pytest.approx(4 * (50 + 450 / 0.1))
    assert one.kept_per_day == pytest.approx(4 * 50)
    assert one.bytes_per_row == pytest.approx(batch.stat().st_size / 500)
    ipw = (450 / 0.1) / (50 + 450 / 0.1)
    assert one.accuracy == pytest.approx(ipw) and one.accuracy_rows == 500
    assert one.accuracy_before == 0.97  # no earlier rows of release 4: its gate accuracy
    assert (two.active, two.labelled_per_day, two.accuracy) == (False, None, None)
    later = device_observations(Paths.at(tmp_path), params, fleet, {}, landed + timedelta(days=3))
    assert later[0].labelled_per_day is None  # out of the window: no rate to size a budget on

    # a batch of release 4 from the window before (30 hours ago, all 300 rows right at p = 1) is the level
    # before; one from four days ago is not read
    for hours, right in ((30, True), (96, False)):
        old = make_rows(params.schema, "press-1", 300, hours)
        old["prediction"] = old[label] if right else 1 - old[label].astype(int)
        old["model_version"], old["probabilities"], old["upload_reason"] = "4", "[0.5, 0.5]", "labelled"
        old["inclusion_probability"] = 1.0
        written = write_batch(tmp_path / "data/uploads", "press-1", old)
        moment = (now - timedelta(hours=hours)).timestamp()
        os.utime(written, (moment, moment))
    again = device_observations(Paths.at(tmp_path), params, fleet, {"4": 0.5}, now)[0]
    assert again.accuracy_before == 1.0 and again.accuracy == pytest.approx(ipw)
    assert again.labelled_per_day == pytest.approx(one.labelled_per_day)


def test_the_loop_manages_only_the_rates_it_set(tmp_path) -> None:
    from edge.contracts.runner_policy import RunnerPolicy
    from flows.loop.collection_step import current_raises
    from flows.loop.log import append_decision

    log = tmp_path / "decisions.jsonl"
    since = T0.isoformat()
    append_decision(log, "monitor", "collection", True, "raise", {}, channel="canary",
                    devices={"a": {"rate": 0.5, "since": since}, "b": {"rate": 0.4, "since": since}})
    append_decision(log, "monitor", "collection", False, "halted", {}, channel="canary",
                    devices={"a": {"rate": None, "since": None}})  # not fired: changes nothing
    policy = RunnerPolicy("canary", 3, {}, {"a": {"upload": {"random_rate": 0.5}},
                                            "b": {"upload": {"random_rate": 0.9}},  # an operator changed it
                                            "c": {"upload": {"random_rate": 0.3}}})  # an operator set it
    assert current_raises(log, {"canary": policy}) == {"a": CurrentRaise(0.5, T0)}
    assert current_raises(log, {"canary": None}) == {}
