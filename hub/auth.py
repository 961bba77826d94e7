"""Who is calling: FastAPI dependencies for device and admin authentication.

No token, a malformed, unknown or wrong token, or a revoked device's token: 401 with the same body
whatever was wrong. A valid token of device A on a path of device B: 403. Device ids in paths are
checked against edge.contracts.record's strict pattern first (422), so nothing from a path reaches the
filesystem unchecked. Leaves out rate limiting and token rotation (revoke + add).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select

from edge.contracts.names import is_valid_device_id
from hub import tokens
from hub.db import Device

UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"}
)


@dataclass(frozen=True)
class Caller:
    device_id: str
    channel: str


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticated_device(request: Request) -> Caller:
    """The device whose valid, unrevoked token made this request (else 401)."""
    token = bearer(request)
    parsed = tokens.parse(token) if token else None
    if parsed is None:
        raise UNAUTHORIZED
    token_id, secret = parsed
    columns = (Device.device_id, Device.channel, Device.token_salt, Device.token_digest, Device.revoked_at)
    with request.app.state.engine.connect() as connection:  # Core, not ORM: this runs on every request
        device = connection.execute(select(*columns).where(Device.token_id == token_id)).first()
    if device is None or device.revoked_at is not None:
        raise UNAUTHORIZED
    if not tokens.matches(secret, device.token_salt, device.token_digest):
        raise UNAUTHORIZED
    return Caller(device.device_id, device.channel)


def valid_device_id(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(status_code=422, detail="device id must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    return device_id


def device_itself(device_id: str, caller: Caller = Depends(authenticated_device)) -> Caller:  # noqa: B008
    """The caller, when the path's device id is the caller's own (403 otherwise)."""
    valid_device_id(device_id)
    if caller.device_id != device_id:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="a device may only act as itself")
    return caller


def admin(request: Request) -> None:
    """Requests with the hub's admin token (else 401)."""
    token = bearer(request)
    salt, stored = request.app.state.admin_digest
    if not token or not tokens.matches(token, salt, stored):
        raise UNAUTHORIZED
