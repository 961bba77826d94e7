"""Build the hub's FastAPI application from HubSettings and a clock: wire the parts, include the routes.

``create_app(settings, clock=None)`` opens the database (hub.db), reads or creates the admin token file
(keeping only a salted hash), and puts on ``app.state`` what the handlers use: ``settings``, ``engine``,
``sessions``, ``clock`` (every timestamp the hub writes or compares: system clock unless given),
``metrics``, ``write_lock``, ``intake`` (hub.intake, on the landing zone), ``release_files`` and
``auth_policy`` (how devices authenticate: hub.auth, from ``hub.tls``) and ``certificates`` (the issued
certificates as every request looks them up: hub.store.certificates.CertificateLookup). Routes
live in hub.routes; release GETs and uploads are answered before routing (hub.hot_paths);
request logs and metrics in hub.observe.
``extensions`` are callables given the built app (e.g. the operator console, edgeloop.console, mounts
its routes): the layers above the hub add to it without the hub importing them.
``app_from_environment`` is the factory uvicorn workers call (logging and the garbage collector as
hub.serving sets them; ``edgeloop hub serve`` calls it through edgeloop.console.serving with the console).
Leaves out serving, TLS included (uvicorn: hub.tls,
edgeloop.hub_cli, hub.embedded).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.util import find_spec
from typing import Any

from fastapi import FastAPI

from edge.contracts.layout import Paths
from hub import tokens
from hub.auth import AuthPolicy
from hub.clock import Clock, SystemClock
from hub.db import make_engine, make_sessions
from hub.db import write_lock as db_write_lock
from hub.hot_paths import HotPaths
from hub.intake import Intake
from hub.metrics import HubMetrics
from hub.observe import ObserveRequests
from hub.routes import enrollment, fleet, heartbeats, ops, releases, summaries, uploads
from hub.serving import configure_worker_logging, settle_gc
from hub.settings import HubSettings
from hub.store.admin_token import load_or_create_admin_token
from hub.store.certificates import CertificateLookup
from hub.store.object_batches import landing_storage
from hub.store.release_files import FileCache

__all__ = ["ROOT_ENV", "Extension", "app_from_environment", "create_app"]

ROOT_ENV = "EDGELOOP_HUB_ROOT"
# FastAPI's own OpenTelemetry hooks (in FastAPI releases that have them): off. The hub exports Prometheus
# metrics and nothing calls out; it also spares every request FastAPI's look-up of the global providers.
NO_OPENTELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}} if find_spec("fastapi.telemetry") else {})


Extension = Callable[[FastAPI], None]


def create_app(settings: HubSettings, clock: Clock | None = None, extensions: Sequence[Extension] = ()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.certificates.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="edgeloop hub",
        version="1",
        description="Device enrollment, uploads, summaries and heartbeats, the fleet view, and the signed release "
                    "repository.",
        lifespan=lifespan,
        **NO_OPENTELEMETRY,
    )
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)  # schema migrated to the newest revision (hub.migrations)
    write_lock = db_write_lock(engine)  # SQLite: one writer at a time in this process; PostgreSQL: none needed
    state = app.state
    state.settings, state.engine, state.sessions, state.clock = settings, engine, make_sessions(engine), clock
    state.metrics, state.write_lock = HubMetrics(), write_lock
    storage = landing_storage(settings.landing, settings.object_landing)  # data/uploads, or a bucket
    state.intake = Intake(engine, write_lock, storage, settings.schema, settings.summaries, clock)
    state.release_files = FileCache()
    state.auth_policy = AuthPolicy.of(settings.section.tls, settings.ca_dir)
    state.certificates = CertificateLookup(engine)
    admin_token, _ = load_or_create_admin_token(settings.admin_token_file)
    salt = secrets.token_hex(16)
    state.admin_digest = (salt, tokens.digest(admin_token, salt))

    app.add_middleware(HotPaths)  # inside ObserveRequests: release GETs and uploads are counted and timed too
    app.add_middleware(ObserveRequests)
    for module in (uploads, summaries, heartbeats, enrollment, fleet, releases, ops):
        app.include_router(module.router)
    for extend in extensions:
        extend(app)
    return app


def app_from_environment(extensions: Sequence[Extension] = ()) -> FastAPI:
    """App factory for uvicorn workers (``--workers N``): the project root comes from EDGELOOP_HUB_ROOT."""
    paths = Paths.at(os.environ.get(ROOT_ENV, "."))
    configure_worker_logging()  # as `edgeloop hub serve` asked: the access log on or off (hub.serving)
    app = create_app(HubSettings.load(paths.root), extensions=extensions)
    settle_gc()  # start-up's objects live as long as the process: out of every full collection (hub.serving)
    return app
