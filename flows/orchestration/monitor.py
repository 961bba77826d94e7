"""The Prefect ``monitor`` flow: observe, decide, record, and retrain when a trigger fires.

One run: gather observations (flows.loop.observe), decide with the triggers and the cooldown
(flows.loop.triggers, judged against the last FIRED retrain decision in the loop log), append the
decision to the loop log (fired or not, every trigger's state, value and threshold) and create the
``monitor-decision`` markdown artifact. When it fired and ``action == "retrain"``, it runs the existing
``retrain`` flow as a subflow and records its outcome (gate passed or blocked, the published release)
as a second log entry (kind ``retrain_outcome``) and the ``monitor-retrain-outcome`` artifact.

The decision is logged BEFORE the retrain runs, so a monitor run that starts while a long retrain is
still going sees the fired decision and is held by the cooldown (no storm), and a crash during the
retrain still leaves the decision on record. ``action="none"`` records the decision without running
anything (for callers that retrain themselves).

Leaves out: promotion (flows.loop.promotion), the schedule (flows.orchestration.deployments).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge.telemetry import switch_off

switch_off()  # a Prefect entrypoint (workers import it directly): before prefect loads

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from flows.loop.log import append_decision, last_decision  # noqa: E402
from flows.loop.observe import gather  # noqa: E402
from flows.loop.triggers import MonitorDecision, decide  # noqa: E402
from flows.params import Params, load_params  # noqa: E402

__all__ = ["ACTIONS", "decision_markdown", "monitor", "retrain_outcome"]

ACTIONS = ("retrain", "none")
SOURCE = "monitor"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def decision_markdown(decision: MonitorDecision) -> str:
    """The decision as a markdown page: the verdict, then one table row per trigger."""
    verdict = "**FIRED**" if decision.fired else ("suppressed" if decision.suppressed else "quiet")
    lines = [
        f"# Monitor decision: {verdict}", "", decision.summary, "",
        f"Last training: {decision.last_training or 'never'} ({decision.last_training_source}); "
        f"cooldown left: {decision.cooldown_left_s:.0f} s", "",
        "| trigger | state | observed | threshold | detail |", "|---|---|---|---|---|",
    ]
    for t in decision.triggers:
        lines.append(f"| {t.name} | {t.state} | {_cell(t.value)} | {_cell(t.threshold)} | {_cell(t.detail)} |")
    return "\n".join(lines) + "\n"


def retrain_outcome(state: Any) -> dict[str, Any]:
    """What the retrain subflow did: ran, gate passed, candidate and published release, message."""
    result = state.result(raise_on_failure=False)
    if not isinstance(result, dict):  # the flow crashed before a gate decision
        return {"state": state.name, "completed": False, "passed": None, "candidate": None, "release": None,
                "message": state.message or str(result)}
    release = result.get("release") or {}
    return {
        "state": state.name, "completed": bool(state.is_completed()), "passed": bool(result.get("passed")),
        "candidate": result.get("version"), "release": release.get("version"), "channel": release.get("channel"),
        "message": state.message,
    }


def _outcome_summary(outcome: dict[str, Any]) -> str:
    if outcome["passed"] is None:
        return f"retrain {outcome['state']}: {outcome['message']}"
    if not outcome["passed"]:
        return f"gate blocked candidate {outcome['candidate']}: {outcome['message']}"
    if outcome["release"] is not None:
        return f"gate passed; published release {outcome['release']} to {outcome['channel']}"
    return f"gate passed candidate {outcome['candidate']} (not published)"


def refresh_estimates(paths: Paths, params: Params) -> None:
    """Recompute the IPW fleet estimates (data/loop/estimates.json) from every edge row landed so far."""
    from flows.loop.estimates import fleet_estimates, load_uploads, write_estimates

    write_estimates(paths, fleet_estimates(load_uploads(paths, params), params))


@flow(name="monitor", description="Decide from fleet drift, accuracy, data volume and schedule whether to retrain.")
def monitor(root: str = ".", hub_url: str | None = None, action: str = "retrain") -> dict[str, Any]:
    """One monitor pass for the project at ``root``; ``action`` is ``retrain`` (run the retrain flow
    when fired) or ``none`` (record only). Returns the decision (and the retrain outcome)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    logger = get_run_logger()
    paths = Paths.at(root)
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    last_fired = last_decision(log, kind="retrain", fired=True)
    observations = gather(paths, params, last_fired, hub_url)
    refresh_estimates(paths, params)  # the fleet page and the promote flow read the same numbers
    decision = decide(observations, params.loop.monitor, datetime.now(UTC), last_fired)
    entry = append_decision(
        log, SOURCE, "retrain", decision.fired, decision.summary, decision.observed(),
        triggers=[t.as_dict() for t in decision.triggers], suppressed=decision.suppressed,
        would_fire=list(decision.would_fire), action=action if decision.fired else None,
        fleet_error=observations.fleet_error,
    )
    create_markdown_artifact(markdown=decision_markdown(decision), key="monitor-decision",
                             description=decision.summary)
    logger.info("monitor: %s", decision.summary)
    result: dict[str, Any] = {"decision": decision.as_dict(), "at": entry.at, "outcome": None}
    if not decision.fired or action == "none":
        return result
    from flows.orchestration.retrain import retrain

    outcome = retrain_outcome(retrain(root=str(paths.root), return_state=True))
    summary = _outcome_summary(outcome)
    append_decision(log, SOURCE, "retrain_outcome", bool(outcome["passed"]), summary, outcome, decision_at=entry.at)
    create_markdown_artifact(markdown=f"# Retrain outcome\n\n{summary}\n", key="monitor-retrain-outcome",
                             description=summary)
    logger.info("monitor: %s", summary)
    return result | {"outcome": outcome}
