"""The device registry: add a device (issuing its token once), list devices, revoke a device.

Works on the hub database through SQLAlchemy sessions, so the CLI and a running hub share it: a
revocation takes effect on the hub's next request. Only the token's id, salt and salted hash are stored
(hub.tokens); the token itself is returned once by ``add_device`` and never kept. Adding a revoked
device again issues it a new token (that is how a token is rotated). Leaves out deleting devices (their
uploads and heartbeats keep referring to them).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edge.contracts.names import DEFAULT_CHANNELS, DEVICE_ID_RULE, ChannelError, check_known_channel, is_valid_device_id
from hub import tokens
from hub.db import Device, Upload, utc_now


class RegistryError(ValueError):
    """A device operation that cannot be done; the message says why (shown to the operator)."""


@dataclass(frozen=True)
class DeviceInfo:
    """What may be shown about a device: no token, salt or hash."""

    device_id: str
    channel: str
    created_at: datetime
    revoked_at: datetime | None
    uploads: int

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


def _check(device_id: str, channel: str, channels: Collection[str]) -> None:
    if not is_valid_device_id(device_id):
        raise RegistryError(f"invalid device name {device_id!r}: use {DEVICE_ID_RULE}")
    try:
        check_known_channel(channel, channels, hint="make it first with `edgeloop release promote N --to "
                                                     f"{channel} --create`")
    except ChannelError as exc:
        raise RegistryError(str(exc)) from None


def add_device(sessions: sessionmaker[Session], device_id: str, channel: str = "stable",
               channels: Collection[str] = DEFAULT_CHANNELS) -> str:
    """Register ``device_id`` (or re-key a revoked one) on ``channel``, which must be one of ``channels``
    (the release repository's, plus the defaults); return its token: the only time it is shown."""
    _check(device_id, channel, channels)
    issued = tokens.issue()
    with sessions.begin() as session:
        device = session.get(Device, device_id)
        if device is not None and device.revoked_at is None:
            raise RegistryError(f"device {device_id!r} already exists; revoke it first to issue a new token")
        if device is None:
            device = Device(device_id=device_id)
            session.add(device)
        device.channel = channel
        device.token_id, device.token_salt, device.token_digest = issued.token_id, issued.salt, issued.digest
        device.created_at = utc_now()
        device.revoked_at = None
    return issued.token


def list_devices(sessions: sessionmaker[Session]) -> list[DeviceInfo]:
    """Every device, by name, with its number of stored uploads."""
    counts = select(Upload.device_id, func.count().label("n")).group_by(Upload.device_id).subquery()
    query = (
        select(Device, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.device_id == Device.device_id)
        .order_by(Device.device_id)
    )
    with sessions() as session:
        return [
            DeviceInfo(d.device_id, d.channel, d.created_at, d.revoked_at, int(n)) for d, n in session.execute(query)
        ]


def revoke_device(sessions: sessionmaker[Session], device_id: str) -> bool:
    """Revoke ``device_id``'s token; False when it was already revoked. Unknown devices are an error."""
    with sessions.begin() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise RegistryError(f"no device named {device_id!r}")
        if device.revoked_at is not None:
            return False
        device.revoked_at = utc_now()
        return True
