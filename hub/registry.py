"""The device registry: add a device (issuing its token once), give it a one-time enrollment code, list
devices, revoke a device.

The rules live here, the SQL in hub.store.devices: a device id must match the contract's pattern
(``DEVICE_ID_RULE``), a channel must exist (``check_known_channel``: the release repository's channels
plus the defaults), an active device is not re-added. Works on the hub database through SQLAlchemy
sessions, so the CLI and a running hub share it: a revocation takes effect on the hub's next request.
Only the token's id, salt and salted hash are stored (hub.tokens); the token itself is returned once by
``add_device`` and never kept. Adding a revoked device again issues it a new token (that is how a token
is rotated). ``issue_enrollment_code`` gives an active device a one-time code for ``POST /v1/enroll``
(random, returned once, stored as a salted hash like tokens, expiring after ``ttl_s``; it replaces the
device's unused codes). Revoking a device revokes every certificate issued to it as well, at once.
Times come from ``clock`` (the system clock unless given). Leaves out deleting devices (their uploads
and heartbeats keep referring to them) and enrolling (hub.enrollment).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from edge.contracts.names import DEFAULT_CHANNELS, DEVICE_ID_RULE, ChannelError, check_known_channel, is_valid_device_id
from hub import tokens
from hub.clock import Clock, SystemClock
from hub.store import devices
from hub.store.devices import DeviceInfo
from hub.store.enrollment_codes import put_code

__all__ = ["DeviceInfo", "RegistryError", "add_device", "issue_enrollment_code", "list_devices", "revoke_device"]


class RegistryError(ValueError):
    """A device operation that cannot be done; the message says why (shown to the operator)."""


def _check(device_id: str, channel: str, channels: Collection[str]) -> None:
    if not is_valid_device_id(device_id):
        raise RegistryError(f"invalid device name {device_id!r}: use {DEVICE_ID_RULE}")
    try:
        check_known_channel(channel, channels, hint="make it first with `edgeloop release promote N --to "
                                                     f"{channel} --create`")
    except ChannelError as exc:
        raise RegistryError(str(exc)) from None


def add_device(sessions: sessionmaker[Session], device_id: str, channel: str = "stable",
               channels: Collection[str] = DEFAULT_CHANNELS, clock: Clock | None = None) -> str:
    """Register ``device_id`` (or re-key a revoked one) on ``channel``, which must be one of ``channels``
    (the release repository's, plus the defaults); return its token: the only time it is shown."""
    _check(device_id, channel, channels)
    issued = tokens.issue()
    try:
        devices.put_device(sessions, device_id, channel, issued, (clock or SystemClock()).now())
    except devices.ActiveDevice:
        raise RegistryError(f"device {device_id!r} already exists; revoke it first to issue a new token") from None
    return issued.token


def issue_enrollment_code(sessions: sessionmaker[Session], device_id: str, ttl_s: float,
                          clock: Clock | None = None) -> str:
    """A fresh one-time enrollment code for the active device ``device_id``, valid for ``ttl_s`` seconds;
    the only time it is shown. Codes the device had and never used stop working."""
    now = (clock or SystemClock()).now()
    try:
        gone = devices.revoked(sessions, device_id)
    except devices.UnknownDevice:
        raise RegistryError(f"no device named {device_id!r}: add it with `edgeloop devices add {device_id}`") from None
    if gone:
        raise RegistryError(f"device {device_id!r} is revoked: add it again (`edgeloop devices add {device_id}`)")
    issued = tokens.issue_code()
    put_code(sessions, device_id, issued, now, now + timedelta(seconds=ttl_s))
    return issued.token


def list_devices(sessions: sessionmaker[Session]) -> list[DeviceInfo]:
    """Every device, by name, with its number of stored uploads."""
    return devices.list_devices(sessions)


def revoke_device(sessions: sessionmaker[Session], device_id: str, clock: Clock | None = None) -> bool:
    """Revoke ``device_id``'s token; False when it was already revoked. Unknown devices are an error."""
    try:
        return devices.revoke_device(sessions, device_id, (clock or SystemClock()).now())
    except devices.UnknownDevice:
        raise RegistryError(f"no device named {device_id!r}") from None
