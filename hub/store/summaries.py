"""Summary files: one JSON document per (device, key), stored byte for byte, written once, never changed.

A summary lives at ``<folder>/<device_id>/<key>.json`` (the folder is ``HubSettings.summaries``, i.e.
``Paths.hub_summaries``); the file is the record (no table). It is written to a temp file, fsynced,
given its ``stored_at`` (from the hub's clock) as modification time, made read-only and hard-linked to
its name, which fails if the name exists: exactly one of racing writers creates it. ``stored_at`` is
read back from the file, so the first answer and every retry agree. Leaves out checking the body
(hub.checks.summaries) and reading summaries for the loop (the cloud reads the folder).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.atomic import fsync_dir
from edge.contracts.names import BATCH_ID_PATTERN, is_valid_device_id

__all__ = ["StoredSummary", "find_summary", "put_summary"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXTENSION = ".json"


@dataclass(frozen=True)
class StoredSummary:
    device_id: str
    summary_id: str
    bytes: int
    stored_at: datetime  # UTC, aware
    location: str  # logical key: <folder name>/<device_id>/<key>.json


def _path(folder: Path, device_id: str, key: str) -> Path:
    if not is_valid_device_id(device_id) or not BATCH_ID_PATTERN.match(key):
        raise ValueError("unsafe device id or key")
    return folder / device_id / f"{key}{EXTENSION}"


def _stored(folder: Path, path: Path, device_id: str, key: str) -> StoredSummary:
    stat = path.stat()
    stored_at = EPOCH + timedelta(microseconds=stat.st_mtime_ns // 1000)
    return StoredSummary(device_id, key, stat.st_size, stored_at, f"{folder.name}/{device_id}/{key}{EXTENSION}")


def find_summary(folder: Path, device_id: str, key: str) -> StoredSummary | None:
    """The stored summary ``key`` of ``device_id``, if there is one."""
    path = _path(folder, device_id, key)
    return _stored(folder, path, device_id, key) if path.is_file() else None


def put_summary(folder: Path, device_id: str, key: str, body: bytes, now: datetime) -> tuple[StoredSummary, bool]:
    """Store ``body`` as summary ``key`` (its sha256, checked by the caller) of ``device_id`` at ``now``;
    (what is stored, True), or (the summary stored first, False) when it is there already."""
    path = _path(folder, device_id, key)
    if path.is_file():
        return _stored(folder, path, device_id, key), False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        stamp = (now - EPOCH) // timedelta(microseconds=1) * 1000
        os.utime(tmp, ns=(stamp, stamp))
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)  # fails when the name exists: exactly one racing writer creates it
        except FileExistsError:
            return _stored(folder, path, device_id, key), False
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return _stored(folder, path, device_id, key), True
