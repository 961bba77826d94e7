"""Soak rules for staged rollout: should the release on ``from_channel`` (canary) go to ``to_channel``
(stable), be rolled back, or wait? Pure functions over plain values; no I/O, no Prefect.

``decide(evidence, rules)`` applies params.yaml ``loop.promotion`` to a ``SoakEvidence``:

- nothing to do (recorded as ``wait``): the channel is empty, the candidate already is on stable, or it
  is older than stable (a rollback put it there: never promote a downgrade);
- ``rollback`` when any device reported the candidate ``blocked``, ``rolled_back`` or ``watch_failed``
  (a failed watch window with no previous model to return to), or when, on at least
  ``min_labelled_rows`` rows, its IPW accuracy is *clearly* worse: even the upper end of its 95%
  interval is below the reference's lower end minus ``accuracy_tolerance``;
- ``wait`` while anything is missing: soak time since the channel moved to it (``soak_s``), online
  devices of ``from_channel`` running it (``min_devices``), labelled rows it made (``min_labelled_rows``),
  or an estimated accuracy below the reference - tolerance that is not yet clearly worse;
- ``promote`` otherwise.

The accuracy reference is stable's IPW accuracy on rows landed in the same window (since the candidate
went on canary, so both models are judged on the same period of the plant) when stable made at least
``min_labelled_rows`` of them; else the candidate's own gate accuracy (holdout) with a note; with
neither, the accuracy check passes with a note. The helpers ``channel_since``, ``devices_running`` and
``rejections`` read the release history and the hub's ``GET /v1/fleet`` document.

Leaves out: gathering the evidence (``flows.loop.evidence``), moving channels and logging
(``flows.loop.moves``), Prefect (``flows.orchestration.promote``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from edge.contracts.wire import DEVICE_STATUSES
from flows.loop.estimates import Estimate
from flows.params import PromotionParams

__all__ = [
    "REJECTION_KINDS",
    "Rejection",
    "SoakEvidence",
    "Verdict",
    "channel_since",
    "decide",
    "devices_running",
    "rejections",
]

REJECTION_KINDS = ("blocked", "rolled_back", "watch_failed")  # heartbeat event kinds that condemn a release
NO_ROWS = Estimate(None, None, None, None, 0, 0.0)
Action = Literal["promote", "rollback", "wait"]

_, ONLINE, _ = DEVICE_STATUSES  # a device status in the fleet document


@dataclass(frozen=True)
class Rejection:
    device: str
    kind: str
    at: str
    detail: str


@dataclass(frozen=True)
class SoakEvidence:
    """What the promote flow saw; every field is plain data (gathered by ``flows.loop.evidence``)."""

    now: datetime
    candidate: int | None  # the release from_channel points at
    stable: int | None  # the release to_channel points at
    on_channel_since: datetime | None  # when from_channel moved to the candidate (release history)
    devices: tuple[str, ...] = ()  # online from_channel devices whose heartbeat runs the candidate
    rejections: tuple[Rejection, ...] = ()
    candidate_accuracy: Estimate = NO_ROWS  # rows the candidate made since on_channel_since
    stable_accuracy: Estimate = NO_ROWS  # rows stable made in the same window
    gate_accuracy: float | None = None  # the candidate's gate (holdout) accuracy
    fleet_error: str | None = None  # why the hub's fleet could not be read


@dataclass(frozen=True)
class Verdict:
    action: Action
    summary: str  # one line for people
    reasons: tuple[str, ...] = ()  # wait: what is missing; rollback: why; promote: what passed
    checks: Mapping[str, Any] = field(default_factory=dict)  # name -> {passed, observed, required, note}
    rollback_to: int | None = None  # rollback: the release from_channel goes back to (None: the one before)

    def observed(self, evidence: SoakEvidence) -> dict[str, Any]:
        """The numbers the decision rests on, for the loop log and the artifact."""
        return {
            "candidate": evidence.candidate, "stable": evidence.stable,
            "on_channel_since": None if evidence.on_channel_since is None else evidence.on_channel_since.isoformat(),
            "devices": list(evidence.devices),
            "rejections": [r.__dict__ for r in evidence.rejections],
            "candidate_accuracy": evidence.candidate_accuracy.as_dict(),
            "stable_accuracy": evidence.stable_accuracy.as_dict(),
            "gate_accuracy": evidence.gate_accuracy, "fleet_error": evidence.fleet_error,
            "checks": dict(self.checks),
        }


def _reference(ev: SoakEvidence, rules: PromotionParams) -> tuple[float | None, float | None, str]:
    """(value, lower bound, what it is) of the accuracy the candidate must match."""
    stable = ev.stable_accuracy
    if ev.stable is not None and stable.value is not None and stable.rows >= rules.min_labelled_rows:
        return stable.value, stable.low, f"stable release {ev.stable}: IPW over {stable.rows} rows in the same window"
    have = f"stable made {stable.rows} labelled rows in the window (< {rules.min_labelled_rows})"
    if ev.gate_accuracy is not None:
        return ev.gate_accuracy, ev.gate_accuracy, f"the candidate's gate accuracy ({have})"
    return None, None, f"none: {have} and the gate recorded no accuracy; the check passes"


def _checks(ev: SoakEvidence, rules: PromotionParams) -> dict[str, dict[str, Any]]:
    soaked = None if ev.on_channel_since is None else (ev.now - ev.on_channel_since).total_seconds()
    rows = ev.candidate_accuracy.rows
    value, low, source = _reference(ev, rules)
    accuracy = ev.candidate_accuracy.value
    floor = None if value is None else value - rules.accuracy_tolerance
    accurate = accuracy is not None and (floor is None or accuracy >= floor)
    return {
        "soak": {"passed": soaked is not None and soaked >= rules.soak_s, "observed": soaked,
                 "required": rules.soak_s},
        "devices": {"passed": len(ev.devices) >= rules.min_devices, "observed": len(ev.devices),
                    "required": rules.min_devices},
        "labelled_rows": {"passed": rows >= rules.min_labelled_rows, "observed": rows,
                          "required": rules.min_labelled_rows},
        "accuracy": {"passed": rows >= rules.min_labelled_rows and accurate, "observed": accuracy,
                     "high": ev.candidate_accuracy.high, "required": floor,
                     "clearly_worse_below": None if low is None else low - rules.accuracy_tolerance, "note": source},
        "rejections": {"passed": not ev.rejections, "observed": len(ev.rejections), "required": 0},
    }


def _missing(name: str, check: Mapping[str, Any]) -> str:
    observed, required = check["observed"], check["required"]
    if name == "soak":
        return "soak: never saw the channel move" if observed is None else f"soak: {observed:.0f} s of {required:.0f} s"
    if name == "accuracy":
        if observed is None:
            return "accuracy: no labelled rows yet"
        return f"accuracy: {observed:.4f} < {required:.4f} (not clearly worse yet)"
    return f"{name.replace('_', ' ')}: {observed} of {required}"


def decide(ev: SoakEvidence, rules: PromotionParams) -> Verdict:
    """The soak verdict for ``ev.candidate`` (see the module docstring)."""
    stay = rules.from_channel
    if ev.candidate is None:
        return Verdict("wait", f"channel {stay} points at no release: nothing to promote")
    if ev.stable == ev.candidate:
        return Verdict("wait", f"release {ev.candidate} is already on {rules.to_channel}: nothing to do")
    if ev.stable is not None and ev.candidate < ev.stable:
        return Verdict("wait", f"{stay} release {ev.candidate} is older than {rules.to_channel} release "
                               f"{ev.stable}: nothing to promote")
    checks = _checks(ev, rules)
    if ev.rejections:
        why = tuple(f"{r.device} {r.kind} release {ev.candidate}: {r.detail}".rstrip(": ") for r in ev.rejections)
        devices = len({r.device for r in ev.rejections})
        return Verdict("rollback", f"release {ev.candidate} was rejected on {devices} device(s); {stay} goes back",
                       why, checks, ev.stable)
    accuracy = checks["accuracy"]
    worse_below, high = accuracy["clearly_worse_below"], ev.candidate_accuracy.high
    if checks["labelled_rows"]["passed"] and worse_below is not None and high is not None and high < worse_below:
        why = (f"accuracy {accuracy['observed']:.4f} (95% up to {high:.4f}) is clearly below "
               f"{worse_below:.4f} = reference {accuracy['note']} - tolerance",)
        return Verdict("rollback", f"release {ev.candidate} does clearly worse than its reference; {stay} goes back",
                       why, checks, ev.stable)
    if ev.fleet_error is not None:
        return Verdict("wait", f"release {ev.candidate}: cannot judge without the fleet ({ev.fleet_error})",
                       (f"fleet: {ev.fleet_error}",), checks)
    missing = tuple(_missing(name, check) for name, check in checks.items() if not check["passed"])
    if missing:
        return Verdict("wait", f"release {ev.candidate} is not soaked yet: {'; '.join(missing)}", missing, checks)
    passed = tuple(f"{name}: {check['observed']}" for name, check in checks.items())
    return Verdict("promote", f"release {ev.candidate} soaked on {stay}: promote to {rules.to_channel}", passed,
                   checks)


# --- reading the evidence out of plain documents ---------------------------------------------------------

def channel_since(events: Iterable[Mapping[str, Any]], channel: str, version: int) -> datetime | None:
    """When ``channel`` last moved to ``version`` (release history lines: ``{time, event, channel, to}``)."""
    since = None
    for event in events:
        if event.get("channel") == channel and event.get("to") == version and event.get("time"):
            try:
                since = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
            except ValueError:
                continue
    return since


def _state(device: Mapping[str, Any]) -> Mapping[str, Any]:
    return (device.get("last_heartbeat") or {}).get("state") or {}


def devices_running(fleet: Mapping[str, Any], channel: str, version: int) -> tuple[str, ...]:
    """Online, unrevoked devices of ``channel`` whose last heartbeat runs ``version``."""
    return tuple(sorted(
        str(d["device_id"]) for d in fleet.get("devices", [])
        if d.get("channel") == channel and d.get("status") == ONLINE and not d.get("revoked")
        and str(_state(d).get("model_version")) == str(version)
    ))


def rejections(fleet: Mapping[str, Any], version: int) -> tuple[Rejection, ...]:
    """Heartbeat events of any device that blocked or rolled back ``version`` (offline devices too)."""
    found = []
    for device in fleet.get("devices", []):
        for event in _state(device).get("events") or []:
            if event.get("kind") in REJECTION_KINDS and str(event.get("version")) == str(version):
                found.append(Rejection(str(device["device_id"]), str(event["kind"]), str(event.get("at", "")),
                                       str(event.get("detail", ""))))
    return tuple(found)
