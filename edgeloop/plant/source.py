"""The live plant's row and label stream: simulated machines read at a fixed rate, labels reported later.

``PlantStream(settings)`` is a clock. Each of ``settings.devices`` machines (``press-00``, ``press-01``,
...) makes ``settings.rate`` parts a second; ``due(now)`` returns the parts made since the last call
(``Part``: device, part id, sensor values in ``SENSOR_COLUMNS`` order with None for a dropout, true label)
and the quality station's verdicts that fell due: each part's true label, ``label_delay_s`` after the part.

Part ids are the part's number since the Unix epoch at this rate (``floor(t * rate)``), and the
simulator's row of a part is its part id, so a restarted plant carries on with new ids and the same
machine gives the same values for the same part id. The rows come from the demo's addressable simulator
(``edgeloop.demo.plant.device_rows``: no second copy of the physics); a drift (``simulator.plant``
kinds) starts ``drift_after_s`` seconds after the stream started. Leaves out any protocol (``opcua_server``,
``mqtt_publisher``) and pacing (callers sleep between ``due`` calls).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from edge.contracts.errors import UserError
from edgeloop.demo.plant import device_rows
from simulator.plant import DRIFT_KINDS, LABEL_COLUMN, SENSOR_COLUMNS

__all__ = ["FEATURES", "LABEL", "Part", "PlantSettings", "PlantStream", "Verdict", "device_name"]

FEATURES: tuple[str, ...] = SENSOR_COLUMNS
LABEL = LABEL_COLUMN
MAX_CATCH_UP_S = 2.0  # after a stall, parts older than this are skipped (counted), not sent in a burst


def device_name(index: int) -> str:
    """The name of machine ``index``: ``press-00``, ``press-01``, ..."""
    return f"press-{index:02d}"


@dataclass(frozen=True)
class PlantSettings:
    """What ``edgeloop plant serve`` was asked for (checked on creation: one clear message per mistake)."""

    devices: int = 2
    rate: float = 2.0  # parts per second per machine
    seed: int = 1
    label_delay_s: float = 5.0
    drift: str = "none"
    drift_after_s: float | None = None
    minutes_per_row: float = 1.0  # simulated machine time per part (the physics' time step)

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 100:
            raise UserError(f"--devices: expected 1 to 100 machines, got {self.devices}")
        if not 0 < self.rate <= 10_000:
            raise UserError(f"--rate: expected parts per second per machine in (0, 10000], got {self.rate}")
        if self.label_delay_s < 0:
            raise UserError(f"--label-delay-s: expected seconds >= 0, got {self.label_delay_s}")
        if self.drift not in DRIFT_KINDS:
            raise UserError(f"--drift: unknown kind {self.drift!r}; choose one of: {', '.join(DRIFT_KINDS)}")
        if self.drift != "none" and (self.drift_after_s is None or self.drift_after_s < 0):
            raise UserError("--drift-after-s: give the seconds (>= 0) after start at which the drift begins")

    @property
    def names(self) -> list[str]:
        return [device_name(i) for i in range(self.devices)]


@dataclass(frozen=True)
class Part:
    """One part made by one machine: what its sensors reported and (kept back) its true label."""

    device: str
    part_id: int
    values: tuple[float | None, ...]
    label: int
    made_at: float  # wall-clock time (Unix s) the part was due


@dataclass(frozen=True)
class Verdict:
    """The quality station's verdict on a part: its true label."""

    device: str
    part_id: int
    label: int


class PlantStream:
    """See the module docstring. Not thread safe: one caller drives it."""

    def __init__(self, settings: PlantSettings, start: float | None = None) -> None:
        self.settings = settings
        self.start = time.time() if start is None else start
        self.next_part = math.floor(self.start * settings.rate)  # the next part id every machine makes
        self.first_part = self.next_part
        self.drift_row = (None if settings.drift == "none" or settings.drift_after_s is None
                          else self.first_part + math.ceil(settings.drift_after_s * settings.rate))
        self.waiting: deque[tuple[float, Verdict]] = deque()  # (due time, verdict), oldest first
        self.parts_made = 0
        self.parts_skipped = 0  # parts a stall made too late to send (never sent, never labelled)
        self.making = True  # False: the line is paused (no new parts; verdicts still come)

    def part_time(self, part_id: int) -> float:
        """Wall-clock time (Unix s) part ``part_id`` is due."""
        return part_id / self.settings.rate

    def due(self, now: float | None = None) -> tuple[list[Part], list[Verdict]]:
        """Parts made since the last call (every machine, oldest first) and verdicts now due."""
        now = time.time() if now is None else now
        rate = self.settings.rate
        end = math.floor(now * rate) + 1  # part ids < end are due
        oldest = end - max(1, math.ceil(MAX_CATCH_UP_S * rate))
        if self.next_part < oldest:
            self.parts_skipped += (oldest - self.next_part) * self.settings.devices
            self.next_part = oldest
        parts: list[Part] = []
        if not self.making:
            self.next_part = max(self.next_part, end)
        if end > self.next_part:
            count = end - self.next_part
            for index, name in enumerate(self.settings.names):
                x, y = device_rows(index, self.next_part, count, self.settings.seed, self.settings.minutes_per_row,
                                   self.settings.drift, self.drift_row)
                for offset, (row, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
                    part_id = self.next_part + offset
                    parts.append(Part(name, part_id, tuple(None if v != v else float(v) for v in row), int(label),
                                      self.part_time(part_id)))
            parts.sort(key=lambda p: p.part_id)
            delay = self.settings.label_delay_s
            self.waiting.extend((p.made_at + delay, Verdict(p.device, p.part_id, p.label)) for p in parts)
            self.next_part = end
            self.parts_made += len(parts)
        verdicts: list[Verdict] = []
        while self.waiting and self.waiting[0][0] <= now:
            verdicts.append(self.waiting.popleft()[1])
        return parts, verdicts

    def next_wake(self) -> float:
        """Wall-clock time of the next part or verdict."""
        after = self.part_time(self.next_part)
        if self.waiting:
            after = min(after, self.waiting[0][0])
        return after
