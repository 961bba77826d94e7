"""The loop's decisions as short markdown pages, for the Prefect artifacts of the monitor and promote flows.

``decision_markdown``: the monitor's verdict (fired, suppressed by whose hold, or quiet) and one table
row per trigger. ``outcome_markdown``: what a retrain did. ``verdict_markdown``: a soak verdict, the
channel it moved, and one row per soak check. Pure string building; every table cell is escaped.
Leaves out: creating the artifacts (``flows.orchestration``) and the decisions themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.loop.promotion import Verdict
from flows.loop.retrains import outcome_summary
from flows.loop.triggers import MonitorDecision

__all__ = ["decision_markdown", "outcome_markdown", "verdict_markdown"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def decision_markdown(decision: MonitorDecision) -> str:
    """The decision as a markdown page: the verdict, then one table row per trigger."""
    verdict = "**FIRED**" if decision.fired else ("suppressed" if decision.suppressed else "quiet")
    held = f" (held by the {decision.held_by} retrain)" if decision.held_by else ""
    lines = [
        f"# Monitor decision: {verdict}", "", decision.summary, "",
        f"Last training: {decision.last_training or 'never'} ({decision.last_training_source}); "
        f"cooldown left: {decision.cooldown_left_s:.0f} s{held}", "",
        "| trigger | state | observed | threshold | detail |", "|---|---|---|---|---|",
    ]
    for t in decision.triggers:
        lines.append(f"| {t.name} | {t.state} | {_cell(t.value)} | {_cell(t.threshold)} | {_cell(t.detail)} |")
    return "\n".join(lines) + "\n"


def outcome_markdown(outcome: Mapping[str, Any]) -> str:
    return f"# Retrain outcome\n\n{outcome_summary(outcome)}\n"


def verdict_markdown(verdict: Verdict, fired: bool, move: Mapping[str, Any] | None, failure: str | None) -> str:
    """The soak verdict: what it decided, the move it made (or why it could not), each check."""
    lines = [f"**{verdict.action}** ({'acted' if fired else 'no change'}): {verdict.summary}", ""]
    if move is not None:
        lines += [f"Channel `{move['channel']}` moved from {move['from_version']} to {move['to_version']}.", ""]
    if failure:
        lines += [f"Could not act: {failure}", ""]
    if verdict.checks:
        lines += ["| check | passed | observed | required | note |", "|---|---|---|---|---|"]
        for name, check in verdict.checks.items():
            lines.append(f"| {name} | {'yes' if check['passed'] else 'no'} | {_cell(check['observed'])} | "
                         f"{_cell(check['required'])} | {_cell(check.get('note', ''))} |")
    lines += [f"- {reason}" for reason in verdict.reasons]
    return "\n".join(lines)
