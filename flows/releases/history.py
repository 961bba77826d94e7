"""The channel history: an append-only ``history.jsonl`` beside ``metadata/`` and ``targets/``.

One JSON line per channel move (``publish``, ``promote``, ``rollback``, ``recovered``), appended after
the move is committed. It is a log for people and for rollback's default, not a TUF target and not
trusted for anything a device sees: the signed channel pointers are the truth. ``reconcile`` repairs
the one gap a crash can leave (a move committed but not yet logged) by appending a ``recovered``
line; a torn last line is skipped when reading.

Rollback semantics (``channel_stack``): publish and promote push a version; a rollback pops back to
its target (or pushes it when the channel never had it), so repeated rollbacks walk further back.

Leaves out: moving pointers (``channels``), reading metadata.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from flows.releases.config import ReleaseConfig

MOVES = ("publish", "promote", "rollback", "recovered")


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def append_event(config: ReleaseConfig, event: dict[str, Any]) -> None:
    """Append one line durably (O_APPEND + fsync), on a fresh line if a crash tore the last one."""
    line = json.dumps({"time": now_iso(), **event}, sort_keys=True) + "\n"
    fd = os.open(config.history_file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_events(config: ReleaseConfig) -> list[dict[str, Any]]:
    if not config.history_file.is_file():
        return []
    events = []
    for line in config.history_file.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(event, dict) and event.get("event") in MOVES and isinstance(event.get("to"), int):
            events.append(event)
    return events


def channel_stack(events: list[dict[str, Any]], channel: str) -> list[int]:
    stack: list[int] = []
    for event in events:
        if event.get("channel") != channel:
            continue
        version = int(event["to"])
        if event["event"] == "rollback" and version in stack:
            while stack[-1] != version:
                stack.pop()
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack


def reconcile(config: ReleaseConfig, pointers: dict[str, int], targets_version: int) -> list[dict[str, Any]]:
    """Log committed moves the history missed (crash between commit and append); the full history."""
    events = read_events(config)
    for channel, version in sorted(pointers.items()):
        stack = channel_stack(events, channel)
        if not stack or stack[-1] != version:
            event = {"event": "recovered", "channel": channel, "from": stack[-1] if stack else None, "to": version,
                     "targets_version": targets_version}
            append_event(config, event)
            events.append(event)
    return events
