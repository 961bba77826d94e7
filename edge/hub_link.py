"""The runner's link to the hub as its requests find it: reachable, unreachable since when, or refused.

``HubLink`` hears the outcome of every request the hub client makes (edge.hub_client calls
``reachable()``, ``unreachable(reason)`` or ``refused(status, detail)``): uploads, summaries,
heartbeats and renewals alike. It logs the story once per change, rate-limited (edge.logs.Throttle):

- "hub unreachable since 14:02:11 UTC (hub at ... unreachable: ConnectError); predictions go on, uploads wait",
  then at most one "... (41 more times in the last 5 min)" line per ``throttle_s`` while it lasts;
- "hub refused device press-07: 401 token not accepted; check the token file (hub.token_file) or enroll
  again": the device's credentials were refused (401/403); uploads keep their batches and retry. The
  token is never in the line;
- "hub reachable again after 3 min (41 requests failed meanwhile); 12 rows waiting for upload".

``report()`` is the link's block in the state report and status.json (``state``: "unknown" before the
first request, "ok", "unreachable" or "refused"; ``since``, ``status``, ``detail``); ``auth_problem()``
is the refusal in words for the health reason (a refused device is "degraded": nothing it sends lands).

Leaves out: making requests (edge.hub_client) and retry timing (edge.uploader).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.logs import Throttle, duration_text

__all__ = ["AUTH_STATUSES", "HubLink"]

AUTH_STATUSES = frozenset({401, 403})  # refusals about the device's credentials, not about a request

log = logging.getLogger("edge.runner.hub")


def _clock_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class HubLink:
    """See the module docstring. Thread safe."""

    def __init__(self, device_id: str, backlog: Callable[[], int] = lambda: 0, *, throttle_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.device_id = device_id
        self._backlog = backlog
        self._clock = clock
        self._throttle = Throttle(log, throttle_s)
        self._lock = threading.Lock()
        self._state = "unknown"
        self._since: float | None = None
        self._status: int | None = None
        self._detail = ""
        self._failures = 0  # requests that failed since the link was last fine

    def _change(self, state: str, status: int | None, detail: str) -> tuple[str, float | None]:
        """Set the state; returns the previous state and its start."""
        with self._lock:
            before, since = self._state, self._since
            if state != before or (state == "refused" and status != self._status):
                self._since = self._clock()
            self._state, self._status, self._detail = state, status, detail
            self._failures = 0 if state == "ok" else self._failures + 1
        return before, since

    def reachable(self) -> None:
        """A request got an answer that was not a refusal of the device (2xx, or a 4xx about the request)."""
        if self._state == "ok":  # the common case: no lock, no log
            return
        failures = self._failures
        before, since = self._change("ok", None, "")
        if before in ("unreachable", "refused"):
            self._throttle.forget("unreachable")
            self._throttle.forget("refused")
            took = "" if since is None else f" after {duration_text(self._clock() - since)}"
            what = "reachable again" if before == "unreachable" else f"accepts device {self.device_id} again"
            log.info("hub %s%s (%d requests failed meanwhile); %d rows waiting for upload", what, took, failures,
                     self._backlog())

    def unreachable(self, reason: str) -> None:
        """No answer (network, timeout, TLS) or a "not now" answer (5xx, 429)."""
        before, _ = self._change("unreachable", None, reason)
        if before != "unreachable":
            self._throttle.clear("unreachable")
        since = self._since if self._since is not None else self._clock()
        again = "still " if before == "unreachable" else ""
        self._throttle.log("unreachable", logging.WARNING,
                           f"hub {again}unreachable since {_clock_text(since)} ({reason}); predictions go on, "
                           f"uploads wait")

    def refused(self, status: int, detail: str) -> None:
        """The hub refused the device's credentials (401/403)."""
        self._change("refused", status, detail)
        meaning = "its token or certificate was not accepted" if status == 401 else "it is not allowed this"
        self._throttle.log("refused", logging.ERROR,
                           f"hub refused device {self.device_id}: {status} {detail} ({meaning}); check the token file "
                           f"(hub.token_file) or the device's certificate, or enroll again (edge-runner enroll "
                           f"--force); uploads keep their rows and retry")

    # -- readings --

    @property
    def state(self) -> str:
        return self._state

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self._state, "since": None if self._since is None else _iso(self._since),
                    "status": self._status, "detail": self._detail}

    def auth_problem(self) -> str | None:
        """"hub refused this device (401) since 14:02:11 UTC: token not accepted", or None."""
        with self._lock:
            if self._state != "refused" or self._since is None:
                return None
            return f"hub refused this device ({self._status}) since {_clock_text(self._since)}: {self._detail}"
