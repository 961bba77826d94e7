"""Adaptive ground-truth collection: which devices sample more labelled rows, at what random rate, within budgets.

``plan_collection(devices, current, channels, params, monitor)`` takes plain data and returns a
``CollectionPlan``; it does no I/O, so the monitor (``flows.loop.collection_step``) and the efficacy
benchmark (``bench/loop_efficacy.py``) run exactly the same decision code. Per ACTIVE device:

- **raised** when it drifts (its largest feature PSI >= ``loop.collection.drift_psi``; null, the default:
  PSI raises nothing, see docs/loop.md#adaptive-collection) or its estimated
  accuracy (IPW, on at least ``min_rows_for_accuracy`` rows) is below ``loop.monitor.accuracy_floor`` or
  more than ``loop.collection.accuracy_margin`` below its level before (``accuracy_before``), or the
  device's own accuracy on its last labels (``rolling_accuracy`` from its heartbeat: every label it got, not
  only the uploaded ones, so it sees a drop hours before the uploads do) lies, with its whole Wilson 95%
  interval, more than ``accuracy_margin`` below that level;
- the raised rate is ``min(raised_rate, device budget)``: the random rate at which the expected upload
  bytes per day, ``bytes_per_row * (kept + rate * (labelled - kept))`` (``kept``: rows uploaded whatever
  the rate: mistakes, uncertain, anomalous), reach ``device_daily_bytes``. Then every raised device's
  rise above its base is scaled down by one common factor so the fleet's expected bytes (every device,
  normal ones at their base rate) stay within ``fleet_daily_bytes``. A rise that the budgets squeeze to
  the base rate is no rise (the device stays normal, and the plan says why);
- a raised device **backs down** to normal once the release its channel points at was trained after
  the raise began, has been stable (``ChannelState.release_stable``: promoted to the stable channel
  after its soak), the device runs it, and under it the device neither drifts nor shows a dropped
  accuracy. Until then it stays raised (hysteresis: no flapping with the PSI);
- a raised rate is kept while it is within the (new) cap and the cap has not grown past
  ``1 + rate_step`` times it, so a monitor pass whose estimates moved a little publishes nothing.

Inactive devices and devices whose random-rate override an operator set keep what they have. A device
with no landed rows to size its budget on is not raised (the plan says so). ``changes`` per channel
holds only devices whose rate changes: an empty plan means nothing is published.

Leaves out: gathering the inputs, publishing the policy and logging (``flows.loop.collection_step``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from flows.loop.estimates import wilson
from flows.params import CollectionParams, MonitorParams

__all__ = [
    "RATE_KEY",
    "ChannelState",
    "CollectionPlan",
    "CurrentRaise",
    "DeviceDecision",
    "DeviceObservation",
    "expected_bytes",
    "merge_overrides",
    "plan_collection",
]

RATE_KEY = ("upload", "random_rate")  # the one key of a device override the loop manages
_DIGITS = 4  # rates are published with this many decimals, rounded down (never above a budget)

State = Literal["normal", "raised"]


@dataclass(frozen=True)
class DeviceObservation:
    """What the monitor knows about one device (plain data; None: not known)."""

    device_id: str
    channel: str
    active: bool  # online, not revoked, heartbeating
    max_psi: float | None = None  # largest feature PSI of its last heartbeat
    model_version: str | None = None  # the release its last heartbeat runs
    labelled_per_day: float | None = None  # labelled rows it sees per plant day (IPW: sum of 1/p)
    kept_per_day: float | None = None  # of those, rows uploaded whatever the rate (p = 1)
    bytes_per_row: float | None = None  # upload bytes per uploaded row
    accuracy: float | None = None  # recent IPW accuracy
    accuracy_rows: int = 0  # uploaded rows that rests on
    accuracy_before: float | None = None  # its level before (earlier rows of the same model, or the gate's)
    rolling_accuracy: float | None = None  # the device's own accuracy on its last labels (heartbeat), every label
    rolling_labels: int = 0  # how many labels that rests on


@dataclass(frozen=True)
class CurrentRaise:
    """A device the loop raised: its published rate and since when."""

    rate: float
    since: datetime | None


@dataclass(frozen=True)
class ChannelState:
    """A channel as the collection plan needs it."""

    release: int | None = None  # the release the channel points at
    release_created: datetime | None = None  # when that release was built (trained)
    release_stable: bool = False  # that release reached the stable channel (soaked and promoted)
    base_rate: float | None = None  # the channel policy's ``upload.random_rate``; None: params base_rate
    operator_devices: frozenset[str] = frozenset()  # devices with a random-rate override the loop did not set


@dataclass(frozen=True)
class DeviceDecision:
    device_id: str
    channel: str
    state: State
    rate: float | None  # the managed override (None: no override, the channel's base rate)
    previous: float | None  # the override it had
    since: datetime | None  # raised: since when
    reason: str  # one line for people
    expected_bytes: float | None  # per day at the planned rate (None: not known)
    observed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.rate != self.previous

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = None if self.since is None else self.since.isoformat()
        out["changed"] = self.changed
        return out


@dataclass(frozen=True)
class CollectionPlan:
    decisions: tuple[DeviceDecision, ...]
    fleet_expected_bytes: float  # per day, devices whose bytes are known
    fleet_budget: int
    scale: float  # the common factor applied to every rise (1: the fleet budget did not bind)
    enabled: bool = True

    @property
    def changes(self) -> dict[str, dict[str, float | None]]:
        """Channel -> device -> new managed rate (None: back to normal), only for devices that change."""
        out: dict[str, dict[str, float | None]] = {}
        for d in self.decisions:
            if d.changed:
                out.setdefault(d.channel, {})[d.device_id] = d.rate
        return out

    def raised(self) -> dict[str, float]:
        return {d.device_id: d.rate for d in self.decisions if d.rate is not None}

    def summary(self, channel: str | None = None) -> str:
        chosen = [d for d in self.decisions if d.changed and (channel is None or d.channel == channel)]
        if not self.enabled:
            return "adaptive collection is off (loop.collection.enabled: false)"
        if not chosen:
            return "collection: no change"
        parts = [f"{d.device_id} {_rate_text(d.previous)} -> {_rate_text(d.rate)}" for d in chosen]
        return (f"collection: {'; '.join(parts)} (fleet {self.fleet_expected_bytes:,.0f} of "
                f"{self.fleet_budget:,} bytes/day expected)")

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "fleet_expected_bytes": round(self.fleet_expected_bytes, 1),
                "fleet_budget": self.fleet_budget, "scale": round(self.scale, 6),
                "decisions": [d.as_dict() for d in self.decisions]}


def _rate_text(rate: float | None) -> str:
    return "base" if rate is None else f"{rate:g}"


def _floor(rate: float) -> float:
    step = 10.0**_DIGITS
    return math.floor(rate * step) / step


def expected_bytes(device: DeviceObservation, rate: float) -> float | None:
    """Expected upload bytes per day of ``device`` at random rate ``rate``; None when not known."""
    if device.labelled_per_day is None or device.bytes_per_row is None:
        return None
    kept = min(device.kept_per_day or 0.0, device.labelled_per_day)
    return device.bytes_per_row * (kept + rate * (device.labelled_per_day - kept))


def _device_cap(device: DeviceObservation, budget: int, ceiling: float) -> float | None:
    """The highest random rate (<= ``ceiling``) whose expected bytes stay within ``budget``; None: unknown."""
    if device.labelled_per_day is None or device.bytes_per_row is None or device.bytes_per_row <= 0:
        return None
    kept = min(device.kept_per_day or 0.0, device.labelled_per_day)
    rest = device.labelled_per_day - kept
    room = budget - device.bytes_per_row * kept
    if room <= 0:
        return 0.0
    if rest <= 0:
        return ceiling
    return min(ceiling, room / (device.bytes_per_row * rest))


def _why_raise(device: DeviceObservation, monitor: MonitorParams, margin: float,
               drift_psi: float | None) -> list[str]:
    why = []
    if drift_psi is not None and device.max_psi is not None and device.max_psi >= drift_psi:
        why.append(f"drifts (largest PSI {device.max_psi:.3g} >= {drift_psi:g})")
    if device.accuracy is not None and device.accuracy_rows >= monitor.min_rows_for_accuracy:
        if device.accuracy < monitor.accuracy_floor:
            why.append(f"accuracy {device.accuracy:.3f} below the floor {monitor.accuracy_floor:g} "
                       f"({device.accuracy_rows} rows)")
        elif device.accuracy_before is not None and device.accuracy_before - device.accuracy > margin:
            why.append(f"accuracy {device.accuracy:.3f} dropped from {device.accuracy_before:.3f} "
                       f"(more than {margin:g}; {device.accuracy_rows} rows)")
    if device.rolling_accuracy is not None and device.rolling_labels >= monitor.min_rows_for_accuracy \
            and device.accuracy_before is not None:
        high = wilson(device.rolling_accuracy, device.rolling_labels)[1]
        if high < device.accuracy_before - margin:
            why.append(f"accuracy {device.rolling_accuracy:.3f} on its last {device.rolling_labels} labels (95% "
                       f"up to {high:.3f}) dropped more than {margin:g} below {device.accuracy_before:.3f}")
    return why


def _back_down(device: DeviceObservation, raise_: CurrentRaise, channel: ChannelState) -> str | None:
    """Why a raised device that no longer drifts may go back to normal; None: it stays raised."""
    if channel.release is None or channel.release_created is None:
        return None
    if raise_.since is not None and channel.release_created <= raise_.since:
        return None
    if not channel.release_stable:
        return None
    if device.model_version != str(channel.release):
        return None
    return (f"release {channel.release} (trained after the raise) is stable and the device runs it "
            f"without drift or an accuracy drop")


def plan_collection(devices: Iterable[DeviceObservation], current: Mapping[str, CurrentRaise],
                    channels: Mapping[str, ChannelState], params: CollectionParams, monitor: MonitorParams
                    ) -> CollectionPlan:
    """Decide every device's random rate (see the module docstring); deterministic in its inputs."""
    devices = sorted(devices, key=lambda d: d.device_id)
    if not params.enabled:
        kept = tuple(DeviceDecision(d.device_id, d.channel, "raised" if d.device_id in current else "normal",
                                    current[d.device_id].rate if d.device_id in current else None,
                                    current[d.device_id].rate if d.device_id in current else None,
                                    current[d.device_id].since if d.device_id in current else None,
                                    "adaptive collection is off: nothing changes", None) for d in devices)
        return CollectionPlan(kept, 0.0, params.fleet_daily_bytes, 1.0, enabled=False)

    def base_of(device: DeviceObservation) -> float:
        channel = channels.get(device.channel, ChannelState())
        return params.base_rate if channel.base_rate is None else channel.base_rate

    # 1. who wants a rise, and each one's cap under the device budget
    wants: dict[str, tuple[str, float]] = {}  # device -> (why, cap)
    fixed: dict[str, DeviceDecision] = {}
    for device in devices:
        channel = channels.get(device.channel, ChannelState())
        raised = current.get(device.device_id)
        previous = None if raised is None else raised.rate
        observed = _observed(device)
        if device.device_id in channel.operator_devices:
            fixed[device.device_id] = DeviceDecision(
                device.device_id, device.channel, "normal", None, None, None,
                "an operator set its random rate in the channel policy: left alone", None, observed)
            continue
        if not device.active:
            fixed[device.device_id] = DeviceDecision(
                device.device_id, device.channel, "normal" if raised is None else "raised", previous, previous,
                None if raised is None else raised.since, "not active (offline or revoked): unchanged",
                expected_bytes(device, base_of(device) if previous is None else previous), observed)
            continue
        why = _why_raise(device, monitor, params.accuracy_margin, params.drift_psi)
        if raised is not None and not why:
            down = _back_down(device, raised, channel)
            if down is not None:
                fixed[device.device_id] = DeviceDecision(
                    device.device_id, device.channel, "normal", None, previous, None, f"back to base: {down}",
                    expected_bytes(device, base_of(device)), observed)
                continue
            why = [f"raised since {raised.since.isoformat() if raised.since else 'an earlier pass'}; waits for a "
                   f"stable release trained after that (channel {device.channel} runs "
                   f"{channel.release if channel.release is not None else 'none'})"]
        if not why:
            fixed[device.device_id] = DeviceDecision(
                device.device_id, device.channel, "normal", None, previous, None, "no drift, no accuracy drop",
                expected_bytes(device, base_of(device)), observed)
            continue
        cap = _device_cap(device, params.device_daily_bytes, params.raised_rate)
        if cap is None:
            fixed[device.device_id] = DeviceDecision(
                device.device_id, device.channel, "normal" if raised is None else "raised", previous, previous,
                None if raised is None else raised.since,
                f"{'; '.join(why)}, but no landed rows to size its byte budget on: unchanged", None, observed)
            continue
        wants[device.device_id] = ("; ".join(why), cap)

    # 2. the fleet budget: every device that is not rising counts at what it keeps (base or its rate)
    by_id = {d.device_id: d for d in devices}
    base_bytes = sum(b for b in (
        [fixed[i].expected_bytes for i in fixed]
        + [expected_bytes(by_id[i], base_of(by_id[i])) for i in wants]) if b is not None)
    extra = {i: max(0.0, cap - base_of(by_id[i])) * _random_bytes(by_id[i]) for i, (_, cap) in wants.items()}
    room = params.fleet_daily_bytes - base_bytes
    total_extra = sum(extra.values())
    # room <= 0: the fleet is at its budget without any rise
    scale = 0.0 if room <= 0 else 1.0 if total_extra <= room else room / total_extra

    # 3. each rising device's rate: scaled cap, rounded down, kept when close enough (no churn)
    decisions = dict(fixed)
    for device_id, (reason, cap) in wants.items():
        device = by_id[device_id]
        base = base_of(device)
        allowed = _floor(base + (cap - base) * scale) if cap > base else base
        raised = current.get(device_id)
        previous = None if raised is None else raised.rate
        since = None if raised is None else raised.since
        budget_note = _budget_note(cap, scale, params)
        if allowed <= base:
            decisions[device_id] = DeviceDecision(
                device_id, device.channel, "normal", None, previous, None,
                f"{reason}, but {budget_note} leaves no room above the base rate {base:g}",
                expected_bytes(device, base), _observed(device))
            continue
        rate = allowed
        if previous is not None and previous <= allowed <= previous * (1 + params.rate_step):
            rate = previous
        decisions[device_id] = DeviceDecision(
            device_id, device.channel, "raised", rate, previous, since,
            f"raised: {reason}; rate {rate:g} ({budget_note})", expected_bytes(device, rate), _observed(device))

    ordered = tuple(decisions[d.device_id] for d in devices)
    total = sum(d.expected_bytes for d in ordered if d.expected_bytes is not None)
    return CollectionPlan(ordered, total, params.fleet_daily_bytes, scale)


