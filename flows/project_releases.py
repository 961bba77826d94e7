"""A project's releases, driven by its params.yaml: publish the gate's candidate and move channels, and keep
``data/champion`` (the model new candidates must beat) in step with the release the fleet trusts.

- ``publish_candidate``: sign and publish ``data/candidate`` (or another candidate folder) to
  ``release.channel``, creating the repository and local file keys on first use when asked to;
  publishing the same candidate twice never makes two releases (``already_published``);
- ``move_channel``: promote or roll back a channel (a promote to a channel that does not exist is
  refused unless ``create``: ``edge.contracts.names.check_known_channel``);
- ``check_move``: the user mistakes a move would refuse, found before anything starts (the CLI calls
  it before it starts a Prefect flow, so a typo is one line, not a failed flow run with a traceback).

Plain functions: the CLI, the demo and the Prefect flows (``flows.orchestration.release_flows``) call
the same ones. Leaves out: TUF itself (``flows.releases``), Prefect, and the loop log (a manual move
is recorded by ``flows.loop.moves``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.names import check_known_channel
from edge.contracts.release_layout import LINEAGE_FILES, MANIFEST_FILE, MODEL_FILE
from flows.champion_sync import model_digest, sync_champion
from flows.params import Params
from flows.releases import (
    ReleaseConfig,
    init_repository,
    is_initialised,
    list_channels,
    list_releases,
    promote,
    publish,
    rollback,
)

__all__ = [
    "already_published",
    "check_move",
    "ensure_repository",
    "move_channel",
    "publish_candidate",
    "release_config",
]

MOVES = ("promote", "rollback")


def release_config(params: Params, paths: Paths) -> ReleaseConfig:
    return ReleaseConfig.from_params(params, paths)


def ensure_repository(params: Params, paths: Paths) -> bool:
    """Create the TUF repository and local keys when absent (or a crashed init); True when it had to."""
    config = release_config(params, paths)
    if is_initialised(config):
        return False
    init_repository(config)
    return True


def declared_channels(params: Params) -> set[str]:
    """The channels params.yaml names (release.channel, loop.promotion's from and to): they may be created."""
    promotion = params.loop.promotion
    return {params.release.channel, promotion.from_channel, promotion.to_channel}


def publish_candidate(params: Params, paths: Paths, channel: str | None = None, candidate: Path | None = None,
                      initialise: bool = True, create: bool = False) -> dict[str, Any]:
    """Sign and publish a candidate folder (default ``data/candidate``) to ``channel`` (default
    ``release.channel``), then bring the champion in step. ``initialise`` creates a missing repository. A
    channel that neither exists nor is declared in params.yaml is refused unless ``create``."""
    initialised = ensure_repository(params, paths) if initialise else False
    folder = candidate or paths.candidate
    channel = channel or params.release.channel
    create = create or channel in declared_channels(params)
    earlier = already_published(params, paths, folder)
    if earlier is not None:  # publishing is idempotent: the same candidate never becomes two releases
        if list_channels(release_config(params, paths)).get(channel) == earlier:  # nothing to sign again
            champion = sync_champion(release_config(params, paths), params, paths)
        else:
            champion = move_channel(params, paths, "promote", channel, earlier, create=create)["champion"]
        return {"version": earlier, "channel": channel, "targets": [], "seconds": 0.0,
                "repository_initialised": initialised, "already_published": True, "champion": champion}
    lineage_dir = folder / "lineage"  # the exact files the gate hashed into the manifest's lineage
    lineage = {name: lineage_dir / name for name in LINEAGE_FILES if (lineage_dir / name).is_file()}
    config = release_config(params, paths)
    result = publish(config, folder, channel, lineage, create)
    summary = {**asdict(result), "repository_initialised": initialised, "already_published": False}
    summary["champion"] = sync_champion(config, params, paths)
    return summary


def already_published(params: Params, paths: Paths, folder: Path) -> int | None:
    """The release that already holds this candidate (same candidate id and model bytes), if any."""
    config = release_config(params, paths)
    manifest_file, model_file = folder / MANIFEST_FILE, folder / MODEL_FILE
    if not (is_initialised(config) and manifest_file.is_file() and model_file.is_file()):
        return None
    candidate_id = json.loads(manifest_file.read_text(encoding="utf-8")).get("version")
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    for info in list_releases(config):
        if info.candidate == candidate_id and model_digest(config, info.version) == digest:
            return int(info.version)
    return None


def move_channel(params: Params, paths: Paths, kind: str, channel: str, version: int | None,
                 create: bool = False) -> dict[str, Any]:
    """Promote (``version`` required; a new channel needs ``create``) or roll back a channel, then bring the
    champion in step. The move as a dict: ``channel``, ``from_version``, ``to_version``, ``champion``."""
    if kind not in MOVES:
        raise ValueError(f"kind must be one of {', '.join(MOVES)}, not {kind!r}")
    config = release_config(params, paths)
    if kind == "promote":
        if version is None:
            raise ValueError("promote needs a version")
        move = promote(config, version, channel, create)
    else:
        move = rollback(config, channel, version)
    result = asdict(move)
    result["champion"] = sync_champion(config, params, paths)
    return result


def check_move(params: Params, paths: Paths, kind: str, channel: str, version: int | None,
               create: bool = False) -> None:
    """Raise the ``UserError`` the move would raise for a missing repository, an unknown channel (promote
    without ``create``), a release that does not exist or a channel with nothing to roll back. Reads only."""
    config = release_config(params, paths)
    if not is_initialised(config):
        raise UserError(f"no release repository at {config.repository}: run `edgeloop release init` first")
    pointers = list_channels(config)
    if kind == "promote":
        check_known_channel(channel, pointers, create)
    elif channel not in pointers:
        raise UserError(f"channel {channel!r} has no release to roll back")
    have = sorted(info.version for info in list_releases(config))
    if (version is not None or kind == "promote") and version not in have:
        listed = ", ".join(map(str, have)) or "none yet"
        raise UserError(f"no release {version} in the repository (releases: {listed})")
