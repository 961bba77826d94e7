"""When the monitor retrains: four triggers and a cooldown, as pure functions of what was observed.

``decide(observations, params, now, last_fired)`` evaluates every trigger and returns a
``MonitorDecision`` (fired or not, each trigger's state, value and threshold, one summary line):

- ``scheduled``: a ``nightly_cron`` slot (UTC, cronsim: the cron library Prefect's own scheduler
  stack installs) has passed since the last training; never trained counts as passed.
- ``data_volume``: at least ``min_new_rows`` labelled rows landed since the last training.
- ``fleet_drift``: among ACTIVE devices (online, not revoked, heartbeating), the share whose largest
  feature PSI is above ``drift_psi`` is at least ``drift_device_share``.
- ``accuracy_drop``: the inverse-probability-weighted accuracy of the current channel models' rows
  since the last release rests on at least ``min_rows_for_accuracy`` rows and is below ``accuracy_floor``,
  or (``accuracy_margin`` set) its whole 95% interval lies more than ``accuracy_margin`` below
  ``accuracy_before``, the current release's holdout accuracy: a drop relative to what the release did.

``fleet_drift`` and ``accuracy_drop`` mean the plant changed, so they wait for fresh ground truth: the
labelled rows landed since the last training must reach ``min_fresh_rows``; with ``auto`` that number is
``flows.loop.fresh_rows.fresh_rows_needed`` (what the gate needs to tell a candidate from the champion)
and the rows count by their IPW effective number (``fresh_requirement``; logged as ``fresh_rows``).

A trigger is ``fired``, ``quiet`` or ``unknown`` (its input could not be had: hub unreachable, no
release yet, a bad cron); unknown never fires. While a hold runs nothing fires: the decision says
"suppressed by cooldown" with the triggers that would have and whose retrain holds them. Every FIRED
retrain decision, whatever its source (the monitor, ``edgeloop retrain``, a deployment run), holds the
automatic triggers from its time for its recorded ``hold_s`` (``cooldown_s`` when it records none);
the running hold is the one that ends last (``running_hold``), so a short hold never cuts a longer
one short. The last training is the last fired retrain decision, else the model file's time, else
never (``last_training``).

Leaves out: gathering the observations (flows.loop.observe), logging (flows.loop.retrains) and acting
(flows.orchestration.monitor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from flows.loop.fresh_rows import FreshNeed, FreshRule, fresh_rows_needed
from flows.params import MonitorParams

__all__ = [
    "DeviceState",
    "Hold",
    "MonitorDecision",
    "Observations",
    "TriggerResult",
    "accuracy_drop",
    "data_volume",
    "decide",
    "fleet_drift",
    "fresh_requirement",
    "last_training",
    "parse_time",
    "running_hold",
    "scheduled",
]

TriggerState = Literal["fired", "quiet", "unknown"]


@dataclass(frozen=True)
class DeviceState:
    """One registered device as the hub's fleet view shows it."""

    device_id: str
    channel: str
    active: bool  # online (heartbeat fresh), not revoked
    max_psi: float | None  # largest feature PSI in its last heartbeat; None: it reported none


@dataclass(frozen=True)
class Observations:
    """Everything the triggers look at, gathered once per monitor run."""

    devices: tuple[DeviceState, ...] | None = None  # None: the fleet could not be read
    fleet_error: str | None = None  # why not
    new_labelled_rows: int | None = None  # labelled rows landed since the last training
    accuracy: float | None = None  # IPW accuracy of the current models' rows since the last release
    accuracy_rows: int = 0  # uploaded rows that estimate rests on
    accuracy_interval: tuple[float | None, float | None] = (None, None)
    accuracy_versions: tuple[str, ...] = ()  # the model versions it covers (the channels' releases)
    accuracy_note: str | None = None  # why there is no estimate
    model_time: datetime | None = None  # mtime of data/model/model.onnx: last training when the log has none
    fresh_effective_rows: float | None = None  # Kish effective number of the fresh rows (None: count them raw)
    accuracy_before: float | None = None  # the current release's holdout accuracy: the level before a drop
    fresh_rule: FreshRule = FreshRule()  # what the gate judges with (split and gate params)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model_time"] = _iso(self.model_time)
        out["devices"] = None if self.devices is None else [asdict(d) for d in self.devices]
        return out


