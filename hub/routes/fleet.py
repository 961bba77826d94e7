"""The fleet for operators: ``GET /v1/fleet`` (JSON) and ``GET /fleet`` (an offline-safe HTML page).

Both need the admin token (hub.auth: Bearer; the page also takes it as the Basic auth password). Each
request reads the stored rows (hub.store.fleet) and the loop's estimates file (hub.store.estimates),
and builds the document at the hub clock's "now" (hub.fleet_document); the page renders that document
(hub.fleet_view). Without an estimates file, or with a broken one, estimates are null and everything
else works. Leaves out caching (the page says to reload).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from edge.contracts.wire import FLEET_PATH
from hub.auth import admin, admin_page
from hub.fleet_document import build_fleet
from hub.fleet_view import render_fleet_html
from hub.schemas.fleet import Fleet
from hub.settings import HubSettings
from hub.store.estimates import load_estimates
from hub.store.fleet import read_fleet_rows

router = APIRouter(tags=["fleet"])


def _fleet_now(request: Request) -> Fleet:
    hub = request.app.state
    settings: HubSettings = hub.settings
    rows = read_fleet_rows(hub.sessions)
    return build_fleet(rows, hub.clock.now(), settings.section.stale_after_s, load_estimates(settings.estimates))


@router.get(FLEET_PATH, response_model=Fleet, dependencies=[Depends(admin)])
def fleet(request: Request) -> Fleet:
    """Every device with channel, revoked flag, last heartbeat, status, uploads, version, largest drift,
    backlog and estimated accuracy; the fleet's estimated accuracy and label balance; per release the
    devices running it (admin token)."""
    return _fleet_now(request)


@router.get("/fleet", response_class=HTMLResponse, dependencies=[Depends(admin_page)])
def fleet_page(request: Request) -> HTMLResponse:
    """The fleet as an HTML page (inline CSS, no script, no external assets: works on a closed network).

    Authentication: the admin token, either as ``Authorization: Bearer <token>`` or, for a browser, as
    the password of HTTP Basic auth (the browser asks; any user name). No token in the URL, so it stays
    out of history, logs and Referer headers. Basic auth is cleartext over plain HTTP: the hub listens
    on loopback by default, so from another machine use an ssh tunnel (``ssh -L 8700:127.0.0.1:8700
    hub-host``, then open http://127.0.0.1:8700/fleet) or a TLS-terminating proxy. Reload to refresh.
    """
    document = _fleet_now(request)
    html = render_fleet_html(document.model_dump(mode="json"))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
