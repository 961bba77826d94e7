"""Files of the TUF release repository, read-only: find one safely, and keep small ones (and every ETag).

``locate(root, relative)`` finds a regular file inside a real folder: every path segment must match a
strict pattern (no ``..``, no dot files, no empty segments) and no segment may be a symlink (one
``lstat`` per segment, far cheaper than ``realpath``; the publisher writes none), so nothing outside the
folder is reached. ``FileCache`` keeps, per path, the file's strong ETag (its sha256) and, up to
``MEMORY_FILE_BYTES``, its bytes, valid while (inode, size, mtime) is unchanged, bounded by
``MEMORY_TOTAL_BYTES`` (least recently used evicted). ``read_small`` reads and hashes a small file,
``hash_large`` only hashes a large one (it is streamed from disk). ``trusted_root(repository)`` is the
repository's newest ``root.json`` as text (what an enrolling device starts trusting). Leaves out HTTP (caching headers,
304s: hub.static_releases).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MEMORY_FILE_BYTES", "CachedFile", "FileCache", "hash_large", "locate", "read_small", "stat_key",
           "trusted_root"]

MEMORY_FILE_BYTES = 1024 * 1024  # files up to this size are served from memory
MEMORY_TOTAL_BYTES = 64 * 1024 * 1024  # bound of the in-memory cache
MAX_SEGMENTS = 16
READ_BLOCK = 1 << 20
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$")


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
        self.by_kind: dict[str, str] = {}  # the repository's "metadata" / "targets" -> its real path (a caller's cache)

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

    def real_folder(self, folder: str) -> str:
        """The real path of ``folder`` (the repository itself may be a symlink), resolved once."""
        if folder not in self.folders:
            self.folders[folder] = os.path.realpath(folder)
        return self.folders[folder]


def locate(root: str, relative: str) -> tuple[str, os.stat_result] | None:
    """(path, stat) of the regular file ``relative`` inside the real folder ``root``, else None."""
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


def stat_key(result: os.stat_result) -> tuple[int, int, int]:
    return (result.st_ino, result.st_size, result.st_mtime_ns)


def read_small(path: str) -> CachedFile:
    with open(path, "rb") as handle:
        key = stat_key(os.fstat(handle.fileno()))
        data = handle.read()
    return CachedFile(key, f'"{hashlib.sha256(data).hexdigest()}"', data)


def hash_large(path: str) -> CachedFile:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        key = stat_key(os.fstat(handle.fileno()))
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            digest.update(block)
    return CachedFile(key, f'"{digest.hexdigest()}"', None)


ROOT_FILE = "root.json"  # the newest root in a repository with consistent snapshots (N.root.json are all kept)


def trusted_root(repository: Path) -> str | None:
    """The text of ``<repository>/metadata/root.json``; None when there is no repository (or no valid root)."""
    try:
        text = (repository / "metadata" / ROOT_FILE).read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return text if isinstance(document, dict) and isinstance(document.get("signed"), dict) else None
