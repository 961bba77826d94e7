"""Heartbeats in, the fleet out: ``POST /v1/devices/{device_id}/heartbeat``, ``GET /v1/fleet``, ``GET /fleet``.

A heartbeat replaces the device's previous one (one row per device in ``heartbeats``; portable
SQLAlchemy, no dialect-specific upsert: read, then insert or update, retried once if two heartbeats of
a new device race). The fleet joins every registered device with its last heartbeat and its upload
totals; a device silent longer than ``settings.stale_after_s`` is "offline" and its reported health is
withheld (never shown healthy). A heartbeat may also carry the runner's recent model events (candidate
rejected, activated, rolled back: at most 64), the version it would roll back to, and its spool's
eviction counts per upload reason; they are stored with the rest of the state.

The loop's view of the fleet (``hub.fleet_loop``) rides along: per device its model version, largest
drift (feature and PSI), estimated accuracy with its 95% interval, backlog and last-seen time; a fleet
summary (estimated accuracy, label balance) and, per release, the devices running it. Estimates come
from ``data/loop/estimates.json`` (written by the loop's flows); without it, or with a broken one, they
are null and everything else works. Leaves out heartbeat history (only the latest is kept) and alerting.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edge.contracts.names import CHANNEL_PATTERN
from edge.contracts.wire import (
    EVICTION_REASONS,
    HEALTH_STATES,
    HEARTBEAT_EVENT_DETAIL_MAX,
    HEARTBEAT_EVENT_KIND_PATTERN,
    HEARTBEAT_EVENTS_MAX,
    HEARTBEAT_MAP_MAX,
    HEARTBEAT_NAME_PATTERN,
    MAX_JSON_INT,
    VERSION_MAX_LENGTH,
)
from hub import tokens
from hub.auth import Caller, admin, bearer, device_itself
from hub.db import Device, Heartbeat, Upload, utc_now
from hub.fleet_loop import (
    FleetEstimates,
    Interval,
    MaxDrift,
    ReleaseDevices,
    device_estimate,
    fleet_estimates,
    load_estimates,
    max_drift,
    releases,
)
from hub.fleet_view import ONLINE, as_utc, render_fleet_html, status_of

router = APIRouter(tags=["fleet"])

Name = Annotated[str, StringConstraints(pattern=HEARTBEAT_NAME_PATTERN)]
HEARTBEAT_EXAMPLE: dict[str, Any] = {
    "model_version": "7",
    "channel": "canary",
    "health": "ok",
    "drift": {"temperature": 0.04, "vibration": 0.11},
    "rolling_accuracy": 0.93,
    "spool_backlog": 0,
    "counters": {"predictions": 120000, "uploads": 118},
    "clock": "2026-11-27T02:00:00Z",
    "previous_version": "6",
    "events": [{"kind": "activated", "version": "7", "at": "2026-11-27T01:00:00Z", "detail": "shadow accuracy 0.94"}],
    "evictions": {"random": 12},
}
EvictionReason = Literal[EVICTION_REASONS]  # type: ignore[valid-type]  # a tuple of literals from the contract
Version = Annotated[str, StringConstraints(min_length=1, max_length=VERSION_MAX_LENGTH)]
Count = Annotated[int, Field(ge=0, le=MAX_JSON_INT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class HeartbeatEvent(BaseModel):
    """Something the runner did with a model: e.g. ``rejected``, ``activated``, ``rolled_back``."""

    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, StringConstraints(pattern=HEARTBEAT_EVENT_KIND_PATTERN)]
    version: Version | None = None
    at: AwareDatetime
    detail: Annotated[str, StringConstraints(max_length=HEARTBEAT_EVENT_DETAIL_MAX)] = ""


class HeartbeatBody(BaseModel):
    """What a runner reports about itself, every poll interval."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [HEARTBEAT_EXAMPLE]})

    model_version: Version | None = None
    previous_version: Version | None = None  # what a rollback would return to
    channel: Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN.pattern)]
    health: Literal[HEALTH_STATES]  # type: ignore[valid-type]
    drift: dict[Name, Finite] = Field(default_factory=dict, max_length=HEARTBEAT_MAP_MAX)
    rolling_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    spool_backlog: Annotated[int, Field(ge=0, le=MAX_JSON_INT)] = 0
    counters: dict[Name, Count] = Field(default_factory=dict, max_length=HEARTBEAT_MAP_MAX)
    clock: AwareDatetime  # the device's own clock when it sent this (skew shows against received_at)
    events: list[HeartbeatEvent] = Field(default_factory=list, max_length=HEARTBEAT_EVENTS_MAX)  # newest last
    evictions: dict[EvictionReason, Annotated[int, Field(ge=0, le=MAX_JSON_INT)]] = Field(default_factory=dict)


class HeartbeatRecorded(BaseModel):
    device_id: str
    received_at: datetime
    state: dict[str, Any]


class LastHeartbeat(BaseModel):
    received_at: datetime
    age_s: float
    state: dict[str, Any]


class UploadTotals(BaseModel):
    count: int
    bytes: int


