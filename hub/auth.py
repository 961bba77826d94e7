"""Who is calling: FastAPI dependencies for device and admin authentication.

No token, a malformed, unknown or wrong token, or a revoked device's token: 401 with the same body
whatever was wrong. A valid token of device A on a path of device B: 403. Device ids in paths are
checked against edge.contracts.names' strict pattern first (422), so nothing from a path reaches the
filesystem unchecked. The admin token comes as a Bearer token; the fleet page also takes it as the
password of HTTP Basic auth (a browser asks for it), never in the URL. Only salted hashes are compared,
in constant time (hub.tokens). Leaves out rate limiting and token rotation (revoke + add).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status

from edge.contracts.names import DEVICE_ID_PATTERN, is_valid_device_id
from hub import tokens
from hub.store.devices import credentials

__all__ = ["Caller", "admin", "admin_page", "authenticated_device", "bearer", "device_itself", "valid_device_id"]

UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"}
)
PAGE_UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED, detail="not authenticated",
    headers={"WWW-Authenticate": 'Basic realm="edgeloop fleet", charset="UTF-8"'},
)
BAD_DEVICE_ID = f"device id must match {DEVICE_ID_PATTERN.pattern.strip('^$')}"


@dataclass(frozen=True)
class Caller:
    device_id: str
    channel: str


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def authenticated_device(request: Request) -> Caller:
    """The device whose valid, unrevoked token made this request (else 401)."""
    token = bearer(request)
    parsed = tokens.parse(token) if token else None
    if parsed is None:
        raise UNAUTHORIZED
    token_id, secret = parsed
    device = credentials(request.app.state.engine, token_id)
    if device is None or device.revoked:
        raise UNAUTHORIZED
    if not tokens.matches(secret, device.token_salt, device.token_digest):
        raise UNAUTHORIZED
    return Caller(device.device_id, device.channel)


def valid_device_id(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(status_code=422, detail=BAD_DEVICE_ID)
    return device_id


def device_itself(device_id: str, caller: Caller = Depends(authenticated_device)) -> Caller:  # noqa: B008
    """The caller, when the path's device id is the caller's own (403 otherwise)."""
    valid_device_id(device_id)
    if caller.device_id != device_id:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="a device may only act as itself")
    return caller


def _is_admin(request: Request, token: str | None) -> bool:
    salt, stored = request.app.state.admin_digest
    return bool(token) and tokens.matches(token or "", salt, stored)


def admin(request: Request) -> None:
    """Requests with the hub's admin token (else 401)."""
    if not _is_admin(request, bearer(request)):
        raise UNAUTHORIZED


def admin_page(request: Request) -> None:
    """The admin token as a Bearer token, or as the password of HTTP Basic auth (any user name)."""
    if not _is_admin(request, bearer(request) or _basic_password(request)):
        raise PAGE_UNAUTHORIZED
