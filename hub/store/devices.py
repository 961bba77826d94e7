"""SQL of the ``devices`` table: insert or re-key a device, list devices with their upload counts and the
expiry of their certificates, revoke one (with every certificate issued to it), and find a token's device
(on every authenticated request, so in Core, not the ORM).

Rows hold the token's id, salt and salted hash only (hub.tokens), never a token. ``created_at`` is when
a device was first registered and stays; ``token_issued_at`` moves with each new token (re-keying).
Changes to one device's row lock it first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer
anyway), so two operators or hosts adding, revoking or re-keying one device at once do one after the
other; two adds of a new device at once: one wins, the other is told it exists. Leaves out the rules
(valid names, known channels, issuing tokens: hub.registry) and HTTP (hub.auth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import as_utc
from hub.db import Device, Upload, single_statements
from hub.store.certificates import latest_expiry, revoke_certificates
from hub.tokens import IssuedToken

__all__ = ["ActiveDevice", "Credentials", "DeviceInfo", "UnknownDevice", "credentials", "device_channel",
           "list_devices", "put_device", "revoke_device", "revoked"]


class ActiveDevice(Exception):
    """The device exists and is not revoked (it must be revoked before it gets a new token)."""


class UnknownDevice(Exception):
    """No device has this id."""


@dataclass(frozen=True)
class DeviceInfo:
    """What may be shown about a device: no token, salt or hash."""

    device_id: str
    channel: str
    created_at: datetime
    revoked_at: datetime | None
    uploads: int
    certificate_not_after: datetime | None = None  # latest expiry of its unrevoked certificates; None: token only
    token_issued_at: datetime | None = None  # when its current token was issued

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


@dataclass(frozen=True)
class Credentials:
    """What authenticating a token needs of its device's row."""

    device_id: str
    channel: str
    token_salt: str
    token_digest: str
    revoked: bool


def put_device(sessions: sessionmaker[Session], device_id: str, channel: str, issued: IssuedToken,
               now: datetime) -> None:
    """Insert ``device_id`` with ``issued``'s token, or give a revoked one that token; ActiveDevice if it
    exists unrevoked (also when another process added it at the same moment)."""
    try:
        with sessions.begin() as session:
            device = session.get(Device, device_id, with_for_update=True)
            if device is not None and device.revoked_at is None:
                raise ActiveDevice(device_id)
            if device is None:
                device = Device(device_id=device_id, created_at=now)
                session.add(device)
            device.channel = channel
            device.token_id, device.token_salt, device.token_digest = issued.token_id, issued.salt, issued.digest
            device.token_issued_at = now
            device.revoked_at = None
    except IntegrityError:  # a concurrent add of the same new device committed first
        raise ActiveDevice(device_id) from None


def list_devices(sessions: sessionmaker[Session]) -> list[DeviceInfo]:
    """Every device, by name, with its number of stored uploads."""
    counts = select(Upload.device_id, func.count().label("n")).group_by(Upload.device_id).subquery()
    query = (
        select(Device, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.device_id == Device.device_id)
        .order_by(Device.device_id)
    )
    with sessions() as session:
        expiry = latest_expiry(session)
        return [
            DeviceInfo(d.device_id, d.channel, as_utc(d.created_at),
                       None if d.revoked_at is None else as_utc(d.revoked_at), int(n), expiry.get(d.device_id),
                       as_utc(d.token_issued_at or d.created_at))
            for d, n in session.execute(query)
        ]


def revoke_device(sessions: sessionmaker[Session], device_id: str, now: datetime) -> bool:
    """Mark ``device_id`` and every certificate issued to it revoked at ``now`` (so adding the device again
    does not revive an old certificate); False when it already was, UnknownDevice when there is none."""
    with sessions.begin() as session:
        device = session.get(Device, device_id, with_for_update=True)
        if device is None:
            raise UnknownDevice(device_id)
        revoke_certificates(session, device_id, now)
        if device.revoked_at is not None:
            return False
        device.revoked_at = now
        return True


# built once: constructing a statement costs more than running it
_BY_TOKEN_ID = select(Device.device_id, Device.channel, Device.token_salt, Device.token_digest,
                      Device.revoked_at).where(Device.token_id == bindparam("token_id"))


def credentials(engine: Engine, token_id: str) -> Credentials | None:
    """The row of the device whose token has ``token_id``, if any."""
    with single_statements(engine).connect() as connection:
        row = connection.execute(_BY_TOKEN_ID, {"token_id": token_id}).first()
    if row is None:
        return None
    return Credentials(row.device_id, row.channel, row.token_salt, row.token_digest, row.revoked_at is not None)


def device_channel(engine: Engine, device_id: str) -> str | None:
    """The channel of ``device_id`` when it is registered and not revoked, else None."""
    query = select(Device.channel).where(Device.device_id == device_id, Device.revoked_at.is_(None))
    with single_statements(engine).connect() as connection:
        return connection.execute(query).scalar_one_or_none()


def revoked(sessions: sessionmaker[Session], device_id: str) -> bool:
    """Whether ``device_id`` is revoked; UnknownDevice when there is none."""
    with sessions() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise UnknownDevice(device_id)
        return device.revoked_at is not None
