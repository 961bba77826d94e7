"""Per request, one metrics update; a log line for server errors, and an access-log line at DEBUG.

Plain ASGI middleware (cheaper than ``@app.middleware("http")``). Metrics: ``edgeloop_hub_requests`` by
method, route template and status, ``edgeloop_hub_request_seconds`` by route template (templates, not
paths: device ids in paths would make label values unbounded); the labelled children are looked up once
per (method, route, status) and kept. Logs: a response with status 500 or more is always one WARNING
line on ``edgeloop.hub``; the access log, one DEBUG ``key=value`` line per request on
``edgeloop.hub.access`` (method, route template, status, ms), is written only where that logger is
enabled for DEBUG (``edgeloop hub serve --access-log``: hub.serving): at a few thousand requests a
second a line per request costs more than answering a release poll. Lines never carry headers (tokens)
or bodies. Durations come from ``time.perf_counter``, not the hub's clock (a manual clock must not bend
latencies). Leaves out tracing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.metrics import HubMetrics

__all__ = ["ObserveRequests"]

log = logging.getLogger("edgeloop.hub")
access = logging.getLogger("edgeloop.hub.access")
LINE = "method=%s route=%s status=%s ms=%.1f"
SERVER_ERROR = 500


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # bounded: methods x routes x statuses

    def _metrics(self, scope: Scope, method: str, route: str, status: int) -> tuple[Any, Any]:
        children = self._children.get((method, route, status))
        if children is None:
            metrics: HubMetrics = scope["app"].state.metrics
            children = (metrics.requests.labels(method, route, str(status)), metrics.latency.labels(route))
            self._children[(method, route, status)] = children
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = SERVER_ERROR

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = getattr(scope.get("route"), "path", "unmatched")
            requests, latency = self._metrics(scope, method, route, status)
            requests.inc()
            latency.observe(seconds)
            if status >= SERVER_ERROR:
                log.warning(LINE, method, route, status, seconds * 1000)
            elif access.isEnabledFor(logging.DEBUG):
                access.debug(LINE, method, route, status, seconds * 1000)
