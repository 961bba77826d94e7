"""The loop's estimates file (``Paths.estimates``, written by the loop's flows), read for the fleet views.

``load_estimates(path)`` returns the parsed JSON object and keeps it until the file changes (mtime and
size), so a fleet request costs one ``stat``. Whatever is in the file, nothing here raises: a missing,
unreadable or non-object file is None. Leaves out validating the pieces (hub.fleet_loop) and writing
the file (flows).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

__all__ = ["load_estimates"]

_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}


def load_estimates(path: Path) -> dict[str, Any] | None:
    """The estimates document at ``path``, or None when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = None
    document = raw if isinstance(raw, dict) else None
    with _lock:
        _cache[path] = (key, document)
    return document
