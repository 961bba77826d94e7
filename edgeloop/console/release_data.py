"""What the releases pages show, gathered once per request: the project, the release catalog, the fleet tally.

- ``project(request)``: the hub's project (params.yaml, folders, release config, loop log and halts file),
  re-read only when params.yaml changes;
- ``catalog(project)``: every release with its manifest (gate, metrics, lineage), files and channels, the
  channel pointers and each channel's rollback target. Reading 100 manifests costs tens of milliseconds,
  so the catalog is cached per repository and rebuilt only when ``timestamp.json`` or ``history.jsonl``
  changed (every committed move re-signs the timestamp);
- ``fleet_rows(sessions)``: each registered device's channel, revocation, and the model version and events
  of its last heartbeat in one column query (the hub's ``read_fleet_rows`` also builds ORM objects, the
  whole state, upload totals and certificate expiry, none of which the releases page needs);
- ``tally(rows)``: one pass over those rows: devices following each channel, running each
  version, and which devices rejected or rolled back each version (from their heartbeat's ``events``);
- ``rollout(...)``: per channel, devices on its release / expected, rejected, rolled back, and its halt.

Leaves out rendering (``release_pages``) and changing anything (``release_actions``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fastapi import Request
from sqlalchemy import select

from edge.contracts.layout import Paths
from edge.contracts.manifest import Manifest
from edge.contracts.release_layout import MANIFEST_FILE
from flows.loop.halts import Halt, halts_path, read_halts
from flows.params import Params, load_params
from flows.releases import ReleaseConfig, is_initialised
from flows.releases.catalog import read_manifest
from flows.releases.history import channel_stack, read_events
from flows.releases.repository import LocalRepository, bundle_versions, channel_pointers
from hub.db import Device, Heartbeat

__all__ = [
    "REJECTED_KINDS",
    "ROLLED_BACK_KINDS",
    "Catalog",
    "Project",
    "Release",
    "Rollout",
    "Tally",
    "catalog",
    "DeviceRow",
    "fleet_rows",
    "project",
    "rollout",
    "tally",
]

REJECTED_KINDS = frozenset({"blocked", "rejected", "release_rejected"})  # the device refused to activate it
ROLLED_BACK_KINDS = frozenset({"rolled_back", "watch_failed"})  # it ran, then did worse


@dataclass(frozen=True)
class Project:
    params: Params
    paths: Paths
    config: ReleaseConfig
    log: Path  # the loop's decision log
    halts_file: Path

    def halts(self) -> dict[str, Halt]:
        return read_halts(self.halts_file)


@dataclass(frozen=True)
class Release:
    version: int
    manifest: Manifest
    channels: tuple[str, ...]
    files: dict[str, tuple[int, str]]  # name -> (bytes, sha256)


@dataclass(frozen=True)
class Catalog:
    releases: tuple[Release, ...]  # newest first
    pointers: dict[str, int]  # channel -> release
    previous: dict[str, int | None]  # channel -> the release a rollback goes back to (None: nothing)
    history: tuple[dict[str, Any], ...]  # channel moves, oldest first

    def get(self, version: int) -> Release | None:
        return next((r for r in self.releases if r.version == version), None)


@dataclass
class Tally:
    following: Counter[str] = field(default_factory=Counter)  # channel -> unrevoked devices following it
    on: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, version) -> devices running it
    running: Counter[str] = field(default_factory=Counter)  # version -> devices running it (any channel)
    rejected: dict[str, set[str]] = field(default_factory=dict)  # version -> devices that refused it
    rolled_back: dict[str, set[str]] = field(default_factory=dict)  # version -> devices that went back from it


@dataclass(frozen=True)
class Rollout:
    channel: str
    version: int
    on_it: int
    expected: int
    rejected: int
    rolled_back: int
    halt: Halt | None

    @property
    def will_update(self) -> int:
        return self.expected - self.on_it


_lock = threading.Lock()
_projects: dict[Path, tuple[int, Project]] = {}
_catalogs: dict[Path, tuple[tuple[Any, ...], Catalog]] = {}


def project(request: Request) -> Project:
    """The project of the hub serving ``request`` (params.yaml read again only when it changed)."""
    paths = Paths.at(request.app.state.settings.root)
    stamp = paths.params.stat().st_mtime_ns
    with _lock:
        cached = _projects.get(paths.root)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    found = Project(params, paths, ReleaseConfig.from_params(params, paths), log, halts_path(log))
    with _lock:
        _projects[paths.root] = (stamp, found)
    return found


def _stamp(config: ReleaseConfig) -> tuple[Any, ...]:
    out: list[Any] = []
    for file in (config.metadata_dir / "timestamp.json", config.history_file):
        try:
            st = file.stat()
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except FileNotFoundError:
            out += [None, None, None]
    return tuple(out)


def catalog(found: Project) -> Catalog:
    """Every release, newest first, with pointers and rollback targets (cached until the repository changes)."""
    config = found.config
    if not is_initialised(config):
        return Catalog((), {}, {}, ())
    stamp = _stamp(config)
    with _lock:
        cached = _catalogs.get(config.repository)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    repo = LocalRepository(config)
    targets = repo.targets()
    pointers = channel_pointers(targets)
    releases = []
    for version, files in sorted(bundle_versions(targets).items(), reverse=True):
        releases.append(Release(
            version, read_manifest(repo, files[MANIFEST_FILE]),
            tuple(sorted(c for c, v in pointers.items() if v == version)),
            {name: (int(info.length), str(info.hashes["sha256"])) for name, info in sorted(files.items())},
        ))
    events = read_events(config)
    previous = {}
    for channel in pointers:
        stack = channel_stack(events, channel)
        previous[channel] = stack[-2] if len(stack) >= 2 and stack[-1] == pointers[channel] else None
    built = Catalog(tuple(releases), pointers, previous, tuple(events))
    with _lock:
        _catalogs[config.repository] = (stamp, built)
    return built


class DeviceRow(NamedTuple):
    device_id: str
    channel: str
    revoked: bool
    model_version: str | None  # what its last heartbeat runs; None: never heard from (or nothing active)
    events: list[dict[str, Any]] | None  # its last heartbeat's events


def fleet_rows(sessions: Any) -> list[DeviceRow]:
    """Every registered device with the two parts of its last heartbeat the page needs (one query; the
    database extracts them from the state JSON, so a request makes a few objects per device, not the whole
    state: fewer full garbage collections in a hub holding many objects)."""
    query = (select(Device.device_id, Device.channel, Device.revoked_at.is_not(None),
                    Heartbeat.state["model_version"].as_string(), Heartbeat.state["events"])
             .outerjoin(Heartbeat, Heartbeat.device_id == Device.device_id))
    with sessions() as session:
        return [DeviceRow(str(d), str(c), bool(r), None if v is None else str(v), e if isinstance(e, list) else None)
                for d, c, r, v, e in session.execute(query)]


def tally(rows: Iterable[DeviceRow]) -> Tally:
    """One pass over ``fleet_rows``."""
    out = Tally()
    for row in rows:
        if not row.revoked:
            out.following[row.channel] += 1
            if row.model_version is not None:
                out.on[(row.channel, row.model_version)] += 1
                out.running[row.model_version] += 1
        for event in row.events or ():
            kind = event.get("kind") if isinstance(event, dict) else None
            if kind in REJECTED_KINDS or kind in ROLLED_BACK_KINDS:
                bucket = out.rejected if kind in REJECTED_KINDS else out.rolled_back
                bucket.setdefault(str(event.get("version")), set()).add(row.device_id)
    return out


def rollout(channel: str, version: int, counts: Tally, halts: dict[str, Halt]) -> Rollout:
    key = str(version)
    return Rollout(channel, version, counts.on[(channel, key)], counts.following[channel],
                   len(counts.rejected.get(key, ())), len(counts.rolled_back.get(key, ())), halts.get(channel))
