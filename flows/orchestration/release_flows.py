"""Prefect flows and tasks around signed releases: publish after the gate, promote, rollback, refresh.

Thin drivers over ``flows.releases`` (which knows TUF) so that every change to what the fleet runs is a
flow run in the same Prefect history as the retraining that produced it. ``publish_candidate`` is the
retrain flow's last task; it initialises the repository (and local file keys) on first use so a fresh
clone ends with a signed release. Keeps ``data/champion/`` (the model new candidates must beat) in step
with the release the fleet trusts. A manual promote or rollback (these flows, or ``edgeloop release
promote/rollback`` without a Prefect server) is recorded in the loop log with source ``manual``
(``record_manual_move``), beside the ``promote-soaked`` flow's own decisions. Does not decide
promotions by itself (``flows.orchestration.promote`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.telemetry import switch_off

switch_off()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE  # noqa: E402
from flows.champion_sync import model_digest as sync_model_digest  # noqa: E402
from flows.champion_sync import sync_champion  # noqa: E402
from flows.params import Params, load_params  # noqa: E402

LINEAGE_FILES = ("dvc.lock", "params.yaml")


def _config(params: Params, paths: Paths) -> Any:
    from flows.releases import ReleaseConfig

    return ReleaseConfig.from_params(params, paths)


def ensure_repository(params: Params, paths: Paths) -> bool:
    """Create the TUF repository and local keys when absent (or a crashed init); True when it had to."""
    from flows.releases import init_repository, is_initialised

    config = _config(params, paths)
    if is_initialised(config):
        return False
    init_repository(config)
    return True


def publish_candidate(
    params: Params,
    paths: Paths,
    channel: str | None = None,
    candidate: Path | None = None,
    initialise: bool = True,
) -> dict[str, Any]:
    """Sign and publish a candidate folder (default ``data/candidate``) to ``channel`` (default
    ``release.channel``), then bring the champion in step. ``initialise`` creates a missing repository."""
    from dataclasses import asdict

    from flows.releases import publish

    initialised = ensure_repository(params, paths) if initialise else False
    folder = candidate or paths.candidate
    channel = channel or params.release.channel
    earlier = already_published(params, paths, folder)
    if earlier is not None:  # publishing is idempotent: the same candidate never becomes two releases
        move = move_channel(params, paths, "promote", channel, earlier)
        return {"version": earlier, "channel": channel, "targets": [], "seconds": 0.0,
                "repository_initialised": initialised, "already_published": True, "champion": move["champion"]}
    lineage_dir = folder / "lineage"  # the exact files the gate hashed into the manifest's lineage
    lineage = {name: lineage_dir / name for name in LINEAGE_FILES if (lineage_dir / name).is_file()}
    result = publish(_config(params, paths), folder, channel, lineage)
    summary = {**asdict(result), "repository_initialised": initialised, "already_published": False}
    summary["champion"] = sync_champion(_config(params, paths), params, paths)
    return summary


def already_published(params: Params, paths: Paths, folder: Path) -> int | None:
    """The release that already holds this candidate (same candidate id and model bytes), if any."""
    import hashlib
    import json

    from flows.releases import is_initialised, list_releases

    config = _config(params, paths)
    manifest_file, model_file = folder / MANIFEST_FILE, folder / MODEL_FILE
    if not (is_initialised(config) and manifest_file.is_file() and model_file.is_file()):
        return None
    candidate_id = json.loads(manifest_file.read_text(encoding="utf-8")).get("version")
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    for info in list_releases(config):
        if info.candidate == candidate_id and sync_model_digest(config, info.version) == digest:
            return int(info.version)
    return None


def move_channel(params: Params, paths: Paths, kind: str, channel: str, version: int | None,
                 create: bool = False) -> dict[str, Any]:
    """Promote (``version`` required) or roll back a channel, then bring the champion in step."""
    from dataclasses import asdict

    from flows.releases import promote, rollback

    config = _config(params, paths)
    if kind == "promote":
        if version is None:
            raise ValueError("promote needs a version")
        move = promote(config, version, channel, create)
    else:
        move = rollback(config, channel, version)
    result = asdict(move)
    result["champion"] = sync_champion(config, params, paths)
    return result


@task(name="publish", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def publish_task(params: Params, paths: Paths) -> dict[str, Any]:
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


def record_manual_move(params: Params, paths: Paths, kind: str, move: dict[str, Any]) -> None:
    """Append a manual channel move (``promote`` or ``rollback``) to the loop log, like the loop's own."""
    from flows.loop.log import append_decision

    channel, before, after = move["channel"], move["from_version"], move["to_version"]
    fired = before != after
    summary = (f"manual {kind}: channel {channel} {before or '-'} -> {after}" if fired
               else f"manual {kind}: channel {channel} already points at release {after}; nothing changed")
    append_decision(paths.resolve(params.loop.log), "manual", kind, fired, summary,
                    {"channel": channel, "from_version": before, "to_version": after}, action=kind, move=move)


def _moved(kind: str, root: str, channel: str, version: int | None, create: bool = False) -> dict[str, Any]:
    paths = Paths.at(root)
    params = load_params(paths.params)
    result = move_channel(params, paths, kind, channel, version, create)
    record_manual_move(params, paths, kind, result)
    create_markdown_artifact(
        key=f"release-{kind}",
        markdown=f"{kind}: channel `{channel}` moved from {result['from_version']} to {result['to_version']}.",
        description=f"Release channel {kind}",
    )
    return result


@flow(name="promote", description="Point a release channel at an existing signed release.")
def promote_flow(root: str, version: int, channel: str, create: bool = False) -> dict[str, Any]:
    return _moved("promote", root, channel, version, create)


@flow(name="rollback", description="Move a release channel back to an earlier signed release.")
def rollback_flow(root: str, channel: str, to: int | None = None) -> dict[str, Any]:
    return _moved("rollback", root, channel, to)


@flow(name="refresh-releases", description="Re-sign timestamp/snapshot before they expire (fleet freeze guard).")
def refresh_flow(root: str, force: bool = False) -> dict[str, Any]:
    from flows.releases import refresh

    paths = Paths.at(root)
    params = load_params(paths.params)
    return dict(refresh(_config(params, paths), force=force))