@dataclass(frozen=True)
class TriggerResult:
    name: str
    state: TriggerState
    value: Any  # the observed value (None when unknown)
    threshold: Any
    detail: str  # one line for people
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return self.state == "fired"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MonitorDecision:
    fired: bool
    triggers: tuple[TriggerResult, ...]
    would_fire: tuple[str, ...]  # triggers that fired before the cooldown was applied
    suppressed: bool  # would have fired, but the cooldown holds
    cooldown_left_s: float  # 0 outside the cooldown
    last_training: datetime | None
    last_training_source: str  # "loop log", "model file" or "never"
    summary: str
    held_by: str | None = None  # source of the fired retrain whose hold is running (None: no hold)
    fresh_rows: dict[str, Any] | None = None  # the fresh-row requirement: have, needed, why

    def observed(self) -> dict[str, Any]:
        """The numbers the decision was made on, for the loop log."""
        return {
            **{t.name: t.value for t in self.triggers},
            "last_training": _iso(self.last_training),
            "last_training_source": self.last_training_source,
            "cooldown_left_s": round(self.cooldown_left_s, 1),
            "held_by": self.held_by,
            "fresh_rows": self.fresh_rows,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired, "summary": self.summary, "would_fire": list(self.would_fire),
            "suppressed": self.suppressed, "cooldown_left_s": self.cooldown_left_s, "held_by": self.held_by,
            "last_training": _iso(self.last_training), "last_training_source": self.last_training_source,
            "triggers": [t.as_dict() for t in self.triggers], "fresh_rows": self.fresh_rows,
        }


@dataclass(frozen=True)
class Hold:
    """A fired retrain holding the automatic triggers: from ``at`` until ``until``."""

    at: datetime
    until: datetime
    source: str  # who started that retrain: monitor, manual, deployment

    def left_s(self, now: datetime) -> float:
        return max(0.0, (self.until - now).total_seconds())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def parse_time(text: object) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime (naive = UTC); None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def running_hold(fired: Iterable[Mapping[str, Any]], cooldown_s: float) -> Hold | None:
    """The hold that ends last among fired retrain decisions (``{"at", "source", "hold_s"?}``): each holds
    for its own ``hold_s`` when it recorded one, else ``cooldown_s``. None when there is none."""
    longest: Hold | None = None
    for entry in fired:
        at = parse_time(entry.get("at"))
        if at is None:
            continue
        hold = entry.get("hold_s")
        seconds = float(hold) if isinstance(hold, int | float) and hold >= 0 else cooldown_s
        candidate = Hold(at, at + timedelta(seconds=seconds), str(entry.get("source") or "monitor"))
        if longest is None or candidate.until > longest.until:
            longest = candidate
    return longest


def last_training(last_fired: Mapping[str, Any] | None, model_time: datetime | None) -> tuple[datetime | None, str]:
    """When the model was last trained, and how we know: the log first, then the model file."""
    logged = parse_time(last_fired.get("at")) if last_fired else None
    if logged is not None:
        return logged, "loop log"
    if model_time is not None:
        return model_time, "model file"
    return None, "never"


def scheduled(cron: str, trained: datetime | None, now: datetime) -> TriggerResult:
    """Fired when a ``cron`` slot lies in (trained, now]."""
    from cronsim import CronSim, CronSimError

    if trained is None:
        return TriggerResult("scheduled", "fired", "never trained", cron, "never trained: a slot has passed")
    try:
        slot = next(CronSim(cron, trained.astimezone(UTC)))
    except (CronSimError, StopIteration) as exc:
        return TriggerResult("scheduled", "unknown", None, cron, f"nightly_cron {cron!r} is not usable: {exc}")
    state: TriggerState = "fired" if slot <= now else "quiet"
    verb = "passed" if state == "fired" else "is next"
    return TriggerResult("scheduled", state, slot.isoformat(), cron, f"slot {slot.isoformat()} {verb}")


def data_volume(rows: int | None, minimum: int) -> TriggerResult:
    if rows is None:
        return TriggerResult("data_volume", "unknown", None, minimum, "landing zone not readable")
    state: TriggerState = "fired" if rows >= minimum else "quiet"
    return TriggerResult("data_volume", state, rows, minimum, f"{rows} new labelled rows (fires at >= {minimum})")


def fleet_drift(devices: tuple[DeviceState, ...] | None, error: str | None, psi: float, share: float
                ) -> TriggerResult:
    if devices is None:
        return TriggerResult("fleet_drift", "unknown", None, share, f"fleet unknown: {error or 'not read'}")
    active = [d for d in devices if d.active]
    if not active:
        return TriggerResult("fleet_drift", "unknown", None, share, "no active device", {"active": 0})
    drifting = sorted(d.device_id for d in active if d.max_psi is not None and d.max_psi > psi)
    observed = len(drifting) / len(active)
    state: TriggerState = "fired" if observed >= share else "quiet"
    detail = f"{len(drifting)}/{len(active)} active devices with max PSI > {psi} (fires at share >= {share})"
    return TriggerResult("fleet_drift", state, round(observed, 4), share, detail,
                         {"active": len(active), "drifting": drifting, "psi": psi})


