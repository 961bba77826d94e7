"""The runner's background loops: named daemon threads that run a body now and then every interval.

``Loops(errors)`` starts loops with ``every(name, interval, body)``: ``body()`` runs at once (or after the
first interval, ``wait_first=True``) and then every ``interval()`` seconds until ``stop()``; an exception
in a body is logged with its traceback, counted in ``errors`` (label: the loop's name) and the loop goes
on. ``stopping`` is the event bodies that block (the uploader) wait on, so ``stop`` ends them promptly.

Leaves out: what the loops do (edge.updates, edge.uploads, edge.reporting wire their bodies).
Standard library only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.metrics import Counter

__all__ = ["Loops"]

log = logging.getLogger("edge.runner")


class Loops:
    """See the module docstring."""

    def __init__(self, errors: Counter) -> None:
        self._errors = errors
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def every(self, name: str, interval: Callable[[], float], body: Callable[[], object], *,
              wait_first: bool = False) -> None:
        """Run ``body`` in its own thread now (or after one interval) and then every ``interval()`` seconds."""
        thread = threading.Thread(target=self._run, args=(name, interval, body, wait_first),
                                  name=f"edge-runner-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self, name: str, interval: Callable[[], float], body: Callable[[], object], wait_first: bool) -> None:
        if wait_first and self.stopping.wait(interval()):
            return
        while not self.stopping.is_set():
            try:
                body()
            except Exception:
                self._errors.inc(name)
                log.exception("%s loop failed; it goes on", name)
            if self.stopping.wait(interval()):
                return

    def stop(self, timeout: float) -> None:
        """Ask every loop to end and wait for them (at most ``timeout`` seconds in all)."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
