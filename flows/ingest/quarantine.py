"""Put a rejected batch aside, with the evidence, so nothing a device sent is ever lost.

Layout: ``data/quarantine/<device_id>/<batch_id>.{<ext>,gx.json,reason.txt}``. The raw copy is a byte
copy of the source file and ``reason.txt`` is written last, so its presence means "done": a crash in
between leaves an incomplete entry that the next run simply redoes. Every write is atomic. The folder
and the source may each be a local folder or an object-store path (``flows.storage``): in a bucket each
file is one whole object, written in the same order.

A retry (``edgeloop ingest --retry-quarantined``) never deletes an entry: it appends each attempt to
``<batch_id>.retries.json`` (time, outcome ``curated`` or ``quarantined``, the reason before and after),
then rewrites ``gx.json`` and ``reason.txt`` for a batch that still fails, or ``reason.txt`` alone
("curated on retry ...; was: ...") for one that passed. The curated chunk's ledger, not this record, is
what makes a batch curated (``flows.ingest.ledger``). Does not decide why a batch is rejected, and never
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
RETRIES_SUFFIX = ".retries.json"
CURATED_ON_RETRY = "curated on retry"
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


_EXAMPLE = re.compile(r"\s*\(e\.g\. [^)]*\)")
_COUNT = re.compile(r"\b\d+ values?\b")


def reason_kind(reason: str) -> str:
    """A reason without its counts and examples, so batches failing the same way group together
    ("air_temp_k: 24 values outside [250, 300] (e.g. 313.7)" -> "air_temp_k: values outside [250, 300]")."""
    return one_line(_COUNT.sub("values", _EXAMPLE.sub("", reason)))


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


def raw_copy(folder: StoragePath, batch_id: str) -> StoragePath | None:
    """The entry's byte copy of the rejected file (``<batch_id>.<ext>``), or None when it is missing."""
    own = (GX_SUFFIX, REASON_SUFFIX, RETRIES_SUFFIX)
    found: list[StoragePath] = sorted(folder.glob(f"{batch_id}.*"), key=lambda p: str(p))
    return next((p for p in found if not p.name.endswith(own) and not p.name.startswith(".")), None)


def retries(folder: StoragePath, batch_id: str) -> list[dict[str, Any]]:
    """Every recorded retry of the entry, oldest first ([] when never retried or unreadable)."""
    path = folder / f"{batch_id}{RETRIES_SUFFIX}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _record(folder: StoragePath, batch_id: str, attempt: dict[str, Any]) -> None:
    history = [*retries(folder, batch_id), attempt]
    _write_text(folder / f"{batch_id}{RETRIES_SUFFIX}", json.dumps(history, indent=1, default=str) + "\n")


def _reason(folder: StoragePath, batch_id: str) -> str:
    try:
        return reason_path(folder, batch_id).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def requarantine(folder: StoragePath, batch_id: str, gx_result: dict[str, Any], reason: str, at: str) -> None:
    """A retried batch that still fails: record the attempt, then its new evidence and reason (last)."""
    _record(folder, batch_id, {"at": at, "outcome": "quarantined", "before": _reason(folder, batch_id),
                               "reason": one_line(reason)})
    _write_text(folder / f"{batch_id}{GX_SUFFIX}", json.dumps(gx_result, indent=1, default=str))
    _write_text(reason_path(folder, batch_id), one_line(reason) + "\n")


def mark_curated(folder: StoragePath, batch_id: str, at: str) -> None:
    """A retried batch that a curated chunk now holds: record it, and say so in ``reason.txt`` (last)."""
    before = _reason(folder, batch_id)
    _record(folder, batch_id, {"at": at, "outcome": "curated", "before": before})
    was = before.split("; was: ", 1)[-1] if before.startswith(CURATED_ON_RETRY) else before
    _write_text(reason_path(folder, batch_id), one_line(f"{CURATED_ON_RETRY} {at}; was: {was}") + "\n")


def is_marked_curated(folder: StoragePath, batch_id: str) -> bool:
    history = retries(folder, batch_id)
    return bool(history) and history[-1].get("outcome") == "curated"
