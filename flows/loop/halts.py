"""Halted channels: a channel an operator froze (who, when, why), so no automatic move touches it.

State lives in ``halts.json`` beside the loop's decision log (``params.loop.log``'s folder, by default
``data/loop/halts.json``): ``{"channels": {name: {"by", "at", "reason"}}}``. Each change is a
read-modify-write under an exclusive lock on ``halts.json.lock``, written to a temporary file, fsynced and
renamed over the old one, so a reader sees the old or the new state, never half of one.

- ``halt_channel`` / ``resume_channel``: change the state (refused in one line when the channel is
  already halted / not halted, or the reason is empty or too long);
- ``read_halts``: the current halts (an unreadable file is refused, never silently read as "no halts",
  because that would let automatic promotion move a frozen channel);
- ``refuse_if_halted``: the ``UserError`` a move into a halted channel raises (automatic moves always;
  manual promotes unless forced);
- ``record_halt``: the halt or resume as a ``manual`` decision in the loop log.

Leaves out: which moves must respect a halt (``flows.loop.moves`` for the promote-soaked flow, the CLI
and the console for manual moves) and the channels themselves (``flows.releases``).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from flows.loop.log import append_decision

__all__ = [
    "HALTS_FILE",
    "REASON_MAX",
    "Halt",
    "halt_channel",
    "halts_path",
    "read_halts",
    "record_halt",
    "refuse_if_halted",
    "resume_channel",
]

HALTS_FILE = "halts.json"
REASON_MAX = 200


@dataclass(frozen=True)
class Halt:
    channel: str
    by: str  # who halted it ("alice via console", "bob via cli")
    at: str  # ISO-8601 UTC
    reason: str

    def describe(self) -> str:
        return f"halted by {self.by} at {self.at[:19].replace('T', ' ')} UTC: {self.reason}"


def halts_path(decision_log: Path) -> Path:
    """Where the halts of the loop whose decision log is ``decision_log`` are kept."""
    return decision_log.with_name(HALTS_FILE)


def read_halts(path: Path) -> dict[str, Halt]:
    """Channel -> its halt; empty when nothing was ever halted."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        channels = raw["channels"]
        return {name: Halt(name, str(h["by"]), str(h["at"]), str(h["reason"])) for name, h in channels.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); fix or remove it: every automatic channel move waits "
                        "until it can be read") from None


def _write(path: Path, halts: dict[str, Halt]) -> None:
    body = {"channels": {name: {k: v for k, v in asdict(h).items() if k != "channel"}
                         for name, h in sorted(halts.items())}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise UserError("a halt needs a reason (--reason TEXT): say why the channel is frozen")
    if len(reason) > REASON_MAX:
        raise UserError(f"the halt reason is {len(reason)} characters; keep it to {REASON_MAX}")
    return reason


def halt_channel(path: Path, channel: str, by: str, reason: str, now: datetime | None = None) -> Halt:
    """Halt ``channel``; refused when it already is halted (the first halt and its reason stay)."""
    reason = _check_reason(reason)
    with _locked(path):
        halts = read_halts(path)
        if channel in halts:
            raise UserError(f"channel {channel!r} is already {halts[channel].describe()}; nothing changed")
        at = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
        halt = Halt(channel, by, at, reason)
        halts[channel] = halt
        _write(path, halts)
    return halt


def resume_channel(path: Path, channel: str) -> Halt:
    """Lift the halt of ``channel``; the halt that was lifted. Refused when it is not halted."""
    with _locked(path):
        halts = read_halts(path)
        if channel not in halts:
            halted = ", ".join(sorted(halts)) or "none"
            raise UserError(f"channel {channel!r} is not halted (halted channels: {halted}); nothing changed")
        halt = halts.pop(channel)
        _write(path, halts)
    return halt


def refuse_if_halted(path: Path, channel: str, refused: str = "nothing moved") -> None:
    """Raise the one-line ``UserError`` for a move into ``channel`` when it is halted (``refused``: what
    the message says did not happen)."""
    halt = read_halts(path).get(channel)
    if halt is not None:
        raise UserError(f"channel {channel!r} is {halt.describe()}; {refused} (resume it with "
                        f"`edgeloop release resume {channel}`)")


def record_halt(log: Path, kind: str, halt: Halt, by: str) -> dict[str, Any]:
    """Append a halt or resume (``kind``) made by ``by`` to the loop log as a fired ``manual`` decision."""
    if kind == "halt":
        summary = f"manual halt: channel {halt.channel} halted by {by}: {halt.reason}"
    elif kind == "resume":
        summary = f"manual resume: channel {halt.channel} resumed by {by} (halted by {halt.by}: {halt.reason})"
    else:
        raise ValueError(f"kind must be halt or resume, not {kind!r}")
    observed = {"channel": halt.channel, "reason": halt.reason}
    return append_decision(log, "manual", kind, True, summary, observed, action=kind, by=by, halted_by=halt.by,
                           halted_at=halt.at).to_dict()