class FleetDevice(BaseModel):
    device_id: str
    channel: str
    revoked: bool
    status: Literal["never seen", "online", "offline"]
    health: str | None = Field(description="reported health while online; null when offline or never seen")
    last_heartbeat: LastHeartbeat | None
    uploads: UploadTotals
    last_seen: datetime | None = Field(None, description="when its last heartbeat arrived")
    model_version: str | None = Field(None, description="the version it last reported running")
    max_drift: MaxDrift | None = Field(None, description="its largest reported feature drift (PSI)")
    backlog: int | None = Field(None, description="rows waiting in its spool, as last reported")
    estimated_accuracy: Interval | None = Field(
        None, description="IPW accuracy of its uploaded labelled rows with 95% interval: for the version it "
                          "runs when there are rows for it, else over every version (model_version null)")


class Fleet(BaseModel):
    generated_at: datetime
    stale_after_s: float
    devices: list[FleetDevice]
    estimates: FleetEstimates | None = Field(None, description="fleet accuracy and label balance (IPW)")
    releases: list[ReleaseDevices] = Field(default_factory=list, description="per model version, who runs it")


def _upsert(session: Session, device_id: str, state: dict[str, Any], now: datetime) -> None:
    row = session.get(Heartbeat, device_id)
    if row is None:
        session.add(Heartbeat(device_id=device_id, received_at=now, state=state))
    else:
        row.received_at, row.state = now, state
    session.commit()


def record_heartbeat(sessions: Any, device_id: str, state: dict[str, Any], write_lock: Any) -> datetime:
    """Store ``state`` as the device's latest heartbeat; the time it was received."""
    now = utc_now()
    for attempt in range(2):
        with write_lock, sessions() as session:
            try:
                _upsert(session, device_id, state, now)
                return now
            except IntegrityError:  # a concurrent first heartbeat inserted the row: update it instead
                session.rollback()
                if attempt:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


@router.post("/v1/devices/{device_id}/heartbeat", response_model=HeartbeatRecorded)
def heartbeat(body: HeartbeatBody, request: Request, caller: Caller = Depends(device_itself)) -> HeartbeatRecorded:  # noqa: B008
    """Record the calling device's state (its token must be the path's device: else 403)."""
    state = body.model_dump(mode="json")
    received = record_heartbeat(request.app.state.sessions, caller.device_id, state, request.app.state.write_lock)
    request.app.state.metrics.heartbeats.inc()
    return HeartbeatRecorded(device_id=caller.device_id, received_at=received, state=state)


def _device(device: Device, beat: Heartbeat | None, uploads: tuple[int, int], now: datetime,
            stale_after_s: float, estimates: dict[str, Any] | None) -> FleetDevice:
    received = as_utc(beat.received_at) if beat is not None else None
    state = status_of(received, now, stale_after_s)
    last = None
    if beat is not None and received is not None:
        last = LastHeartbeat(received_at=received, age_s=max(0.0, (now - received).total_seconds()), state=beat.state)
    reported: dict[str, Any] = beat.state if beat is not None and isinstance(beat.state, dict) else {}
    health = str(reported.get("health")) if beat is not None and state == ONLINE else None
    version = reported.get("model_version")
    version = None if version is None else str(version)
    backlog = reported.get("spool_backlog")
    return FleetDevice(
        device_id=device.device_id, channel=device.channel, revoked=device.revoked_at is not None, status=state,
        health=health, last_heartbeat=last, uploads=UploadTotals(count=uploads[0], bytes=uploads[1]),
        last_seen=received, model_version=version, max_drift=max_drift(reported.get("drift")),
        backlog=backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None,
        estimated_accuracy=device_estimate(estimates, device.device_id, version),
    )


def read_fleet(sessions: Any, stale_after_s: float, estimates: dict[str, Any] | None = None) -> Fleet:
    """Every registered device with its last heartbeat, staleness, upload totals and, from ``estimates``
    (the loop's ``estimates.json`` document), estimated accuracies; three queries."""
    now = utc_now()
    totals = select(Upload.device_id, func.count(Upload.id), func.coalesce(func.sum(Upload.bytes), 0))
    with sessions() as session:
        devices = session.scalars(select(Device).order_by(Device.device_id)).all()
        beats = {beat.device_id: beat for beat in session.scalars(select(Heartbeat))}
        uploads = {d: (int(c), int(b)) for d, c, b in session.execute(totals.group_by(Upload.device_id))}
    rows = [_device(d, beats.get(d.device_id), uploads.get(d.device_id, (0, 0)), now, stale_after_s, estimates)
            for d in devices]
    return Fleet(generated_at=now, stale_after_s=stale_after_s, devices=rows, estimates=fleet_estimates(estimates),
                 releases=releases(rows, estimates))


def _fleet_now(request: Request) -> Fleet:
    settings = request.app.state.settings
    estimates = load_estimates(settings.estimates)
    return read_fleet(request.app.state.sessions, settings.stale_after_s, estimates)


@router.get("/v1/fleet", response_model=Fleet, dependencies=[Depends(admin)])
def fleet(request: Request) -> Fleet:
    """Every device with channel, revoked flag, last heartbeat, status, uploads, version, largest drift,
    backlog and estimated accuracy; the fleet's estimated accuracy and label balance; per release the
    devices running it (admin token)."""
    return _fleet_now(request)


PAGE_UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED, detail="not authenticated",
    headers={"WWW-Authenticate": 'Basic realm="edgeloop fleet", charset="UTF-8"'},
)


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def admin_page(request: Request) -> None:
    """The admin token as a Bearer token, or as the password of HTTP Basic auth (any user name)."""
    token = bearer(request) or _basic_password(request)
    salt, stored = request.app.state.admin_digest
    if not token or not tokens.matches(token, salt, stored):
        raise PAGE_UNAUTHORIZED


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
