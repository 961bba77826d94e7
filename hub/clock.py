"""The hub's one source of time: every timestamp it stores or compares comes from a ``Clock``.

``SystemClock`` (the default of ``hub.app.create_app``) reads the system clock; ``ManualClock`` stands
still until told to move (``advance(seconds)``), so tests decide how much time passes instead of
sleeping. Both hand out timezone-aware UTC datetimes. Leaves out monotonic timing of requests (the
metrics middleware measures durations with ``time.perf_counter``, which no wall clock should bend).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "as_utc"]


def as_utc(moment: datetime) -> datetime:
    """``moment`` with a UTC zone; a naive one is taken as UTC (SQLite hands timestamps back without one)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (thread-safe: the hub reads it from worker threads)."""

    def __init__(self, start: datetime | None = None) -> None:
        moment = datetime.now(UTC) if start is None else start
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = as_utc(moment)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (>= 0); the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
