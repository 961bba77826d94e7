"""One retrain at a time on one project: an OS-level lock on ``data/.retrain.lock``.

Whatever starts a retrain (``edgeloop retrain``, the ``retrain-on-demand`` deployment, the monitor's
subflow) holds ``fcntl.flock`` on that file while its stages run. The kernel drops the lock when the
holding process ends, however it ends, so a killed retrain never leaves a stale lock. The holder writes
its pid and start time into the file (for the message a second retrain gets); the file itself is never
deleted and its content is only informative.

``hold_retrain_lock(paths, wait=False)`` refuses at once with ``RetrainBusy`` (a ``UserError``: one line,
naming the holder and ``--wait``); ``wait=True`` waits for the holder to finish. The lock is re-entrant
within a process: the CLI takes it before Prefect starts, and the flow it then runs takes it again
without blocking on itself. Leaves out the Prefect-server-wide limit across projects
(``flows.orchestration.concurrency``) and the retrain itself.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths

__all__ = ["LOCK_NAME", "RetrainBusy", "holder", "hold_retrain_lock", "lock_file"]

LOCK_NAME = ".retrain.lock"
POLL_S = 0.2
_held: dict[Path, int] = {}  # lock file -> depth, for this process (re-entrant)
_guard = threading.Lock()


class RetrainBusy(UserError):
    """Another process holds this project's retrain lock."""


def lock_file(paths: Paths) -> Path:
    return paths.data / LOCK_NAME


def holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it: 'pid P, started HH:MM:SS' (or 'pid unknown')."""
    for _ in range(5):  # the holder truncates, then writes: give it a moment
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        pid, _, started = text.partition(" ")
        if pid.isdigit():
            try:
                when = dt.datetime.fromisoformat(started).astimezone().strftime("%H:%M:%S")
            except ValueError:
                when = "at an unknown time"
            return f"pid {pid}, started {when}"
        time.sleep(0.05)
    return "pid unknown"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def hold_retrain_lock(paths: Paths, wait: bool = False,
                      on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the project's retrain lock for the body. Busy: ``RetrainBusy`` at once, or with ``wait`` block
    (polling) until it is free, after telling ``on_wait`` who holds it."""
    path = lock_file(paths).resolve()
    with _guard:
        if path in _held:  # this process already holds it (the CLI around the flow)
            _held[path] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            who = holder(path)
            if not wait:
                raise RetrainBusy(f"another retrain is running on this project ({who}); wait for it or pass --wait")
            if on_wait is not None:
                on_wait(f"waiting for another retrain on this project ({who}) to finish")
            while not _try_lock(fd):
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n".encode(), 0)
        with _guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _guard:
                _held.pop(path, None)
    finally:
        os.close(fd)  # releases the flock
