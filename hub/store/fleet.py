"""The fleet query: every registered device with its latest heartbeat, its upload totals and when its
certificate expires; ``read_device_row`` the same for one device (the console's device page).

Four column queries (devices, heartbeats, upload totals and certificate expiry per device) in one session,
returned as plain rows (``FleetRow``) with UTC-aware times. Leaves out what the rows mean (online or
offline, estimates: hub.fleet_document) and the estimates file (hub.store.estimates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import as_utc
from hub.db import Device, DeviceCertificate, Heartbeat, Upload
from hub.store.certificates import latest_expiry

__all__ = ["FleetRow", "read_device_row", "read_fleet_rows"]


@dataclass(frozen=True)
class FleetRow:
    device_id: str
    channel: str
    revoked: bool
    received_at: datetime | None  # of its latest heartbeat; None: never heard from
    state: dict[str, Any] | None  # what that heartbeat said
    uploads: int
    upload_bytes: int
    certificate_not_after: datetime | None = None  # latest expiry of its unrevoked certificates; None: token only
    token_issued_at: datetime | None = None  # when its current token was issued (created_at on older rows)


def read_fleet_rows(sessions: sessionmaker[Session]) -> list[FleetRow]:
    """Every registered device, by id. Column queries, not ORM entities: the console's fleet page asks for a
    thousand devices on every request, and building ORM objects was most of its time."""
    totals = select(Upload.device_id, func.count(Upload.id), func.coalesce(func.sum(Upload.bytes), 0))
    columns = select(Device.device_id, Device.channel, Device.revoked_at, Device.token_issued_at, Device.created_at)
    with sessions() as session:
        devices = session.execute(columns.order_by(Device.device_id)).all()
        beats = {d: (at, state) for d, at, state in session.execute(
            select(Heartbeat.device_id, Heartbeat.received_at, Heartbeat.state))}
        uploads = {d: (int(c), int(b)) for d, c, b in session.execute(totals.group_by(Upload.device_id))}
        expiry = latest_expiry(session)
    rows = []
    for device_id, channel, revoked_at, token_issued_at, created_at in devices:
        received_at, state = beats.get(device_id, (None, None))
        count, size = uploads.get(device_id, (0, 0))
        rows.append(FleetRow(
            device_id=device_id, channel=channel, revoked=revoked_at is not None,
            received_at=None if received_at is None else as_utc(received_at), state=state,
            uploads=count, upload_bytes=size, certificate_not_after=expiry.get(device_id),
            token_issued_at=as_utc(token_issued_at or created_at),
        ))
    return rows


def _issued(device: Device) -> datetime:
    return as_utc(device.token_issued_at or device.created_at)


def read_device_row(sessions: sessionmaker[Session], device_id: str) -> FleetRow | None:
    """``device_id`` as ``read_fleet_rows`` has it; None when no such device is registered."""
    with sessions() as session:
        device = session.get(Device, device_id)
        if device is None:
            return None
        beat = session.get(Heartbeat, device_id)
        count, size = session.execute(
            select(func.count(Upload.id), func.coalesce(func.sum(Upload.bytes), 0))
            .where(Upload.device_id == device_id)).one()
        expiry = session.scalar(
            select(func.max(DeviceCertificate.not_after))
            .where(DeviceCertificate.device_id == device_id, DeviceCertificate.revoked_at.is_(None)))
    return FleetRow(
        device_id=device.device_id, channel=device.channel, revoked=device.revoked_at is not None,
        received_at=None if beat is None else as_utc(beat.received_at), state=None if beat is None else beat.state,
        uploads=int(count), upload_bytes=int(size), certificate_not_after=None if expiry is None else as_utc(expiry),
        token_issued_at=_issued(device),
    )
