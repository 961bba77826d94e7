"""The monitor's adaptive-collection step: gather what ``flows.loop.collection`` decides on, publish what changed.

``run_collection(paths, params, fleet, fleet_error)`` (``fleet``: the hub's ``GET /v1/fleet`` document the
monitor read) does one pass:

1. **Devices** from the fleet document: channel, active (online, not revoked, heartbeating), largest
   feature PSI and the release of the last heartbeat. From the landing zones' edge rows
   (``flows.loop.estimates.load_uploads``) of batches that landed in the last ``loop.collection.window_s``
   seconds: labelled rows per day (IPW: the sum of 1/p over the time they landed in), rows kept whatever
   the rate (p = 1) per day, bytes per uploaded row (batch file bytes / rows). Rates are measured on
   landing time, the clock the runners' own ``upload.daily_byte_budget`` counts in. Accuracy: the IPW
   accuracy of the device's rows made by the release it runs, in that window, against the same release's
   rows in the window before (its level before; when they are fewer than ``min_rows_for_accuracy``, the
   release's gate accuracy). Only batches of those two windows are read.
2. **Channels** from the release repository: the release each channel points at, when it was built,
   whether it ever reached ``loop.promotion.to_channel`` (soaked and promoted), and the channel's signed
   runner policy (``flows.releases.runner_config.current_policy``): its base ``upload.random_rate`` and
   device overrides.
3. **State**: which devices the loop raised, at what rate and since when, from the loop log's fired
   ``collection`` decisions, kept only while the channel policy still carries that rate (an override an
   operator set or changed is the operator's, and the loop leaves it alone).
4. ``plan_collection``, then per channel with changes: the channel's ``settings`` as they are, its
   ``devices`` with only ``upload.random_rate`` changed (``merge_overrides``), published through
   ``flows.releases.runner_config.publish_policy`` and logged as a fired ``monitor``/``collection`` decision
   (what changed, why, the observed PSI and accuracy, rates, expected bytes against both budgets, the
   policy version). A halted channel gets nothing: the decision is logged as not fired, saying so. No
   change: nothing is published or logged. ``loop.collection.enabled: false``: nothing at all.

Never raises for what it observes: a missing release repository, an unreachable hub or a landing zone
that cannot be read means no change this pass, with the reason in the returned summary.
Leaves out: the decision rules (``flows.loop.collection``) and Prefect (``flows.orchestration.monitor``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.contracts.errors import UserError
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION
from edge.contracts.wire import DEVICE_STATUSES
from edge.health import ROLLING_WINDOW
from flows.loop.collection import (
    RATE_KEY,
    ChannelState,
    CollectionPlan,
    CurrentRaise,
    DeviceObservation,
    merge_overrides,
    plan_collection,
)
from flows.loop.log import append_decision, read_decisions
from flows.loop.triggers import parse_time

if TYPE_CHECKING:
    import pandas as pd

    from edge.contracts.layout import Paths
    from edge.contracts.runner_policy import RunnerPolicy
    from flows.loop.landing import Landed
    from flows.params import Params

__all__ = ["KIND", "current_raises", "device_observations", "run_collection"]

KIND = "collection"
_, ONLINE, _ = DEVICE_STATUSES
DAY_S = 86_400.0


def _fleet_devices(fleet: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for raw in fleet.get("devices") or []:
        beat = raw.get("last_heartbeat") or {}
        state = beat.get("state") or {}
        drift = state.get("drift") or {}
        values = [float(v) for v in drift.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        version = state.get("model_version")
        rolling = state.get("rolling_accuracy")
        feedback = (state.get("counters") or {}).get("feedback")
        known = isinstance(rolling, int | float) and not isinstance(rolling, bool) and isinstance(feedback, int)
        out.append({"device_id": str(raw["device_id"]), "channel": str(raw.get("channel", "")),
                    "rolling_accuracy": float(rolling) if known else None,
                    "rolling_labels": min(int(feedback), ROLLING_WINDOW) if known else 0,
                    "active": raw.get("status") == ONLINE and not raw.get("revoked") and bool(beat),
                    "max_psi": max(values) if values else None,
                    "model_version": None if version is None else str(version)})
    return out


def _rates(rows: pd.DataFrame, batches: list[Landed], now: datetime, window_s: float, floor_s: float
           ) -> dict[str, Any]:
    """Labelled rows/day (sum of 1/p), kept rows/day (p = 1) and bytes/row of one device's recent batches:
    per the time since the oldest of them landed (at most ``window_s``, at least ``floor_s``)."""
    p = rows[INCLUSION_PROBABILITY].astype(float)
    p = p[(p > 0) & (p <= 1)]
    if p.empty:
        return {}
    oldest = min(b.landed for b in batches)
    days = max(floor_s, min(window_s, (now - oldest).total_seconds())) / DAY_S
    return {"labelled_per_day": float((1.0 / p).sum()) / days, "kept_per_day": float((p >= 1).sum()) / days,
            "bytes_per_row": sum(b.size for b in batches) / len(rows)}


def device_observations(paths: Paths, params: Params, fleet: Mapping[str, Any], gate_accuracy: Mapping[str, float],
                        now: datetime) -> list[DeviceObservation]:
    """One ``DeviceObservation`` per device of the fleet document (see the module docstring, step 1)."""
    from flows.loop.landing import landed_batches, landing_zones

    collection = params.loop.collection
    try:
        batches = landed_batches(landing_zones(params, paths))
    except (OSError, UserError):
        batches = []
    start = now - timedelta(seconds=collection.window_s)
    before = start - timedelta(seconds=collection.window_s)
    recent: dict[str, list[Landed]] = {}
    older: dict[str, list[Landed]] = {}
    for batch in batches:  # only the last two windows are read: a pass costs the same after a year
        if batch.landed >= start:
            recent.setdefault(batch.device_id, []).append(batch)
        elif batch.landed >= before:
            older.setdefault(batch.device_id, []).append(batch)
    out = []
    for info in _fleet_devices(fleet):
        device = info["device_id"]
        try:
            extra = _device_numbers(paths, params, info["model_version"], recent.get(device, []),
                                    older.get(device, []), gate_accuracy, now)
        except (OSError, UserError):
            extra = {}
        out.append(DeviceObservation(info["device_id"], info["channel"], info["active"], info["max_psi"],
                                     info["model_version"], rolling_accuracy=info["rolling_accuracy"],
                                     rolling_labels=info["rolling_labels"], **extra))
    return out


def _device_numbers(paths: Paths, params: Params, version: str | None, recent: list[Landed], older: list[Landed],
                    gate_accuracy: Mapping[str, float], now: datetime) -> dict[str, Any]:
    """Rates, bytes per row and accuracy (now and before) of one device's landed batches."""
    from flows.loop.estimates import accuracy, load_uploads

    if not recent:
        return {}
    rules, monitor = params.loop.collection, params.loop.monitor
    window = load_uploads(paths, params, batches=recent)
    if not len(window):
        return {}
    out = _rates(window, recent, now, rules.window_s, monitor.interval_s)
    if version is None:
        return out
    label = params.schema.label.name
    current = window[window[MODEL_VERSION] == version]
    estimate = accuracy(current, label) if len(current) else None
    if estimate is not None and estimate.value is not None:
        out |= {"accuracy": estimate.value, "accuracy_rows": estimate.rows}
    before = load_uploads(paths, params, batches=older, model_versions=[version]) if older else None
    earlier = accuracy(before, label) if before is not None and len(before) else None
    if earlier is not None and earlier.value is not None and earlier.rows >= monitor.min_rows_for_accuracy:
        out["accuracy_before"] = earlier.value
    elif version in gate_accuracy:
        out["accuracy_before"] = gate_accuracy[version]
    return out


