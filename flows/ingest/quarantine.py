"""Put a rejected batch aside, with the evidence, so nothing a device sent is ever lost.

Layout: ``data/quarantine/<device_id>/<batch_id>.{<ext>,gx.json,reason.txt}``. The raw copy is a byte
copy of the source file and ``reason.txt`` is written last, so its presence means "done": a crash in
between leaves an incomplete entry that the next run simply redoes. Every write is atomic. The folder
and the source may each be a local folder or an object-store path (``flows.storage``): in a bucket each
file is one whole object, written in the same order. Does not decide why a batch is rejected, and never
touches the source file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.atomic import copy_file_atomic, write_text_atomic
from flows.storage import StoragePath, check_reachable, location, write_bytes

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

REASON_SUFFIX = ".reason.txt"
GX_SUFFIX = ".gx.json"
_SAFE_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


def quarantine_root(params: Params, paths: Paths) -> StoragePath:
    """The quarantine: ``storage.quarantine`` (``data/quarantine`` by default, or ``s3://bucket/prefix``)."""
    return check_reachable(location(params.storage.quarantine, paths.root, params.storage.endpoint_url))


def raw_extension(extension: str) -> str:
    """The extension the raw copy keeps: the source's if it is short and plain, else ``bin``."""
    return extension if _SAFE_EXTENSION.match(extension) else "bin"


def reason_path(folder: StoragePath, batch_id: str) -> StoragePath:
    return folder / f"{batch_id}{REASON_SUFFIX}"


def copy_atomic(source: StoragePath, target: StoragePath, mode: int = 0o444) -> None:
    """Read-only byte copy of ``source`` at ``target``, written atomically (streamed into a bucket:
    an object is visible only once complete)."""
    if isinstance(source, Path) and isinstance(target, Path):
        copy_file_atomic(source, target, mode)
    elif isinstance(target, Path):
        write_bytes(target, source.read_bytes(), mode)
    else:
        with source.open("rb") as reader, target.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)


def not_validated(reason: str, source: str) -> dict[str, Any]:
    """The gx.json for a batch rejected before validation (unreadable, too large, wrong name...)."""
    return {"success": False, "validated": False, "reason": reason, "source": source, "results": []}


def one_line(reason: str) -> str:
    return " ".join(reason.split()) or "rejected"


def quarantine(
    folder: StoragePath, batch_id: str, extension: str, source: StoragePath, gx_result: dict[str, Any], reason: str
) -> StoragePath:
    """Write raw copy, GX result and reason (last); returns the reason file."""
    copy_atomic(source, folder / f"{batch_id}.{raw_extension(extension)}")
    _write_text(folder / f"{batch_id}{GX_SUFFIX}", json.dumps(gx_result, indent=1, default=str))
    path = reason_path(folder, batch_id)
    _write_text(path, one_line(reason) + "\n")
    return path


def _write_text(path: StoragePath, text: str) -> None:
    if isinstance(path, Path):
        write_text_atomic(path, text)
    else:
        write_bytes(path, text.encode("utf-8"))
