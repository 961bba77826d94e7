"""The ``promote-soaked`` Prefect flow: watch the canary release soak, then promote it, roll it back or wait.

One run gathers the evidence (``gather_evidence``): which release each channel points at and when the
canary channel moved to it (the release repository's ``history.jsonl``), the hub's fleet
(``GET /v1/fleet`` with the admin token: online canary devices running it, devices that blocked or
rolled it back), the labelled rows landed since then per model version (``flows.loop.estimates``,
IPW accuracy) and the candidate's gate accuracy. ``flows.loop.promotion.decide`` applies the soak
rules; a ``promote`` moves ``to_channel`` to the candidate and a ``rollback`` moves ``from_channel``
back to stable's release, both through ``flows.orchestration.release_flows.move_channel`` (the function behind the
``promote``/``rollback`` flows, which also brings ``data/champion`` in step). Every run, acting or not,
appends one decision to the loop log (source ``promote``) and creates the ``promotion-decision``
artifact. A hub that cannot be reached makes the run wait (recorded), never fail.

``build_promotion_deployment(root)`` schedules the flow every ``loop.promotion.interval_s``.
Leaves out: the rules themselves (``flows.loop.promotion``) and serving the deployment
(``flows.orchestration.deployments``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.telemetry import switch_off

switch_off()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from edge.contracts.errors import UserError  # noqa: E402
from edge.contracts.layout import Paths  # noqa: E402
from flows.hub_client import HubAdminClient, HubUnreachable  # noqa: E402
from flows.loop.log import append_decision  # noqa: E402
from flows.loop.promotion import (  # noqa: E402
    NO_ROWS,
    SoakEvidence,
    Verdict,
    channel_since,
    decide,
    devices_running,
    rejections,
)
from flows.params import Params, load_params  # noqa: E402

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = ["ARTIFACT_KEY", "DEPLOYMENT", "build_promotion_deployment", "gather_evidence", "promote_soaked",
           "read_fleet"]

ARTIFACT_KEY = "promotion-decision"
DEPLOYMENT = "promote-soaked"


def read_fleet(params: Params, paths: Paths, hub_url: str | None = None) -> tuple[dict[str, Any], str | None]:
    """(the ``GET /v1/fleet`` document, None) or ({}, why it could not be read)."""
    try:
        return HubAdminClient.for_project(paths.root, params.hub, url=hub_url).fleet(), None
    except HubUnreachable as exc:
        return {}, str(exc)


def gather_evidence(params: Params, paths: Paths, hub_url: str | None = None,
                    now: datetime | None = None) -> SoakEvidence:
    """Everything ``decide`` needs, read from the release repository, the hub and the landing zone."""
    from flows.loop.estimates import accuracy, load_uploads
    from flows.releases import ReleaseConfig, is_initialised, list_releases
    from flows.releases.history import read_events

    rules = params.loop.promotion
    now = now or datetime.now(UTC)
    config = ReleaseConfig.from_params(params, paths)
    releases = list_releases(config) if is_initialised(config) else []
    on = {channel: info for info in releases for channel in info.channels}
    candidate_info, stable_info = on.get(rules.from_channel), on.get(rules.to_channel)
    candidate = None if candidate_info is None else candidate_info.version
    stable = None if stable_info is None else stable_info.version
    if candidate is None or candidate == stable:
        return SoakEvidence(now, candidate, stable, None)
    since = channel_since(read_events(config), rules.from_channel, candidate)
    fleet, fleet_error = read_fleet(params, paths, hub_url)
    versions = [str(v) for v in (candidate, stable) if v is not None]
    rows = load_uploads(paths, params, since=since, model_versions=versions)
    label = params.schema.label.name
    by_version = {str(v): frame for v, frame in rows.groupby("model_version")} if len(rows) else {}
    return SoakEvidence(
        now=now, candidate=candidate, stable=stable, on_channel_since=since,
        devices=devices_running(fleet, rules.from_channel, candidate), rejections=rejections(fleet, candidate),
        candidate_accuracy=accuracy(by_version[str(candidate)], label) if str(candidate) in by_version else NO_ROWS,
        stable_accuracy=accuracy(by_version[str(stable)], label) if str(stable) in by_version else NO_ROWS,
        gate_accuracy=candidate_info.metrics.get("accuracy") if candidate_info is not None else None,
        fleet_error=fleet_error,
    )


def apply_verdict(params: Params, paths: Paths, verdict: Verdict, evidence: SoakEvidence) -> dict[str, Any] | None:
    """Move the channel the verdict names; the move (``from_version``/``to_version``) or None."""
    from flows.orchestration.release_flows import move_channel

    rules = params.loop.promotion
    if verdict.action == "promote":
        return move_channel(params, paths, "promote", rules.to_channel, evidence.candidate)
    if verdict.action == "rollback":
        return move_channel(params, paths, "rollback", rules.from_channel, verdict.rollback_to)
    return None


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _markdown(verdict: Verdict, fired: bool, move: dict[str, Any] | None, failure: str | None) -> str:
    lines = [f"**{verdict.action}** ({'acted' if fired else 'no change'}): {verdict.summary}", ""]
    if move is not None:
        lines += [f"Channel `{move['channel']}` moved from {move['from_version']} to {move['to_version']}.", ""]
    if failure:
        lines += [f"Could not act: {failure}", ""]
    if verdict.checks:
        lines += ["| check | passed | observed | required | note |", "|---|---|---|---|---|"]
        for name, check in verdict.checks.items():
            lines.append(f"| {name} | {'yes' if check['passed'] else 'no'} | {_fmt(check['observed'])} | "
                         f"{_fmt(check['required'])} | {check.get('note', '')} |")
    lines += [f"- {reason}" for reason in verdict.reasons]
    return "\n".join(lines)


@task(name="soak-evidence", cache_policy=NO_CACHE)
def evidence_task(params: Params, paths: Paths, hub_url: str | None) -> SoakEvidence:
    return gather_evidence(params, paths, hub_url)


@task(name="move-channel", cache_policy=NO_CACHE)
def move_task(params: Params, paths: Paths, verdict: Verdict, evidence: SoakEvidence) -> dict[str, Any] | None:
    return apply_verdict(params, paths, verdict, evidence)


@flow(name="promote-soaked", description="Promote the canary release to stable once soaked on healthy devices, "
                                         "or roll canary back; every decision is logged.")
def promote_soaked(root: str = ".", hub_url: str | None = None) -> dict[str, Any]:
    """One soak check of ``loop.promotion.from_channel``; returns the decision as logged."""
    logger = get_run_logger()
    paths = Paths.at(root)
    params = load_params(paths.params)
    evidence = evidence_task(params, paths, hub_url)
    verdict = decide(evidence, params.loop.promotion)
    move, failure = None, None
    try:
        move = move_task(params, paths, verdict, evidence)
    except UserError as exc:  # e.g. a rollback with no earlier release: recorded, the flow does not fail
        failure = str(exc)
    fired = move is not None and move["from_version"] != move["to_version"]
    summary = verdict.summary + (f" (could not act: {failure})" if failure else "")
    kind = "rollback" if verdict.action == "rollback" else "promote"
    entry = append_decision(
        paths.resolve(params.loop.log), "promote", kind, fired, summary, verdict.observed(evidence),
        action=verdict.action, candidate=evidence.candidate, stable=evidence.stable, reasons=list(verdict.reasons),
        move=move, failure=failure,
    ).to_dict()
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=_markdown(verdict, fired, move, failure),
                             description="Canary soak decision")
    logger.info("%s", summary)
    return entry


def build_promotion_deployment(root: Path) -> RunnerDeployment:
    """The ``promote-soaked`` deployment for the project at ``root``, every ``loop.promotion.interval_s``."""
    params = load_params(Paths.at(root).params)
    deployment = promote_soaked.to_deployment(
        name=DEPLOYMENT,
        interval=timedelta(seconds=params.loop.promotion.interval_s),
        parameters={"root": str(root)},
        description="Check the canary soak: promote to stable, roll canary back, or wait (see `edgeloop loop status`).",
        tags=["edgeloop"],
    )
    return deployment  # type: ignore[return-value]  # sync call: never a coroutine