def current_raises(log: Path, policies: Mapping[str, RunnerPolicy | None]) -> dict[str, CurrentRaise]:
    """Devices the loop raised (its last fired collection decision for them set a rate) whose channel policy
    still carries exactly that rate."""
    section, key = RATE_KEY
    last: dict[str, dict[str, Any]] = {}
    for entry in read_decisions(log, kind=KIND):
        if entry.get("fired"):
            for device, state in (entry.get("devices") or {}).items():
                if isinstance(state, dict):
                    last[device] = state | {"channel": entry.get("channel")}
    out = {}
    for device, state in last.items():
        policy = policies.get(str(state.get("channel")))
        rate = state.get("rate")
        if policy is None or rate is None:
            continue
        if policy.devices.get(device, {}).get(section, {}).get(key) == rate:
            out[device] = CurrentRaise(float(rate), parse_time(state.get("since")))
    return out


def _channels(params: Params, paths: Paths, names: set[str]
              ) -> tuple[dict[str, ChannelState], dict[str, RunnerPolicy | None], dict[str, float], str | None]:
    """(channel states, channel policies, gate accuracy per release, why they could not be read)."""
    from flows.releases import ReleaseConfig, is_initialised, list_releases
    from flows.releases.history import read_events
    from flows.releases.runner_config import current_policy

    config = ReleaseConfig.from_params(params, paths)
    if not is_initialised(config):
        return {}, {}, {}, "no release repository yet: no channel to publish a runner policy on"
    releases = list_releases(config)
    to_channel = params.loop.promotion.to_channel
    ever_stable = {e.get("to") for e in read_events(config) if e.get("channel") == to_channel}
    on = {channel: info for info in releases for channel in info.channels}
    ever_stable |= {on[to_channel].version} if to_channel in on else set()
    gate = {str(r.version): float(r.metrics["accuracy"]) for r in releases
            if isinstance(r.metrics.get("accuracy"), int | float)}
    policies = {name: current_policy(config, name) for name in sorted(names | set(on))}
    section, key = RATE_KEY
    states = {}
    for name, policy in policies.items():
        info = on.get(name)
        base = None if policy is None else policy.settings.get(section, {}).get(key)
        overridden = set() if policy is None else {d for d, v in policy.devices.items() if key in v.get(section, {})}
        states[name] = ChannelState(
            release=None if info is None else info.version,
            release_created=None if info is None else parse_time(info.created),
            release_stable=info is not None and info.version in ever_stable,
            base_rate=None if base is None else float(base),
            operator_devices=frozenset(overridden))  # less the devices the loop raised: run_collection
    return states, policies, gate, None


