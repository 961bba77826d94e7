"""The fleet query: every registered device with its latest heartbeat, its upload totals and when its
certificate expires.

Four queries (devices, heartbeats, upload totals and certificate expiry per device) in one session,
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
from hub.db import Device, Heartbeat, Upload
from hub.store.certificates import latest_expiry

__all__ = ["FleetRow", "read_fleet_rows"]


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


def read_fleet_rows(sessions: sessionmaker[Session]) -> list[FleetRow]:
    """Every registered device, by id."""
    totals = select(Upload.device_id, func.count(Upload.id), func.coalesce(func.sum(Upload.bytes), 0))
    with sessions() as session:
        devices = session.scalars(select(Device).order_by(Device.device_id)).all()
        beats = {beat.device_id: beat for beat in session.scalars(select(Heartbeat))}
        uploads = {d: (int(c), int(b)) for d, c, b in session.execute(totals.group_by(Upload.device_id))}
        expiry = latest_expiry(session)
    rows = []
    for device in devices:
        beat = beats.get(device.device_id)
        count, size = uploads.get(device.device_id, (0, 0))
        rows.append(FleetRow(
            device_id=device.device_id, channel=device.channel, revoked=device.revoked_at is not None,
            received_at=None if beat is None else as_utc(beat.received_at), state=None if beat is None else beat.state,
            uploads=count, upload_bytes=size, certificate_not_after=expiry.get(device.device_id),
        ))
    return rows
