"""Channel pointers: promote a release to a channel, roll a channel back, and the pointer itself.

A channel is the signed target ``channels/<name>.json``; its bytes and its TUF ``custom`` field both
say ``{"version": N, "model": "bundles/N/model.onnx", "manifest": "bundles/N/manifest.json"}`` (the
bytes also name the channel). Moving a channel writes one small pointer file and one new targets
version, then snapshot and timestamp: no bundle bytes are added.

Leaves out: adding bundles (``publish``), the history file format (``history``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge.contracts.errors import UserError
from edge.contracts.names import check_channel, check_known_channel
from edge.contracts.release_layout import (
    channel_target,
    pointer_bytes,
    pointer_custom,
)
from flows.releases.config import ReleaseConfig
from flows.releases.history import append_event, channel_stack, reconcile
from flows.releases.repository import LocalRepository, bundle_versions, channel_pointers, repository_lock


@dataclass(frozen=True)
class ChannelMove:
    channel: str
    from_version: int | None
    to_version: int


def store_pointer(repo: LocalRepository, channel: str, version: int) -> TargetFile:
    """Write the pointer file for ``channel`` -> ``version``; its TargetFile (not yet in metadata)."""
    return repo.store_target(
        channel_target(channel), data=pointer_bytes(channel, version), custom=pointer_custom(version)
    )


def _require_version(repo: LocalRepository, version: int) -> None:
    known = bundle_versions(repo.targets())
    if version not in known:
        have = ", ".join(map(str, sorted(known))) or "none yet"
        raise UserError(f"no release {version} in the repository (releases: {have})")


def move_channel(config: ReleaseConfig, channel: str, to: int | None, event: str, create: bool = False) -> ChannelMove:
    """Point ``channel`` at release ``to`` (rollback: default = the version before the current one). A promote
    to a channel that does not exist yet is refused unless ``create`` (a typo must not make a channel)."""
    check_channel(channel)
    with repository_lock(config):
        repo = LocalRepository(config)
        repo.prepare_signers("targets", "snapshot", "timestamp")
        pointers = channel_pointers(repo.targets())
        events = reconcile(config, pointers, repo.targets().version)
        current = pointers.get(channel)
        if event == "promote":
            check_known_channel(channel, pointers, create)
        if event == "rollback":
            to = _rollback_target(channel, current, to, events)
        assert to is not None
        _require_version(repo, to)
        if current == to:
            return ChannelMove(channel, current, to)
        info = store_pointer(repo, channel, to)
        with repo.edit_targets() as targets:
            targets.targets[info.path] = info
        repo.commit()
        append_event(config, {"event": event, "channel": channel, "from": current, "to": to,
                              "targets_version": repo.targets().version})
    return ChannelMove(channel, current, to)


def _rollback_target(channel: str, current: int | None, to: int | None, events: list[dict[str, Any]]) -> int:
    if current is None:
        raise UserError(f"channel {channel!r} has no release to roll back")
    if to is not None:
        return to
    stack = channel_stack(events, channel)
    if len(stack) < 2:
        raise UserError(f"channel {channel!r} has no earlier release to roll back to (name one with --to)")
    return stack[-2]


def promote(config: ReleaseConfig, version: int, channel: str, create: bool = False) -> ChannelMove:
    """Point ``channel`` at existing release ``version`` (only the pointer moves); a new channel needs ``create``."""
    return move_channel(config, channel, version, "promote", create)


def rollback(config: ReleaseConfig, channel: str, to: int | None = None) -> ChannelMove:
    """Point ``channel`` back at ``to``, or at the version it had before the current one."""
    return move_channel(config, channel, to, "rollback")
