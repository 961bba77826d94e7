"""Put a rejected batch aside, with the evidence, so nothing a device sent is ever lost.

Layout: ``data/quarantine/<device_id>/<batch_id>.{<ext>,gx.json,reason.txt}``. The raw copy is a byte
copy of the source file and ``reason.txt`` is written last, so its presence means "done": a crash in
between leaves an incomplete entry that the next run simply redoes. Every write is atomic. Does not
decide why a batch is rejected, and never touches the source file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edge.atomic import copy_file_atomic, write_text_atomic

REASON_SUFFIX = ".reason.txt"
GX_SUFFIX = ".gx.json"
_SAFE_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


def raw_extension(extension: str) -> str:
    """The extension the raw copy keeps: the source's if it is short and plain, else ``bin``."""
    return extension if _SAFE_EXTENSION.match(extension) else "bin"


def reason_path(folder: Path, batch_id: str) -> Path:
    return folder / f"{batch_id}{REASON_SUFFIX}"


def copy_atomic(source: Path, target: Path, mode: int = 0o444) -> None:
    """Read-only byte copy of ``source`` at ``target``, written atomically."""
    copy_file_atomic(source, target, mode)


def not_validated(reason: str, source: str) -> dict[str, Any]:
    """The gx.json for a batch rejected before validation (unreadable, too large, wrong name...)."""
    return {"success": False, "validated": False, "reason": reason, "source": source, "results": []}


def one_line(reason: str) -> str:
    return " ".join(reason.split()) or "rejected"


def quarantine(
    folder: Path, batch_id: str, extension: str, source: Path, gx_result: dict[str, Any], reason: str
) -> Path:
    """Write raw copy, GX result and reason (last); returns the reason file."""
    copy_atomic(source, folder / f"{batch_id}.{raw_extension(extension)}")
    write_text_atomic(folder / f"{batch_id}{GX_SUFFIX}", json.dumps(gx_result, indent=1, default=str))
    path = reason_path(folder, batch_id)
    write_text_atomic(path, one_line(reason) + "\n")
    return path
