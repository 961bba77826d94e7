"""Operations: ``GET /healthz`` (the process answers and the database is reachable) and ``GET /metrics``.

``/healthz`` runs ``SELECT 1`` on the hub's engine (hub.db.reachable): 200 ``{"status": "ok",
"database": true}``, or 503 ``{"status": "unavailable", "database": false}`` (no error text: it may
name hosts or users). ``/metrics`` renders the app's own Prometheus registry in the text format,
version 0.0.4. Both are unauthenticated, as probes and scrapers expect; neither says anything about
devices or tokens. Leaves out readiness vs liveness distinctions (one probe) and any metrics of its own.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest

from hub.db import reachable
from hub.schemas.ops import Health

router = APIRouter(tags=["operations"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(request: Request) -> Response:
    """200 when the database answers, 503 otherwise."""
    if reachable(request.app.state.engine):
        return JSONResponse({"status": "ok", "database": True})
    return JSONResponse({"status": "unavailable", "database": False}, status_code=503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {PROMETHEUS_TEXT: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus text: requests by route and status, latency, uploads by outcome, bytes, heartbeats."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=PROMETHEUS_TEXT)
