"""Publish, read and roll back a channel's signed runner policy (the TUF target ``config/<channel>.json``).

``publish_policy`` checks a policy before anything is signed (the document's shape with
``edge.contracts.runner_policy.parse_policy``, the values with runner.toml's own readers through
``edge.policy_settings.check_settings``, for the channel's settings and for every device's merged settings),
then, under the repository lock, writes the policy as the next version (one more than the channel's
current one) in one new targets version with TUF custom ``{"config_version": N}``, then snapshot and
timestamp (the commit; ``repository_lock`` pushes the result to the bucket when one is configured, like
every release operation), then appends ``{"event": "config", ...}`` to the release history. A publish
whose settings and device overrides equal the current version's signs nothing (``PolicyPublish.published``
is false). ``rollback_policy`` republishes an earlier version's content under a new version that names it in
``content_of``: versions only grow, so a runner never has to accept an older version number.

Where each version's bytes are kept: in the target file TUF's consistent snapshots already store,
``targets/config/<sha256>.<channel>.json``, written atomically before the commit, never changed or deleted,
pushed to and pulled from the bucket with the rest of ``targets/``. The history line of each version
records its sha256 and length, so ``show --version``/``rollback --to`` find the bytes and check them
against that hash (and the document's own channel and version) before using them. No second copy, and
the signed targets metadata devices download does not grow with every version. A version committed by
a publish that crashed before its history line is logged by the next publish (``recovered``).

Leaves out: applying a policy (the runner, ``edge.policy_settings``), deciding what to publish (adaptive
collection), and the CLI (``edgeloop.config_cli``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge.contracts.errors import UserError
from edge.contracts.names import check_channel, check_known_channel
from edge.contracts.runner_policy import (
    PolicyError,
    RunnerPolicy,
    parse_policy,
    policy_bytes,
    policy_target,
)
from flows.releases.config import ReleaseConfig
from flows.releases.history import append_event, now_iso
from flows.releases.repository import LocalRepository, channel_pointers, repository_lock

__all__ = [
    "PolicyPublish",
    "check_policy",
    "current_policy",
    "policy_history",
    "policy_version",
    "publish_policy",
    "publish_policy_outcome",
    "rollback_policy",
]

CONFIG_EVENT = "config"
Settings = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PolicyPublish:
    policy: RunnerPolicy  # the channel's policy after the call (the new version, or the unchanged current one)
    published: bool  # False: the content equals the current version's, nothing was signed
    previous: int | None = None  # the version the channel had before


# --- checking --------------------------------------------------------------------------------------------

def _settings_problems(settings: Settings) -> list[str]:
    """runner.toml's own checks of the values (edge.policy_settings, imported here: it is the edge's)."""
    from edge.policy_settings import check_settings

    return list(check_settings(settings))


def check_policy(channel: str, settings: Any, devices: Any = None,
                 note: str = "") -> tuple[Settings, dict[str, Settings]]:
    """``(settings, devices)`` when they make a valid policy for ``channel``; else a UserError naming the key.

    Shape first (``parse_policy``: only ``REMOTE_KEYS``, valid device ids), then every value through the
    runner's readers, for the channel's settings and for each device's settings merged on top of them."""
    check_channel(channel)
    settings = {} if settings is None else settings
    devices = {} if devices is None else devices
    if not isinstance(note, str):
        raise UserError("policy not published: note: expected a string")
    probe = RunnerPolicy(channel=channel, version=1, settings=settings, devices=devices, note=note)
    try:
        json.dumps({"settings": settings, "devices": devices}, allow_nan=False)
        parsed = parse_policy(policy_bytes(probe))
    except PolicyError as exc:
        raise UserError(f"policy not published: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"policy not published: settings: values must be numbers, strings, booleans, lists or"
                        f" null ({exc})") from None
    problems = [f"settings.{p}" for p in _settings_problems(parsed.settings)]
    for device_id in sorted(parsed.devices):
        problems += [f"devices.{device_id}.{p}" for p in _settings_problems(parsed.for_device(device_id))
                     if f"settings.{p}" not in problems]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"policy not published: {problems[0]}{more}")
    return parsed.settings, parsed.devices


# --- reading ---------------------------------------------------------------------------------------------

def _stored_policy(repo: LocalRepository, info: TargetFile, channel: str) -> RunnerPolicy:
    """The stored bytes behind ``info``, checked against its length and hash, parsed."""
    path = repo.target_file(info)
    try:
        data = path.read_bytes()
        info.verify_length_and_hashes(data)
        policy = parse_policy(data)
    except OSError as exc:
        raise UserError(f"stored {info.path} is missing ({path}: {exc.strerror})") from None
    except (LengthOrHashMismatchError, PolicyError) as exc:
        raise UserError(f"stored {info.path} ({path}) is corrupt: {exc}") from None
    if policy.channel != channel:
        raise UserError(f"stored {info.path} names channel {policy.channel!r}, not {channel!r}")
    return policy


