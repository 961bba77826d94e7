"""Channel moves as loop decisions: the soak verdict acted on and recorded, and manual moves recorded beside it.

- ``apply_verdict``: a ``promote`` verdict points ``loop.promotion.to_channel`` at the candidate, a
  ``rollback`` moves ``from_channel`` back (``flows.project_releases.move_channel``: the champion
  follows); ``wait`` moves nothing, and neither does a verdict whose channel is halted
  (``flows.loop.halts``: a ``UserError`` the flow records as "could not act");
- ``record_verdict``: one loop-log entry per soak check, acting or not (source ``promote``);
- ``record_manual_move``: a promote or rollback a person made (``edgeloop release promote/rollback``,
  the ``promote``/``rollback`` flows) as a decision with source ``manual``.

Leaves out: the soak rules (``flows.loop.promotion``), gathering the evidence (``flows.loop.evidence``)
and Prefect (``flows.orchestration.promote`` and ``release_flows`` call these).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.contracts.layout import Paths
from flows.loop.halts import halts_path, refuse_if_halted
from flows.loop.log import append_decision
from flows.loop.promotion import SoakEvidence, Verdict
from flows.params import Params

__all__ = ["apply_verdict", "record_manual_move", "record_verdict"]


def apply_verdict(params: Params, paths: Paths, verdict: Verdict, evidence: SoakEvidence) -> dict[str, Any] | None:
    """Move the channel the verdict names; the move (``from_version``/``to_version``) or None."""
    from flows.project_releases import move_channel

    rules = params.loop.promotion
    if verdict.action in ("promote", "rollback"):  # a halted channel never moves by itself: "could not act"
        channel = rules.to_channel if verdict.action == "promote" else rules.from_channel
        refuse_if_halted(halts_path(paths.resolve(params.loop.log)), channel, f"the {verdict.action} waits")
    if verdict.action == "promote":
        # never creates to_channel: a typo in params.yaml must not make a channel no device follows
        return move_channel(params, paths, "promote", rules.to_channel, evidence.candidate)
    if verdict.action == "rollback":
        return move_channel(params, paths, "rollback", rules.from_channel, verdict.rollback_to)
    return None


def record_verdict(log: Path, verdict: Verdict, evidence: SoakEvidence, move: Mapping[str, Any] | None,
                   failure: str | None) -> dict[str, Any]:
    """Append one soak decision (fired: a channel actually moved); the entry as logged."""
    fired = move is not None and move["from_version"] != move["to_version"]
    summary = verdict.summary + (f" (could not act: {failure})" if failure else "")
    kind = "rollback" if verdict.action == "rollback" else "promote"
    return append_decision(
        log, "promote", kind, fired, summary, verdict.observed(evidence), action=verdict.action,
        candidate=evidence.candidate, stable=evidence.stable, reasons=list(verdict.reasons),
        move=None if move is None else dict(move), failure=failure,
    ).to_dict()


def record_manual_move(params: Params, paths: Paths, kind: str, move: Mapping[str, Any], by: str | None = None,
                       **extra: Any) -> None:
    """Append a manual channel move (``promote`` or ``rollback``) to the loop log, like the loop's own;
    ``by``: who made it (e.g. "alice via console"), ``extra``: more fields for the entry."""
    channel, before, after = move["channel"], move["from_version"], move["to_version"]
    fired = before != after
    summary = (f"manual {kind}: channel {channel} {before or '-'} -> {after}" if fired
               else f"manual {kind}: channel {channel} already points at release {after}; nothing changed")
    if by:
        summary += f" (by {by})"
    append_decision(paths.resolve(params.loop.log), "manual", kind, fired, summary,
                    {"channel": channel, "from_version": before, "to_version": after}, action=kind, move=dict(move),
                    **({"by": by} if by else {}), **extra)
