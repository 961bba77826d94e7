"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader sees the old file or the new one, never a torn one, whatever moment a crash hits. Leftover
temp files are named ``.<name>.<random>.tmp``. Does not lock: serialise writers yourself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(folder: Path) -> None:
    """Make a rename or create inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, fill: Callable[[BinaryIO], None], mode: int) -> None:
    """Create a temp file beside ``path``, let ``fill`` write it, make it durable, rename it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that the file is either absent/old or complete."""

    def fill(handle: BinaryIO) -> None:
        handle.write(data)

    _write_atomic(path, fill, mode)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def copy_file_atomic(source: Path, target: Path, mode: int = 0o644) -> None:
    """Byte copy of ``source`` at ``target``, streamed (any size), atomically."""

    def fill(handle: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, handle, 1 << 20)

    _write_atomic(target, fill, mode)


def replace_dir(new: Path, target: Path) -> None:
    """Swap the complete folder ``new`` in as ``target`` (same parent), then delete the old one.

    Two renames: a reader sees the old folder, briefly no folder, then the new one; never a mix. An
    interrupted swap leaves ``.<name>.old-<random>`` beside it, which the caller may delete.
    """
    import uuid

    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        target.rename(old)
    new.rename(target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
