"""Every retrain on one decision path: who asked (its source), the decision, how long it holds the monitor's
automatic triggers, and what came of it, all in the loop log (``flows.loop.log``).

Sources (``SOURCES``), each written on the decision and on its outcome:

- ``monitor``: the monitor flow's automatic triggers (``flows.loop.triggers``), the nightly slot of
  ``loop.monitor.nightly_cron`` included: the monitor is the one retraining scheduler;
- ``manual``: ``edgeloop retrain``, or the ``retrain`` flow called directly (the demo's first release);
- ``deployment``: a run of the ``retrain-on-demand`` Prefect deployment.

How a request relates to the cooldown (the rule ``flows.loop.triggers.decide`` applies):

- an explicit request (manual or deployment) is never refused, not even inside a running hold: a
  person (or someone starting a deployment run) asked for it. It fires and is recorded as a fired
  ``retrain`` decision with its source, who asked (``requested_by``) and, when it came inside a hold,
  how much of that hold was left (``overrode_hold_s``);
- every fired retrain decision, of any source, then holds the automatic triggers for its ``hold_s``
  (recorded with it; ``loop.monitor.cooldown_s`` unless the request chose another, 0 leaves them
  free). A monitor pass inside a hold is recorded as "suppressed by cooldown" and names the source of
  the retrain that holds it. Being a training, a request also restarts the clock of the nightly slot
  and of the data volume trigger (both count from the last fired retrain);
- the decision is appended before the pipeline runs (a second request or monitor pass during a long
  retrain sees it), the outcome (kind ``retrain_outcome``: gate passed or blocked, the published
  release, or why the run failed) after it, with the same source and ``decision_at`` = the decision's
  time. ``edgeloop loop status`` shows both.

Imports only the standard library and ``flows.loop.log`` at import time (``edgeloop --help`` reads
``ACTIONS`` and ``SOURCES`` from here without loading Prefect or pydantic).
Leaves out: running the pipeline (``flows.orchestration.retrain``), deciding the automatic triggers
(``flows.loop.triggers``) and gathering what they look at (``flows.loop.observe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.loop.log import Decision, append_decision, read_decisions

if TYPE_CHECKING:
    from flows.loop.triggers import MonitorDecision

__all__ = [
    "ACTIONS",
    "EXPLICIT",
    "OUTCOME",
    "RETRAIN",
    "SOURCES",
    "fired_retrains",
    "outcome_of",
    "outcome_of_state",
    "outcome_summary",
    "record_automatic",
    "record_outcome",
    "record_request",
]

RETRAIN = "retrain"  # the decision's kind
OUTCOME = "retrain_outcome"  # the kind of the entry saying what the retrain did
SOURCES: tuple[str, ...] = ("monitor", "manual", "deployment")
EXPLICIT: tuple[str, ...] = ("manual", "deployment")  # requests a person made: never refused
ACTIONS: tuple[str, ...] = ("retrain", "none")  # what a fired monitor decision does: run the retrain, or record only


def fired_retrains(log: Path) -> list[dict[str, Any]]:
    """Every fired retrain decision in the log, oldest first, of any source."""
    return [e for e in read_decisions(log, kind=RETRAIN) if e.get("fired")]


def record_automatic(log: Path, decision: MonitorDecision, action: str, fleet_error: str | None) -> Decision:
    """Append the monitor's decision (fired or not), with every trigger's state, value and threshold."""
    return append_decision(
        log, "monitor", RETRAIN, decision.fired, decision.summary, decision.observed(),
        triggers=[t.as_dict() for t in decision.triggers], suppressed=decision.suppressed,
        would_fire=list(decision.would_fire), action=action if decision.fired else None, fleet_error=fleet_error,
    )


def record_request(log: Path, source: str, requested_by: str, cooldown_s: float, hold_s: float | None = None,
                   now: datetime | None = None, **extra: Any) -> Decision:
    """Append an explicit request (``manual`` or ``deployment``) as a fired retrain decision. It fires even
    inside a running hold (recorded as ``overrode_hold_s``) and holds the automatic triggers for ``hold_s``
    (default ``cooldown_s``)."""
    from flows.loop.triggers import running_hold

    if source not in EXPLICIT:
        raise ValueError(f"an explicit retrain request comes from one of {', '.join(EXPLICIT)}, not {source!r}")
    if hold_s is not None and hold_s < 0:
        raise ValueError(f"hold_s must be >= 0, not {hold_s}")
    now = now or datetime.now(UTC)
    hold = cooldown_s if hold_s is None else float(hold_s)
    running = running_hold(fired_retrains(log), cooldown_s)
    overrode = 0.0 if running is None else round(running.left_s(now), 1)
    summary = f"retrain requested ({source}: {requested_by}); holds automatic triggers for {hold:.0f} s"
    if overrode > 0 and running is not None:
        summary += f"; fired inside the hold of the {running.source} retrain ({overrode:.0f} s were left)"
    observed = {"requested_by": requested_by, "hold_s": hold, "overrode_hold_s": overrode}
    return append_decision(log, source, RETRAIN, True, summary, observed, action="retrain", hold_s=hold,
                           requested_by=requested_by, **extra)


def outcome_of(result: object, state: str, completed: bool, message: str | None) -> dict[str, Any]:
    """What a retrain did, from its result dict (``{"passed", "version", "release"?}``) and final state;
    a result that is no dict (the run failed before the gate decided) gives ``passed: None``."""
    if not isinstance(result, Mapping):
        return {"state": state, "completed": False, "passed": None, "candidate": None, "release": None,
                "channel": None, "message": message or str(result)}
    release = result.get("release") or {}
    return {"state": state, "completed": completed, "passed": bool(result.get("passed")),
            "candidate": result.get("version"), "release": release.get("version"),
            "channel": release.get("channel"), "message": message}


def outcome_of_state(state: Any) -> dict[str, Any]:
    """``outcome_of`` a finished retrain flow run's state (a Prefect ``State``: duck-typed, no import)."""
    return outcome_of(state.result(raise_on_failure=False), str(state.name), bool(state.is_completed()),
                      state.message)


def outcome_summary(outcome: Mapping[str, Any]) -> str:
    """One line for people: failed, blocked, published, or passed without publishing."""
    if outcome["passed"] is None:
        return f"retrain {outcome['state']}: {outcome['message']}"
    if not outcome["passed"]:
        return f"gate blocked candidate {outcome['candidate']}: {outcome['message']}"
    if outcome["release"] is not None:
        return f"gate passed; published release {outcome['release']} to {outcome['channel']}"
    return f"gate passed candidate {outcome['candidate']} (not published)"


def record_outcome(log: Path, source: str, outcome: Mapping[str, Any], decision_at: str, **extra: Any) -> Decision:
    """Append what the retrain decided at ``decision_at`` did (``fired``: the gate passed)."""
    return append_decision(log, source, OUTCOME, bool(outcome["passed"]), outcome_summary(outcome), outcome,
                           decision_at=decision_at, **extra)
