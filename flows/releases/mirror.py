"""The release repository in an S3 bucket: pushed in commit order after every change, pulled before one.

Devices fetch releases from the bucket's HTTP URL (or a CDN in front of it) with python-tuf; the
layout is the folder's: ``<prefix>/metadata/`` and ``<prefix>/targets/`` (consistent snapshots, so every
file but ``timestamp.json`` and ``root.json`` is written once under a new name). The folder
(``release.repository``) stays the publisher's working copy: signing, the writer lock and the history
happen there, exactly as without a bucket.

``push`` uploads what the bucket lacks in the order that keeps every state it can show consistent:
target files first, then ``N.root.json`` and ``N.targets.json``, then ``N.snapshot.json``, then
``root.json``, and ``timestamp.json`` last (the commit point for devices), then ``history.jsonl``.
Each file is one PUT of the whole object (complete or absent). A push cut short anywhere leaves the
bucket's ``timestamp.json`` at the previous release, which names only files already there: devices
keep seeing the previous consistent release, and the next push (any release operation, or
``edgeloop release refresh``) uploads the rest. Versioned files get a year-long immutable
Cache-Control and ``timestamp.json``/``root.json``/``history.jsonl`` get ``no-cache``, so a CDN can sit
in front.

``pull`` brings the folder up to the bucket when the bucket's state is not already in the folder
(another host published, this host is new, or it lost a race): it downloads what the folder lacks or
holds differently, the timestamp last. A folder ahead of the bucket (a push that did not finish: it
holds the snapshot the bucket's timestamp names) is kept as it is, and the next push completes it.

Two publishers on different hosts (the writer lock is per host): a versioned file is created only if
its key is free (``If-None-Match: *``, a conditional PUT AWS S3, MinIO and moto honour), and one the
bucket already holds with other bytes stops the push before anything is written. So the loser's push
fails before its ``timestamp.json`` and the bucket stays the winner's; its next operation pulls the
winner's state (the loser's folder does not hold the winner's snapshot). Run one publisher at
a time all the same (e.g. a Prefect concurrency limit): the loser's operation has to be redone.

Leaves out: deleting anything from the bucket, and keys (never uploaded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.atomic import write_bytes_atomic
from edge.contracts.errors import UserError

__all__ = ["Mirror", "pull", "push"]

SCHEME = "s3://"
TIMESTAMP, ROOT, HISTORY = "metadata/timestamp.json", "metadata/root.json", "history.jsonl"
IMMUTABLE = "public, max-age=31536000, immutable"
MUTABLE = "no-cache"


@dataclass(frozen=True)
class Mirror:
    url: str  # s3://bucket/prefix
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(SCHEME) or not self.url[len(SCHEME):].strip("/"):
            raise UserError(f"storage.releases_mirror: expected s3://bucket/prefix, got {self.url!r}")

    def filesystem(self) -> tuple[Any, str]:
        """(s3fs filesystem, ``bucket/prefix``)."""
        import fsspec

        options: dict[str, Any] = {"use_listings_cache": False}  # one client per process, never a stale listing
        if self.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        fs, root = fsspec.url_to_fs(self.url.rstrip("/"), **options)
        return fs, root.rstrip("/")


class MirrorError(UserError):
    """The bucket could not be read or written; the message names the bucket and the key."""


def _local_files(repository: Path) -> dict[str, Path]:
    """Relative key -> file, for metadata/, targets/ and the history (no lock, no temp files)."""
    files = {}
    for top in ("metadata", "targets"):
        for path in sorted((repository / top).rglob("*")):
            relative = path.relative_to(repository)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files[relative.as_posix()] = path
    if (repository / HISTORY).is_file():
        files[HISTORY] = repository / HISTORY
    return files


def _remote_files(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    """Relative key -> listing entry (size, ETag), from one paginated listing of the prefix."""
    try:
        listing = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise MirrorError(f"cannot list s3://{root}: {type(exc).__name__}: {exc}") from None
    return {name.removeprefix(root + "/"): info for name, info in listing.items()}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _same(info: dict[str, Any] | None, data: bytes) -> bool:
    """True when the object holds ``data`` (size and the single-PUT ETag, which is the MD5)."""
    return info is not None and info.get("size") == len(data) and str(info.get("ETag", "")).strip('"') == _md5(data)


def _push_order(key: str) -> int:
    if key.startswith("targets/"):
        return 0
    if key == TIMESTAMP:
        return 4
    if key == ROOT:
        return 3
    if key.endswith(".snapshot.json"):
        return 2
    if key == HISTORY:
        return 5
    return 1  # N.root.json, N.targets.json


def _conflict(root: str, key: str) -> MirrorError:
    return MirrorError(f"another publisher already wrote s3://{root}/{key} with other content; devices keep the"
                       " bucket's release. Run the operation again: it starts from the bucket")


def upload(fs: Any, root: str, key: str, data: bytes, create_only: bool = False) -> None:
    """One PUT of the whole object; ``create_only``: only if no object has that key (If-None-Match: *)."""
    mutable = key in (TIMESTAMP, ROOT, HISTORY)
    options = {"CacheControl": MUTABLE if mutable else IMMUTABLE,
               "ContentType": "application/json" if key.endswith(".json") else "application/octet-stream"}
    if create_only:
        options["IfNoneMatch"] = "*"
    try:
        fs.pipe_file(f"{root}/{key}", data, **options)
    except FileExistsError:
        if not key.startswith("targets/"):  # a target's name is its hash: whoever wrote it wrote these bytes
            raise _conflict(root, key) from None
    except Exception as exc:
        raise MirrorError(f"cannot write s3://{root}/{key}: {type(exc).__name__}: {exc}") from None


def _pending(root: str, repository: Path, remote: dict[str, dict[str, Any]]) -> Iterator[tuple[str, bytes, bool]]:
    """(key, bytes, create only) of every local file the bucket lacks or holds differently, in push order.

    A versioned file (a target, ``N.*.json``) the bucket holds with other bytes means another publisher
    got there first: a conflict, raised before anything is written."""
    pending = []
    for key, path in sorted(_local_files(repository).items(), key=lambda item: (_push_order(item[0]), item[0])):
        info = remote.get(key)
        if key.startswith("targets/") and info is not None and info.get("size") == path.stat().st_size:
            continue  # content-addressed: same name and size is the same file
        data = path.read_bytes()
        if _same(info, data):
            continue
        versioned = _push_order(key) <= 2
        if versioned and info is not None:
            raise _conflict(root, key)
        pending.append((key, data, versioned))
    yield from pending


def push(repository: Path, mirror: Mirror) -> list[str]:
    """Upload what the bucket lacks, targets first and ``timestamp.json`` last; the keys written."""
    fs, root = mirror.filesystem()
    written = []
    try:
        for key, data, create_only in _pending(root, repository, _remote_files(fs, root)):
            upload(fs, root, key, data, create_only)
            written.append(key)
    except MirrorError as exc:
        raise MirrorError(f"{exc}; committed in {repository}, devices still see the previous release: the next"
                          " release operation (or `edgeloop release refresh`) pushes it") from None
    return written


def _timestamp_versions(data: bytes | None) -> tuple[int, int]:
    """(timestamp version, snapshot version it names); zeros when absent or unreadable."""
    if data is None:
        return 0, 0
    try:
        signed = json.loads(data)["signed"]
        return int(signed["version"]), int(signed["meta"]["snapshot.json"]["version"])
    except (ValueError, KeyError, TypeError):
        return 0, 0


def pull(repository: Path, mirror: Mirror) -> list[str]:
    """Copy the bucket into the folder unless the folder already holds the bucket's state or extends it
    (its timestamp is as new and it holds the very snapshot the bucket's timestamp names: a push that
    did not finish). So a newer bucket (another host published) and a diverged folder (this host lost
    a race) both end as the bucket. The keys read."""
    fs, root = mirror.filesystem()
    remote = _remote_files(fs, root)
    if TIMESTAMP not in remote:
        return []
    bucket_timestamp = fs.cat_file(f"{root}/{TIMESTAMP}")
    local = repository / TIMESTAMP
    local_timestamp = local.read_bytes() if local.is_file() else None
    bucket_version, snapshot_version = _timestamp_versions(bucket_timestamp)
    local_version, _ = _timestamp_versions(local_timestamp)
    snapshot_key = f"metadata/{snapshot_version}.snapshot.json"
    snapshot = repository / snapshot_key
    extends = snapshot.is_file() and _same(remote.get(snapshot_key), snapshot.read_bytes())
    if bucket_timestamp == local_timestamp or (local_version >= bucket_version and extends):
        return []
    read = []
    for key in sorted(remote, key=lambda k: (_push_order(k), k)):
        if key == TIMESTAMP or (_push_order(key) == 1 and not key.startswith("metadata/")):
            continue  # the timestamp goes last; keys outside metadata/, targets/ and the history are not ours
        if ".." in key.split("/") or key.startswith("/"):
            raise MirrorError(f"s3://{root}/{key}: a key that would leave the repository folder; not pulled")
        target = repository / key
        if target.is_file() and _same(remote[key], target.read_bytes()):
            continue
        write_bytes_atomic(target, fs.cat_file(f"{root}/{key}"))
        read.append(key)
    write_bytes_atomic(local, bucket_timestamp)
    return [*read, TIMESTAMP]