def accuracy_drop(observations: Observations, floor: float, min_rows: int,
                  margin: float | None = None) -> TriggerResult:
    value, rows = observations.accuracy, observations.accuracy_rows
    extra = {"rows": rows, "versions": list(observations.accuracy_versions),
             "interval": list(observations.accuracy_interval)}
    if value is None:
        note = observations.accuracy_note or "no labelled rows from the current models"
        return TriggerResult("accuracy_drop", "unknown", None, floor, note, extra)
    if rows < min_rows:
        return TriggerResult("accuracy_drop", "quiet", round(value, 4), floor,
                             f"only {rows} rows (< {min_rows}): too few to judge", extra)
    state: TriggerState = "fired" if value < floor else "quiet"
    detail = f"estimated accuracy {value:.3f} on {rows} rows (fires below {floor}"
    high, before = observations.accuracy_interval[1], observations.accuracy_before
    if margin is not None and before is not None:
        detail += f", or when its interval lies below {before - margin:.3f}"
        if state == "quiet" and high is not None and high < before - margin:
            state = "fired"
            detail += f": interval up to {high:.3f}, the release's holdout accuracy was {before:.3f}"
    return TriggerResult("accuracy_drop", state, round(value, 4), floor, detail + ")", extra)


NEEDS_FRESH_ROWS = ("fleet_drift", "accuracy_drop")  # triggers that mean "the plant changed": retrain on its new data


def fresh_requirement(observations: Observations, params: MonitorParams) -> dict[str, Any]:
    """Fresh labelled rows there are (``have``) and needed (``needed``), with one line saying why (``text``).

    A number in ``min_fresh_rows`` counts raw rows against it; ``auto`` counts the rows' IPW effective number
    against ``fresh_rows_needed``: error rate 1 - the estimated accuracy (else 1 - the level before, else
    1 - ``accuracy_floor``), drop = level before - estimate."""
    raw = observations.new_labelled_rows or 0
    if params.min_fresh_rows != "auto":
        needed = int(params.min_fresh_rows)
        return {"mode": "fixed", "have": raw, "needed": needed,
                "text": f"{raw} of {needed} labelled rows since the last training"}
    now, before = observations.accuracy, observations.accuracy_before
    level = next((a for a in (now, before) if a is not None), params.accuracy_floor)
    drop = before - now if now is not None and before is not None else None
    need: FreshNeed = fresh_rows_needed(observations.fresh_rule, 1.0 - level, drop, params.fresh_rows_floor,
                                        params.fresh_rows_cap)
    effective = observations.fresh_effective_rows
    have = round(effective if effective is not None else float(raw), 1)
    return {"mode": "auto", "have": have, "raw": raw, "needed": need.rows, "text": need.text(have),
            **{k: v for k, v in need.as_dict().items() if k != "rows"}}


def decide(observations: Observations, params: MonitorParams, now: datetime,
           last_fired: Mapping[str, Any] | None, fired: Iterable[Mapping[str, Any]] | None = None
           ) -> MonitorDecision:
    """Evaluate every trigger, then the hold: of every fired retrain decision in ``fired`` (any source;
    default: ``last_fired`` alone), the one that ends last. ``last_fired`` (the newest) dates the last
    training."""
    trained, source = last_training(last_fired, observations.model_time)
    results = (
        scheduled(params.nightly_cron, trained, now),
        data_volume(observations.new_labelled_rows, params.min_new_rows),
        fleet_drift(observations.devices, observations.fleet_error, params.drift_psi, params.drift_device_share),
        accuracy_drop(observations, params.accuracy_floor, params.min_rows_for_accuracy, params.accuracy_margin),
    )
    would = tuple(t.name for t in results if t.fired)
    fresh = fresh_requirement(observations, params)
    starved = [name for name in would if name in NEEDS_FRESH_ROWS] if fresh["have"] < fresh["needed"] else []
    if starved:  # retraining now would learn nothing new: wait for ground truth from the changed plant
        would = tuple(name for name in would if name not in starved)
    hold = running_hold(([last_fired] if last_fired else []) if fired is None else fired, params.cooldown_s)
    left = 0.0 if hold is None else hold.left_s(now)
    held_by = hold.source if hold is not None and left > 0 else None
    suppressed = bool(would) and left > 0
    fires = bool(would) and not suppressed
    unknown = [t.name for t in results if t.state == "unknown"]
    if fires:
        summary = f"retrain: {', '.join(would)} fired"
    elif suppressed:
        assert hold is not None
        summary = (f"suppressed by cooldown ({left:.0f} s left of the hold of the {held_by} retrain at "
                   f"{hold.at.isoformat(timespec='seconds')}): {', '.join(would)} would fire")
    else:
        summary = "no trigger fired"
    if starved:
        summary += f"; {', '.join(starved)} seen, waiting for fresh ground truth ({fresh['text']})"
    if unknown:
        summary += f" (unknown: {', '.join(unknown)})"
    return MonitorDecision(fires, results, would, suppressed, left, trained, source, summary, held_by, fresh)
