"""The loop's decision log: one JSON object per line in ``params.loop.log`` (``data/loop/decisions.jsonl``).

Every decision of the monitor and promote flows, every retrain however it was started, and every manual
``edgeloop release promote/rollback``, is appended as ``{"at", "source", "kind", "fired", "summary",
"observed", ...}``: ``source`` is who decided (``monitor``, ``promote``, ``manual``, ``deployment``),
``kind`` what about (``retrain``, ``retrain_outcome``, ``promote``, ``rollback``), ``fired`` whether it
acted, ``summary`` one line for people, ``observed`` the numbers the decision was made on (what the
retrain entries carry: ``flows.loop.retrains``). Appends are one ``write`` of a whole line to a file
opened with O_APPEND, then fsync, under an exclusive lock, so concurrent flows never interleave and a
crash loses at most the line being written (a torn last line is skipped when reading).

Leaves out: deciding anything, and rotating the file (it grows by a few hundred bytes per decision).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Decision", "append_decision", "read_decisions", "last_decision"]


@dataclass(frozen=True)
class Decision:
    at: str  # ISO-8601 UTC
    source: str  # monitor | promote | manual | deployment
    kind: str  # retrain | retrain_outcome | promote | rollback
    fired: bool
    summary: str
    observed: Mapping[str, Any]
    extra: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "source": self.source, "kind": self.kind, "fired": self.fired,
                "summary": self.summary, "observed": dict(self.observed), **dict(self.extra)}


def append_decision(path: Path, source: str, kind: str, fired: bool, summary: str,
                    observed: Mapping[str, Any] | None = None, **extra: Any) -> Decision:
    """Append one decision durably; returns it."""
    decision = Decision(datetime.now(UTC).isoformat(), source, kind, fired, summary, dict(observed or {}), extra)
    line = (json.dumps(decision.to_dict(), sort_keys=True, default=str) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return decision


def read_decisions(path: Path, source: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Every readable decision, oldest first, optionally only one source and/or kind."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(entry, dict) and (source is None or entry.get("source") == source) and (
                kind is None or entry.get("kind") == kind):
            out.append(entry)
    return out


def last_decision(path: Path, source: str | None = None, kind: str | None = None, fired: bool | None = None
                  ) -> dict[str, Any] | None:
    """The newest decision matching the filters (``fired=True``: the last one that acted)."""
    for entry in reversed(read_decisions(path, source, kind)):
        if fired is None or bool(entry.get("fired")) == fired:
            found: dict[str, Any] = entry
            return found
    return None
