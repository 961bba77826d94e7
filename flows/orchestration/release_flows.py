"""Prefect flows and tasks around signed releases: publish after the gate, promote, roll back, refresh.

Thin drivers over the plain release operations (``flows.project_releases``: publish the candidate, move
a channel, keep ``data/champion`` in step) so that every change to what the fleet runs is a flow run in
the same Prefect history as the retraining that produced it. ``publish_task`` is the retrain flow's last
task (it initialises the repository and local file keys on first use, so a fresh clone ends with a signed
release); ``promote``/``rollback`` record the move in the loop log with source ``manual``
(``flows.loop.moves.record_manual_move``), exactly as ``edgeloop release promote/rollback`` does without
a Prefect server; ``refresh-releases`` re-signs metadata before it expires (artifact ``release-refresh``:
what was re-signed, every role's version and expiry).

Leaves out: the operations themselves (``flows.project_releases``, ``flows.releases``) and deciding
promotions (``flows.orchestration.promote``).
"""

from __future__ import annotations

from typing import Any

from edge.telemetry import switch_off

switch_off()  # a Prefect entrypoint (workers import it directly): before prefect loads

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from flows.loop.moves import record_manual_move  # noqa: E402
from flows.params import Params, load_params  # noqa: E402
from flows.project_releases import move_channel, publish_candidate, release_config  # noqa: E402

__all__ = ["promote_flow", "publish_task", "refresh_flow", "rollback_flow"]


@task(name="publish", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def publish_task(params: Params, paths: Paths) -> dict[str, Any]:
    from flows.loop.halts import halts_path, refuse_if_halted

    # a halted channel takes no automatic release: the retrain ends in one line saying so (flows.loop.halts)
    refuse_if_halted(halts_path(paths.resolve(params.loop.log)), params.release.channel,
                     "the candidate was not published")
    logger = get_run_logger()
    summary = publish_candidate(params, paths)
    if summary["repository_initialised"]:
        logger.warning(
            "initialised the release repository at %s with new keys; move the root key (%s) offline",
            params.release.repository, params.release.root_key,
        )
    create_markdown_artifact(
        key="release-published",
        markdown=f"Published release **{summary['version']}** to channel `{summary['channel']}`.",
        description="Signed release",
    )
    return summary


def _moved(kind: str, root: str, channel: str, version: int | None, create: bool = False, by: str | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    paths = Paths.at(root)
    params = load_params(paths.params)
    result = move_channel(params, paths, kind, channel, version, create)
    record_manual_move(params, paths, kind, result, by=by, **(extra or {}))
    create_markdown_artifact(
        key=f"release-{kind}",
        markdown=f"{kind}: channel `{channel}` moved from {result['from_version']} to {result['to_version']}.",
        description=f"Release channel {kind}",
    )
    return result


@flow(name="promote", description="Point a release channel at an existing signed release.")
def promote_flow(root: str, version: int, channel: str, create: bool = False, by: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point ``channel`` at release ``version``; a channel that does not exist yet needs ``create``. ``by``
    (who asked) and ``extra`` go into the loop log's entry."""
    return _moved("promote", root, channel, version, create, by, extra)


@flow(name="rollback", description="Move a release channel back to an earlier signed release.")
def rollback_flow(root: str, channel: str, to: int | None = None, by: str | None = None) -> dict[str, Any]:
    """Move ``channel`` back to ``to`` (default: the release it had before the current one); ``by``: who asked."""
    return _moved("rollback", root, channel, to, by=by)


@flow(name="refresh-releases", description="Re-sign timestamp/snapshot before they expire (fleet freeze guard).")
def refresh_flow(root: str, force: bool = False) -> dict[str, Any]:
    from flows.releases import refresh

    paths = Paths.at(root)
    params = load_params(paths.params)
    summary = dict(refresh(release_config(params, paths), force=force))
    create_markdown_artifact(key="release-refresh", markdown=_refresh_markdown(summary),
                             description=f"Re-signed {', '.join(summary['resigned'])}")
    get_run_logger().info("re-signed %s", ", ".join(summary["resigned"]))
    return summary


def _refresh_markdown(summary: dict[str, Any]) -> str:
    rows = [f"| {role} | {summary[role]['version']} | {summary[role]['expires']} |"
            for role in ("timestamp", "snapshot", "targets", "root")]
    lines = [f"Re-signed: **{', '.join(summary['resigned'])}**.", "", "| role | version | expires |",
             "|---|---|---|", *rows]
    if summary.get("root_near_expiry"):
        lines += ["", "The root expires soon: renew it with the offline root key (`edgeloop release rotate-key root`)."]
    return "\n".join(lines)
