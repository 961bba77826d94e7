"""Per request, one metrics update and one ``key=value`` log line: method, route template, status, time.

Plain ASGI middleware (cheaper than ``@app.middleware("http")``). Logs carry nothing else: never headers
(tokens) or bodies. Route templates, not paths, label the metrics (device ids in paths would make label
values unbounded). Durations come from ``time.perf_counter``, not the hub's clock (a manual clock must
not bend latencies). Leaves out tracing.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.metrics import HubMetrics

__all__ = ["ObserveRequests"]

log = logging.getLogger("edgeloop.hub")


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics: HubMetrics = scope["app"].state.metrics
            metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            metrics.latency.labels(route).observe(seconds)
            if log.isEnabledFor(logging.INFO):
                log.info("method=%s route=%s status=%s ms=%.1f", scope["method"], route, status[0], seconds * 1000)