def _committed(repo: LocalRepository, channel: str) -> tuple[RunnerPolicy, TargetFile] | None:
    info = repo.targets().targets.get(policy_target(channel))
    if info is None:
        return None
    return _stored_policy(repo, info, channel), info


def current_policy(config: ReleaseConfig, channel: str) -> RunnerPolicy | None:
    """The channel's committed, signed policy (None when it has none). Takes no lock: committed files never
    change."""
    check_channel(channel)
    found = _committed(LocalRepository(config), channel)
    return None if found is None else found[0]


def _config_events(config: ReleaseConfig, channel: str) -> list[dict[str, Any]]:
    """The history's config lines of ``channel`` (oldest first); torn or foreign lines are skipped."""
    if not config.history_file.is_file():
        return []
    events = []
    for line in config.history_file.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (isinstance(event, dict) and event.get("event") == CONFIG_EVENT and event.get("channel") == channel
                and isinstance(event.get("version"), int) and isinstance(event.get("sha256"), str)):
            events.append(event)
    return events


def _event(policy: RunnerPolicy, info: TargetFile, targets_version: int, **extra: Any) -> dict[str, Any]:
    return {"event": CONFIG_EVENT, "channel": policy.channel, "version": policy.version,
            "content_of": policy.content_of, "sha256": info.hashes["sha256"], "length": info.length,
            "targets_version": targets_version, **extra}


def _version_info(events: list[dict[str, Any]], channel: str, version: int) -> TargetFile:
    for event in reversed(events):
        if event["version"] == version:
            return TargetFile(length=int(event.get("length", 0)), hashes={"sha256": event["sha256"]},
                              path=policy_target(channel))
    have = ", ".join(str(e["version"]) for e in events) or "none yet"
    raise UserError(f"channel {channel!r} has no runner policy version {version} (versions: {have})")


def policy_version(config: ReleaseConfig, channel: str, version: int) -> RunnerPolicy:
    """Version ``version`` of the channel's policy, from its stored bytes (checked against the history's hash)."""
    check_channel(channel)
    repo = LocalRepository(config)
    current = _committed(repo, channel)
    if current is not None and current[0].version == version:
        return current[0]
    policy = _stored_policy(repo, _version_info(_config_events(config, channel), channel, version), channel)
    if policy.version != version:
        raise UserError(f"stored config/{channel}.json for version {version} holds version {policy.version}")
    return policy


def policy_history(config: ReleaseConfig, channel: str) -> list[dict[str, Any]]:
    """Every version of the channel's policy, oldest first: version, time, content_of, note, published_at,
    sha256, current (whether the channel's signed policy is this version), and whether it was recovered."""
    check_channel(channel)
    repo = LocalRepository(config)
    committed = _committed(repo, channel)
    current = committed[0].version if committed else None
    rows: dict[int, dict[str, Any]] = {}
    for event in _config_events(config, channel):
        if current is None or event["version"] > current:
            continue  # a later history line than the committed chain: not a version devices can see
        row = {"version": event["version"], "time": event.get("time", ""), "content_of": event.get("content_of"),
               "sha256": event["sha256"], "recovered": bool(event.get("recovered")), "note": "",
               "published_at": "", "current": event["version"] == current}
        try:
            stored = _stored_policy(repo, _version_info([event], channel, event["version"]), channel)
            row.update(note=stored.note, published_at=stored.published_at)
        except UserError as exc:
            row["note"] = f"(bytes unavailable: {exc})"
        rows[event["version"]] = row
    if committed is not None and current not in rows:
        policy, info = committed
        rows[policy.version] = {"version": policy.version, "time": policy.published_at, "content_of": policy.content_of,
                                "sha256": info.hashes["sha256"], "recovered": True, "note": policy.note,
                                "published_at": policy.published_at, "current": True}
    return [rows[v] for v in sorted(rows)]


# --- writing ---------------------------------------------------------------------------------------------