def _random_bytes(device: DeviceObservation) -> float:
    """Bytes per day per unit of random rate."""
    assert device.labelled_per_day is not None and device.bytes_per_row is not None
    kept = min(device.kept_per_day or 0.0, device.labelled_per_day)
    return device.bytes_per_row * (device.labelled_per_day - kept)


def _budget_note(cap: float, scale: float, params: CollectionParams) -> str:
    if cap >= params.raised_rate and scale >= 1.0:
        return f"the most it may reach, loop.collection.raised_rate {params.raised_rate:g}"
    parts = []
    if cap < params.raised_rate:
        parts.append(f"the device budget of {params.device_daily_bytes:,} bytes/day allows {cap:.4g}")
    if scale < 1.0:
        parts.append(f"the fleet budget of {params.fleet_daily_bytes:,} bytes/day scales every rise by {scale:.3g}")
    return " and ".join(parts)


def _observed(device: DeviceObservation) -> dict[str, Any]:
    return {"psi": device.max_psi, "accuracy": device.accuracy, "accuracy_rows": device.accuracy_rows,
            "rolling_accuracy": device.rolling_accuracy, "rolling_labels": device.rolling_labels,
            "accuracy_before": device.accuracy_before, "model_version": device.model_version,
            "labelled_per_day": device.labelled_per_day, "kept_per_day": device.kept_per_day,
            "bytes_per_row": device.bytes_per_row}


def merge_overrides(devices: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    changes: Mapping[str, float | None]) -> dict[str, dict[str, dict[str, Any]]]:
    """A channel policy's ``devices`` with ``changes`` applied to ``upload.random_rate`` only (None removes
    it); every other override an operator set stays. A device left with no override is dropped."""
    section, key = RATE_KEY
    out = {d: {s: dict(v) for s, v in values.items()} for d, values in devices.items()}
    for device_id, rate in changes.items():
        values = out.setdefault(device_id, {})
        if rate is None:
            values.get(section, {}).pop(key, None)
            if section in values and not values[section]:
                del values[section]
        else:
            values.setdefault(section, {})[key] = rate
        if not values:
            del out[device_id]
    return dict(sorted(out.items()))
