"""The runner's log: where its lines go, how they look, and how a repeating condition is kept to a few lines.

``configure(stream)`` is called once by ``edge-runner run`` (the one place logging is set up): the
runner's loggers (``edge.*``) log at INFO, everything else (urllib3, tuf) at WARNING, all to ``stream``
(stderr). Under systemd (``JOURNAL_STREAM`` names the very file ``stream`` is, as sd-daemon says to
check) each line is ``<N>logger: message`` with the syslog priority N (3 error, 4 warning, 6 info,
7 debug) and no timestamp, since journald stamps it: ``journalctl -p warning`` then filters, and a
traceback's lines carry the same priority. Elsewhere a line is ``2026-12-02T14:02:11Z WARNING
edge.runner: message`` (UTC).

``Throttle`` keeps a repeating condition (the hub unreachable, a refused token, a full spool) from
writing a line per request: the first occurrence of a key is logged; later ones within ``every_s``
(default 300 s) are only counted, and the next occurrence after that logs the newest message with
"(41 more times in the last 5 min)"; ``clear(key)`` ends the condition (logging what was still
counted), ``forget(key)`` ends it silently (the caller tells the end its own way).

Leaves out: log files and rotation (journald or the service manager keeps the log) and
structured (JSON) output. Standard library only.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["RUNNER_LOGGER", "JournalFormatter", "Throttle", "TimestampFormatter", "configure", "duration_text",
           "under_journald"]

RUNNER_LOGGER = "edge"  # parent of edge.runner, edge.serving, edge.http_api
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
_HANDLER_NAME = "edge-runner"


def _priority(level: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= threshold:
            return PRIORITIES[threshold]
    return PRIORITIES[logging.DEBUG]


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` on every line (sd-daemon's prefix), no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {super().format(record)}"
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class TimestampFormatter(logging.Formatter):
    """``2026-12-02T14:02:11Z LEVEL logger: message`` (UTC)."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed's Callable[[], ...] for time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")


def under_journald(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``JOURNAL_STREAM`` ("device:inode") names the file ``stream`` writes to."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def configure(stream: TextIO | None = None, environ: Mapping[str, str] = os.environ,
              level: int = logging.INFO) -> logging.Handler:
    """Send log lines to ``stream`` (stderr): the runner's at ``level``, other libraries' at WARNING.
    Calling it again replaces the handler it installed (never adds a second)."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JournalFormatter() if under_journald(stream, environ) else TimestampFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(RUNNER_LOGGER).setLevel(level)
    return handler


@dataclass
class _Seen:
    window_start: float
    more: int = 0
    level: int = logging.INFO
    message: str = ""


class Throttle:
    """Logs a repeating condition once, then at most one summary line per ``every_s``. Thread safe."""

    def __init__(self, logger: logging.Logger, every_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def log(self, key: str, level: int, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged less than ``every_s`` ago; True when a line was written."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.window_start < self.every_s:
                seen.more, seen.level, seen.message = seen.more + 1, level, message
                return False
            more = 0 if seen is None else seen.more
            window = 0.0 if seen is None else now - seen.window_start
            self._seen[key] = _Seen(now)
        self.logger.log(level, "%s%s", message, _more(more, window))
        return True

    def active(self, key: str) -> bool:
        with self._lock:
            return key in self._seen

    def forget(self, key: str) -> int:
        """The condition ended and the caller says so itself: forget ``key`` without a line; returns how
        many occurrences were counted but not logged."""
        with self._lock:
            seen = self._seen.pop(key, None)
        return 0 if seen is None else seen.more

    def clear(self, key: str) -> int:
        """The condition ended: forget ``key``; an occurrence still counted is logged first. Returns how
        many occurrences were counted but not logged."""
        with self._lock:
            seen = self._seen.pop(key, None)
            now = self._clock()
        if seen is None or not seen.more:
            return 0
        self.logger.log(seen.level, "%s%s", seen.message, _more(seen.more, now - seen.window_start))
        return seen.more


def _more(count: int, seconds: float) -> str:
    if not count:
        return ""
    return f" ({count} more time{'s' if count != 1 else ''} in the last {duration_text(seconds)})"


def duration_text(seconds: float) -> str:
    """A span for a log line: "40 s", "3 min", "1.5 h" (at least "1 s")."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
