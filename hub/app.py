"""Build the hub's FastAPI application from HubSettings: database, admin token, metrics, routes.

Routes live in hub/routes/ (one module per concern). Request logging and metrics are middleware here.
Logs carry method, route, status and timing, never headers or bodies (tokens stay out of logs).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.atomic import write_text_atomic
from hub import tokens
from hub.db import make_engine, make_sessions
from hub.metrics import HubMetrics
from hub.settings import HubSettings

log = logging.getLogger("edgeloop.hub")


def load_or_create_admin_token(path: os.PathLike[str] | str) -> tuple[str, bool]:
    """The admin token from its 0600 file, creating one on first use; (token, created)."""
    from pathlib import Path

    file = Path(path)
    if file.is_file():
        return file.read_text(encoding="utf-8").strip(), False
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = f"ela_{secrets.token_urlsafe(32)}"
    write_text_atomic(file, token + "\n", mode=0o600)
    return token, True


class ObserveRequests:
    """Plain ASGI middleware (cheaper than ``@app.middleware("http")``): per request one metrics update
    and one ``key=value`` log line with method, route template, status and time; nothing else."""

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


def create_app(settings: HubSettings) -> FastAPI:
    from hub.routes import fleet, ops, releases, summaries, uploads

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.engine.dispose()

    app = FastAPI(
        title="edgeloop hub",
        version="1",
        description="Device uploads, summaries and heartbeats, the fleet view, and the signed release repository.",
        lifespan=lifespan,
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessions(engine)
    app.state.metrics = HubMetrics()
    # One writer at a time inside this process: SQLite allows one write transaction, and its busy
    # handler waits by sleeping in growing steps, which turns lock contention into long tail latency.
    app.state.write_lock = threading.Lock()
    admin_token, _ = load_or_create_admin_token(settings.admin_token_file)
    salt = secrets.token_hex(16)
    app.state.admin_digest = (salt, tokens.digest(admin_token, salt))

    app.add_middleware(ObserveRequests)
    for module in (uploads, summaries, fleet, releases, ops):
        app.include_router(module.router)
    return app


ROOT_ENV = "EDGELOOP_HUB_ROOT"


def app_from_environment() -> FastAPI:
    """App factory for uvicorn workers (``--workers N``): the project root comes from EDGELOOP_HUB_ROOT."""
    from edge.contracts.layout import Paths

    paths = Paths.at(os.environ.get(ROOT_ENV, "."))
    return create_app(HubSettings.load(paths.root))
