"""The console's channel actions: promote, roll back, halt, resume; planned for the confirmation page, then done.

``plan`` says what an action will do ("move stable from 7 to 9: 412 devices will update") or raises the
one-line ``UserError`` that refuses it (unknown channel or release, nothing to roll back to, already there,
already halted / not halted). ``perform`` plans again at the moment it acts, refuses when the channel moved
since the operator confirmed (``expect_from``), then makes the move with the same functions as ``edgeloop
release promote/rollback/halt/resume`` (``flows.project_releases.move_channel``, which checks the channel
and release again under the repository lock, and ``flows.loop.halts``) and records it in the loop log as
``manual`` with who ("<name> via console") and when. A promote into a halted channel needs ``force`` (the
"promote anyway" confirmation) and records the halt it went past; a rollback of a halted channel is allowed
(it is how an operator gets out of a bad release). The signing keys are read where the CLI reads them
(params.yaml ``release``); nothing here returns or logs them.

Leaves out: rendering (``release_pages``) and gathering what the page shows (``release_data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.contracts.errors import UserError
from edgeloop.console.release_data import Catalog, Project, Tally, catalog
from flows.loop.halts import Halt, halt_channel, record_halt, resume_channel
from flows.loop.moves import record_manual_move
from flows.project_releases import declared_channels, move_channel

__all__ = ["KINDS", "Plan", "perform", "plan"]

KINDS = ("promote", "rollback", "halt", "resume")


@dataclass(frozen=True)
class Plan:
    kind: str
    channel: str
    from_version: int | None
    to_version: int | None
    devices: int  # devices following the channel that will update (promote/rollback)
    halt: Halt | None  # the channel's halt now
    summary: str  # one sentence for the confirmation page

    @property
    def needs_force(self) -> bool:
        return self.kind == "promote" and self.halt is not None


def _int(value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise UserError(f"{what} {value!r} is not a release number") from None
    if number < 1:
        raise UserError(f"{what} {number} is not a release number")
    return number


def _devices(counts: Tally, channel: str, version: int) -> int:
    return counts.following[channel] - counts.on[(channel, str(version))]


def _updating(channel: str, before: int | None, after: int, devices: int, verb: str) -> str:
    noun = "device" if devices == 1 else "devices"
    return f"{verb} {channel} from {before if before is not None else '-'} to {after}: {devices} {noun} will update"


def plan(found: Project, cat: Catalog, counts: Tally, kind: str, channel: str, version: Any = None) -> Plan:
    """What ``kind`` on ``channel`` (promote: to ``version``) will do; ``UserError`` when it is refused."""
    if kind not in KINDS:
        raise UserError(f"unknown action {kind!r} (actions: {', '.join(KINDS)})")
    channel = str(channel or "").strip()
    if not channel:
        raise UserError("name a channel")
    halt = found.halts().get(channel)
    current = cat.pointers.get(channel)
    if kind == "promote":
        target = _int(version, "release")
        if target is None:
            raise UserError("name the release to promote")
        if channel not in cat.pointers:  # the console never creates a channel (the CLI's --create does)
            raise UserError(f"channel {channel!r} does not exist (channels: "
                            f"{', '.join(sorted(cat.pointers)) or 'none yet'})")
        if cat.get(target) is None:  # the catalog is cached; move_channel checks again under the lock
            have = ", ".join(str(r.version) for r in reversed(cat.releases)) or "none yet"
            raise UserError(f"no release {target} in the repository (releases: {have})")
        if current == target:
            raise UserError(f"channel {channel!r} already points at release {target}; nothing to do")
        return Plan(kind, channel, current, target, _devices(counts, channel, target), halt,
                    _updating(channel, current, target, _devices(counts, channel, target), "move"))
    if kind == "rollback":
        if current is None:
            raise UserError(f"channel {channel!r} has no release to roll back (channels: "
                            f"{', '.join(sorted(cat.pointers)) or 'none yet'})")
        target = cat.previous.get(channel)
        if target is None:
            raise UserError(f"channel {channel!r} has no earlier release to roll back to; nothing to do")
        return Plan(kind, channel, current, target, _devices(counts, channel, target), halt,
                    _updating(channel, current, target, _devices(counts, channel, target), "roll back"))
    known = set(cat.pointers) | declared_channels(found.params)
    if channel not in known:
        raise UserError(f"channel {channel!r} does not exist (channels: {', '.join(sorted(known))})")
    if kind == "halt":
        if halt is not None:
            raise UserError(f"channel {channel!r} is already {halt.describe()}; nothing to do")
        return Plan(kind, channel, current, current, 0, None,
                    f"halt {channel}: no automatic promotion or rollback will move it until it is resumed, "
                    "and a manual promote into it needs a second confirmation")
    if halt is None:
        raise UserError(f"channel {channel!r} is not halted; nothing to do")
    return Plan(kind, channel, current, current, 0, halt,
                f"resume {channel}: automatic promotion may move it again (it is {halt.describe()})")


def perform(found: Project, counts: Tally, kind: str, channel: str, version: Any, by: str, *,
            expect_from: Any = None, force: bool = False, reason: str = "") -> str:
    """Do the confirmed action now; one line saying what happened. ``UserError`` refuses it, changing nothing."""
    planned = plan(found, catalog(found), counts, kind, channel, version)
    expected = _int(expect_from, "expected release")
    if kind in ("promote", "rollback") and expected != planned.from_version:
        raise UserError(f"channel {planned.channel!r} moved since you confirmed (it points at "
                        f"{planned.from_version or '-'} now); nothing changed: review the action again")
    params, paths = found.params, found.paths
    if kind == "halt":
        done = halt_channel(found.halts_file, planned.channel, by, reason)
        record_halt(found.log, "halt", done, by)
        return f"channel {planned.channel} halted: {done.reason}"
    if kind == "resume":
        lifted = resume_channel(found.halts_file, planned.channel)
        record_halt(found.log, "resume", lifted, by)
        return f"channel {planned.channel} resumed"
    extra: dict[str, Any] = {}
    if planned.needs_force:
        if not force:
            assert planned.halt is not None
            raise UserError(f"channel {planned.channel!r} is {planned.halt.describe()}; nothing moved "
                            "(confirm with \"promote anyway\" to move it regardless)")
        extra["forced_over_halt"] = planned.halt.describe() if planned.halt else None
    move = move_channel(params, paths, kind, planned.channel, planned.to_version)
    record_manual_move(params, paths, kind, move, by=by, **extra)
    return f"channel {move['channel']}: {move['from_version'] or '-'} -> {move['to_version']}"
