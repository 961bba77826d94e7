"""The TUF release repository, read-only: ``/releases/metadata/{path}`` and ``/releases/targets/{path}``.

Serves ``settings.releases/metadata`` and ``settings.releases/targets`` as static files, nothing else:
no directory listing, every path segment checked against a strict pattern (no ``..``, no dot files,
no empty segments) and no symlink followed inside the repository (the publisher writes none), so
nothing outside the folder can be reached; anything else is a 404 that says nothing more.
Consistent-snapshot files (``N.<role>.json`` metadata and targets named ``<sha256>.<name>``) never
change, so they are ``immutable`` for a year; ``timestamp.json``, ``root.json`` and any other name are
``no-cache`` (revalidate every time). Every file has a strong ETag (its sha256) and ``If-None-Match``
gets a 304 without a body.

A no-change poll must be cheap: files up to ``MEMORY_FILE_BYTES`` are kept in memory with their
digest, keyed by (inode, size, mtime), so a poll costs one ``lstat`` per path segment and no read or
hash; a missing file (the next root version) costs one failed ``lstat``. Larger files are hashed once
(in a worker thread) and streamed from disk. Any static server can serve the same folder instead.
Leaves out: Range requests for metadata, HEAD, compression (TUF files are small or already compact).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

router = APIRouter(tags=["releases"])

MEMORY_FILE_BYTES = 1024 * 1024  # files up to this size are served from memory
MEMORY_TOTAL_BYTES = 64 * 1024 * 1024  # bound of the in-memory cache (least recently used evicted)
MAX_SEGMENTS = 16
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$")
_VERSIONED_METADATA = re.compile(r"^[1-9][0-9]*\.[A-Za-z0-9_-]+\.json$")
_HASHED_TARGET = re.compile(r"^[0-9a-f]{64}\..+$")


@dataclass(frozen=True)
class CachedFile:
    key: tuple[int, int, int]  # (inode, size, mtime_ns) the content was read at
    etag: str
    data: bytes | None  # None: too large for memory, streamed from disk


class FileCache:
    """ETags (and small files' bytes) by path, valid while the file's (inode, size, mtime) is unchanged."""

    def __init__(self, total_bytes: int = MEMORY_TOTAL_BYTES) -> None:
        self._entries: OrderedDict[str, CachedFile] = OrderedDict()
        self._total = 0
        self._limit = total_bytes
        self.folders: dict[str, str] = {}  # configured folder -> its real path

    def get(self, path: str, key: tuple[int, int, int]) -> CachedFile | None:
        entry = self._entries.get(path)
        if entry is None or entry.key != key:
            return None
        self._entries.move_to_end(path)
        return entry

    def put(self, path: str, entry: CachedFile) -> None:
        old = self._entries.pop(path, None)
        self._total -= len(old.data or b"") if old else 0
        self._entries[path] = entry
        self._total += len(entry.data or b"")
        while self._total > self._limit and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._total -= len(evicted.data or b"")


def locate(root: str, relative: str) -> tuple[str, os.stat_result] | None:
    """(path, stat) of the regular file ``relative`` inside the real folder ``root``, else None.

    Every segment must match a strict pattern (no ``..``, no dot files, no empty segments) and no
    segment may be a symlink (one ``lstat`` per segment, far cheaper than ``realpath``), so the file is
    inside ``root`` by construction.
    """
    parts = relative.split("/")
    if len(parts) > MAX_SEGMENTS or not all(_SEGMENT.match(part) for part in parts):
        return None
    path = root
    try:
        for part in parts:
            path = f"{path}/{part}"
            result = os.lstat(path)
            if stat.S_ISLNK(result.st_mode):
                return None
    except OSError:  # missing, or a file used as a folder
        return None
    return (path, result) if stat.S_ISREG(result.st_mode) else None


def real_folder(request: Request, kind: str) -> str:
    """The real path of the repository's ``kind`` folder (the repository itself may be a symlink), cached."""
    cache = _cache(request)
    base = request.app.state.settings.releases / kind
    key = str(base)
    if key not in cache.folders:
        cache.folders[key] = os.path.realpath(base)
    return cache.folders[key]


def cache_control(kind: str, name: str) -> str:
    """Immutable for consistent-snapshot names, no-cache for everything else (timestamp.json, root.json)."""
    pattern = _VERSIONED_METADATA if kind == "metadata" else _HASHED_TARGET
    return IMMUTABLE if pattern.match(name) else NO_CACHE


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag equal under weak comparison."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def _stat_key(result: os.stat_result) -> tuple[int, int, int]:
    return (result.st_ino, result.st_size, result.st_mtime_ns)


def _read_small(path: str) -> CachedFile:
    with open(path, "rb") as handle:
        key = _stat_key(os.fstat(handle.fileno()))
        data = handle.read()
    return CachedFile(key, f'"{hashlib.sha256(data).hexdigest()}"', data)


def _hash_large(path: str) -> CachedFile:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        key = _stat_key(os.fstat(handle.fileno()))
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return CachedFile(key, f'"{digest.hexdigest()}"', None)


def _cache(request: Request) -> FileCache:
    state = request.app.state
    if not hasattr(state, "release_files"):
        state.release_files = FileCache()
    return state.release_files  # type: ignore[no-any-return]


def _not_found() -> Response:
    """An empty 404: nothing to leak, and a client that does not read error bodies (urllib3 with
    ``preload_content=False`` released early) finds no stray bytes on its next keep-alive request."""
    return Response(status_code=404)


async def serve(request: Request, kind: str, relative: str) -> Response:
    """The file ``relative`` of the repository's ``kind`` folder (metadata or targets), or 404."""
    found = locate(real_folder(request, kind), relative)
    if found is None:
        return _not_found()
    path, result = found
    cache = _cache(request)
    entry = cache.get(path, _stat_key(result))
    if entry is None:
        try:
            entry = _read_small(path) if result.st_size <= MEMORY_FILE_BYTES else await to_thread.run_sync(
                _hash_large, path
            )
        except OSError:
            return _not_found()
        cache.put(path, entry)
    headers = {"ETag": entry.etag, "Cache-Control": cache_control(kind, relative.rsplit("/", 1)[-1])}
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    media = "application/json" if relative.endswith(".json") else "application/octet-stream"
    if entry.data is not None:
        return Response(entry.data, media_type=media, headers=headers)
    return FileResponse(path, media_type=media, headers=headers)


@router.get("/releases/metadata/{path:path}", response_class=Response,
            responses={200: {"description": "the file"}, 304: {"description": "not modified"}, 404: {}})
async def release_metadata(path: str, request: Request) -> Response:
    """TUF metadata: ``N.<role>.json`` (immutable), ``timestamp.json`` and ``root.json`` (no-cache)."""
    return await serve(request, "metadata", path)


@router.get("/releases/targets/{path:path}", response_class=Response,
            responses={200: {"description": "the file"}, 304: {"description": "not modified"}, 404: {}})
async def release_target(path: str, request: Request) -> Response:
    """TUF targets; consistent-snapshot names ``<sha256>.<name>`` are immutable."""
    return await serve(request, "targets", path)