def run_collection(paths: Paths, params: Params, fleet: Mapping[str, Any] | None, fleet_error: str | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """One adaptive-collection pass (see the module docstring): ``{"summary", "published": {channel:
    version}, "halted": [...], "plan": ...}``."""
    now = now or datetime.now(UTC)
    rules = params.loop.collection
    if not rules.enabled:
        return {"summary": "adaptive collection is off (loop.collection.enabled: false)", "published": {},
                "halted": [], "plan": None}
    if fleet is None or fleet_error is not None:
        return {"summary": f"collection: no change (fleet unknown: {fleet_error or 'not read'})", "published": {},
                "halted": [], "plan": None}
    log = paths.resolve(params.loop.log)
    names = {str(d.get("channel", "")) for d in fleet.get("devices") or [] if d.get("channel")}
    try:
        channels, policies, gate, why_not = _channels(params, paths, names)
    except (OSError, UserError) as exc:
        return {"summary": f"collection: no change (release repository unreadable: {exc})", "published": {},
                "halted": [], "plan": None}
    if why_not is not None:
        return {"summary": f"collection: no change ({why_not})", "published": {}, "halted": [], "plan": None}
    raised = current_raises(log, policies)
    channels = {name: ChannelState(s.release, s.release_created, s.release_stable, s.base_rate,
                                   frozenset(s.operator_devices - set(raised))) for name, s in channels.items()}
    devices = device_observations(paths, params, fleet, gate, now)
    plan = plan_collection(devices, raised, channels, rules, params.loop.monitor)
    return _apply(paths, params, log, plan, policies, now) | {"plan": plan.as_dict()}


def _apply(paths: Paths, params: Params, log: Path, plan: CollectionPlan,
           policies: Mapping[str, RunnerPolicy | None], now: datetime) -> dict[str, Any]:
    from flows.loop.halts import Halt, halts_path, read_halts
    from flows.releases import ReleaseConfig
    from flows.releases.runner_config import publish_policy

    changes = plan.changes
    if not changes:
        return {"summary": plan.summary(), "published": {}, "halted": []}
    config = ReleaseConfig.from_params(params, paths)
    halts: dict[str, Halt | None]
    try:
        halts = dict(read_halts(halts_path(log)))
    except UserError as exc:  # unreadable: every channel counts as halted (never publish past a freeze)
        halts = dict.fromkeys(changes)
        halt_note = str(exc)
    else:
        halt_note = ""
    by_id = {d.device_id: d for d in plan.decisions}
    published: dict[str, int] = {}
    halted: list[str] = []
    for channel, moves in sorted(changes.items()):
        summary = plan.summary(channel)
        observed = _observed(plan, channel, moves, params)
        states = {d: {"rate": rate, "since": _since(by_id[d], now), "reason": by_id[d].reason}
                  for d, rate in moves.items()}
        if channel in halts:
            halt = halts[channel]
            why = halt.describe() if halt is not None else halt_note
            append_decision(log, "monitor", KIND, False, f"{summary}; not published: channel {channel!r} is {why}",
                            observed, channel=channel, devices=states, halted=True)
            halted.append(channel)
            continue
        policy = policies.get(channel)
        settings = {} if policy is None else policy.settings
        devices = merge_overrides({} if policy is None else policy.devices, moves)
        note = f"adaptive collection: {', '.join(f'{d} random_rate {_text(r)}' for d, r in sorted(moves.items()))}"
        try:
            new = publish_policy(config, channel, settings, devices, note[:500])
        except UserError as exc:
            append_decision(log, "monitor", KIND, False, f"{summary}; not published: {exc}", observed,
                            channel=channel, devices=states, error=str(exc))
            continue
        published[channel] = new.version
        append_decision(log, "monitor", KIND, True, f"{summary}; runner policy {channel} v{new.version}",
                        observed | {"policy_version": new.version}, channel=channel, devices=states,
                        policy_version=new.version)
    text = plan.summary()
    if published:
        text += "; published " + ", ".join(f"{c} v{v}" for c, v in sorted(published.items()))
    if halted:
        text += "; halted, not published: " + ", ".join(halted)
    return {"summary": text, "published": published, "halted": halted}


def _text(rate: float | None) -> str:
    return "back to base" if rate is None else f"{rate:g}"


def _since(decision: Any, now: datetime) -> str | None:
    if decision.rate is None:
        return None
    return (decision.since or now).isoformat()


def _observed(plan: CollectionPlan, channel: str, moves: Mapping[str, float | None], params: Params
              ) -> dict[str, Any]:
    """Flat ``name: value`` pairs for the log (the console shows them as lines)."""
    rules = params.loop.collection
    out: dict[str, Any] = {"channel": channel, "fleet_expected_bytes": round(plan.fleet_expected_bytes),
                           "fleet_daily_bytes": rules.fleet_daily_bytes,
                           "device_daily_bytes": rules.device_daily_bytes, "fleet_scale": round(plan.scale, 4)}
    for decision in plan.decisions:
        if decision.device_id not in moves:
            continue
        d, seen = decision.device_id, decision.observed
        out[f"{d} rate"] = " -> ".join("base" if r is None else f"{r:g}" for r in (decision.previous, decision.rate))
        out[f"{d} psi"] = None if seen.get("psi") is None else round(seen["psi"], 4)
        out[f"{d} accuracy"] = None if seen.get("accuracy") is None else round(seen["accuracy"], 4)
        out[f"{d} rolling_accuracy"] = (None if seen.get("rolling_accuracy") is None
                                        else f"{seen['rolling_accuracy']:.4f} on {seen['rolling_labels']} labels")
        out[f"{d} accuracy_before"] = (None if seen.get("accuracy_before") is None
                                       else round(seen["accuracy_before"], 4))
        out[f"{d} expected_bytes"] = None if decision.expected_bytes is None else round(decision.expected_bytes)
        out[f"{d} why"] = decision.reason
    return out