def _reconcile(config: ReleaseConfig, committed: tuple[RunnerPolicy, TargetFile] | None, targets_version: int,
               events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log a committed version the history missed (a crash between commit and append)."""
    if committed is None:
        return events
    policy, info = committed
    if any(e["version"] == policy.version and e["sha256"] == info.hashes["sha256"] for e in events):
        return events
    event = _event(policy, info, targets_version, recovered=True)
    append_event(config, event)
    return [*events, event]


def _content(policy: RunnerPolicy) -> tuple[str, str]:
    return (json.dumps(policy.settings, sort_keys=True), json.dumps(policy.devices, sort_keys=True))


def _write(config: ReleaseConfig, channel: str, settings: Settings, devices: dict[str, Settings], note: str,
           create: bool, rollback_to: int | None) -> PolicyPublish:
    """Under the lock: the next version (or, for a rollback, ``rollback_to``'s content as the next version)."""
    with repository_lock(config):
        repo = LocalRepository(config)
        repo.prepare_signers("targets", "snapshot", "timestamp")
        targets = repo.targets()
        check_known_channel(channel, channel_pointers(targets), create)
        committed = _committed(repo, channel)
        events = _reconcile(config, committed, targets.version, _config_events(config, channel))
        current = committed[0] if committed else None
        content_of = None
        if rollback_to is not None:
            if current is None:
                raise UserError(f"channel {channel!r} has no runner policy to roll back")
            to = _rollback_target(channel, current, rollback_to, events)
            earlier = current if to == current.version else _stored_policy(
                repo, _version_info(events, channel, to), channel)
            if earlier.version != to:
                raise UserError(f"stored config/{channel}.json for version {to} holds version {earlier.version}")
            note = note or f"rollback to version {to}"
            # checked again: the runner's readers may have become stricter since that version was signed
            settings, devices = check_policy(channel, earlier.settings, earlier.devices, note)
            content_of = to
        version = 1 if current is None else current.version + 1
        policy = RunnerPolicy(channel=channel, version=version, settings=settings, devices=devices,
                              published_at=now_iso(), note=note, content_of=content_of)
        if current is not None and _content(current) == _content(policy):
            return PolicyPublish(current, published=False, previous=current.version)
        info = repo.store_target(policy_target(channel), data=policy_bytes(policy),
                                 custom={"config_version": version})
        with repo.edit_targets() as edited:
            edited.targets[info.path] = info
        repo.commit()
        append_event(config, _event(policy, info, repo.targets().version))
    return PolicyPublish(policy, published=True, previous=None if current is None else current.version)


def _origin(version: int, content_of: dict[int, int | None]) -> int:
    """The first version holding ``version``'s content (follows rollbacks of rollbacks)."""
    seen = set()
    while content_of.get(version) is not None and version not in seen:
        seen.add(version)
        version = int(content_of[version])  # type: ignore[arg-type]
    return version


def _rollback_target(channel: str, current: RunnerPolicy, to: int, events: list[dict[str, Any]]) -> int:
    """``to`` when named (> 0); else (``to == 0``) the content before the current one. Like a channel's
    rollback, repeated rollbacks walk further back: a rollback pops the stack of contents to its origin."""
    if to > 0:
        if to > current.version:
            raise UserError(f"channel {channel!r} has no runner policy version {to} (current: {current.version})")
        return to
    content_of = {int(e["version"]): e.get("content_of") for e in events}
    content_of[current.version] = current.content_of
    stack: list[int] = []
    for version in sorted(content_of):
        origin = _origin(version, content_of)
        if origin in stack:
            del stack[stack.index(origin) + 1:]
        else:
            stack.append(origin)
    if len(stack) < 2:
        raise UserError(f"channel {channel!r} has no earlier runner policy to roll back to (name one with --to)")
    return stack[-2]


def publish_policy_outcome(config: ReleaseConfig, channel: str, settings: dict[str, Any],
                           devices: dict[str, Any] | None = None, note: str = "",
                           create: bool = False) -> PolicyPublish:
    """Check, sign and publish ``settings`` (and per-device overrides) as the channel's next policy version;
    whether anything was published. The channel must exist (a channel pointer, or a default channel) unless
    ``create``."""
    checked, per_device = check_policy(channel, settings, devices, note)
    return _write(config, channel, checked, per_device, note, create, None)


def publish_policy(config: ReleaseConfig, channel: str, settings: dict[str, Any],
                   devices: dict[str, Any] | None = None, note: str = "", create: bool = False) -> RunnerPolicy:
    """``publish_policy_outcome``'s policy: the new version, or the current one when the content is unchanged."""
    return publish_policy_outcome(config, channel, settings, devices, note, create).policy


def rollback_policy_outcome(config: ReleaseConfig, channel: str, to: int | None = None,
                            note: str = "") -> PolicyPublish:
    """Republish version ``to``'s content (default: the content before the current one) as a new version."""
    check_channel(channel)
    if to is not None and (isinstance(to, bool) or not isinstance(to, int) or to < 1):
        raise UserError(f"--to: expected a version >= 1, got {to!r}")
    return _write(config, channel, {}, {}, note, False, 0 if to is None else to)


def rollback_policy(config: ReleaseConfig, channel: str, to: int | None = None) -> RunnerPolicy:
    """The new version with ``to``'s content (``content_of`` names it); unchanged when the content is the same."""
    return rollback_policy_outcome(config, channel, to).policy
