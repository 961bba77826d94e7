"""Who is calling: FastAPI dependencies for device and admin authentication.

A device authenticates by its client certificate (mutual TLS, or forwarded by a trusted proxy: hub.peer)
or by a bearer token, as ``hub.tls.client_certificates`` (``AuthPolicy``) says: ``required``: by
certificate only (device routes, and the release repository, where the admin token also works);
``optional``: a certificate when one came, else a token; ``off``: tokens only. A certificate counts when
it names a device (its ``urn:edgeloop:device:`` URI), is one the hub issued (hub.store.certificates, by
fingerprint), has not expired by the hub's clock, and neither it nor its device is revoked, checked on
every request (no CRL); a forwarded one must also verify against the plant CA (hub.peer_certificates).
When a certificate came it decides: a bad one is not rescued by a token.

No credential, a bad one (malformed, unknown or wrong token; unknown, revoked, expired or not-issued
certificate) or a revoked device's: 401 with the same body whatever was wrong. Valid credentials of
device A on a path of device B: 403. Device ids in paths are
checked against edge.contracts.names' strict pattern first (422), so nothing from a path reaches the
filesystem unchecked. The admin token comes as a Bearer token; the fleet page also takes it as the
password of HTTP Basic auth (a browser asks for it), never in the URL. Only salted hashes are compared,
in constant time (hub.tokens). Leaves out rate limiting, token rotation (revoke + add) and the TLS
layer's own checks (hub.tls).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, HTTPException, Request, status

from edge.contracts.hub_section import TlsSection
from edge.contracts.names import DEVICE_ID_PATTERN, is_valid_device_id
from hub import tokens
from hub.peer import Presented, normalize_addresses, presented_certificate
from hub.peer_certificates import issued_by, read_peer
from hub.store.devices import credentials
from hub.store.plant_ca import ca_certificate

__all__ = ["AuthPolicy", "Caller", "admin", "admin_page", "authenticated_device", "bearer", "certified_device_itself",
           "device_itself", "may_read_releases", "valid_device_id"]

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
    fingerprint: str | None = None  # of the client certificate it authenticated with; None: by token


@dataclass(frozen=True)
class AuthPolicy:
    """How devices authenticate (``hub.tls``): ``client_certificates``, trusted proxies, the plant CA's folder."""

    client_certificates: str = "optional"
    proxies: frozenset[str] = frozenset()
    ca_dir: Path | None = None

    @classmethod
    def of(cls, tls: TlsSection, ca_dir: Path) -> AuthPolicy:
        return cls(tls.client_certificates, normalize_addresses(tls.trusted_proxies), ca_dir)

    @property
    def certificates(self) -> bool:
        return self.client_certificates != "off"

    @property
    def certificate_only(self) -> bool:
        return self.client_certificates == "required"


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


def _by_certificate(request: Request, presented: Presented, policy: AuthPolicy) -> Caller:
    hub = request.app.state
    peer = read_peer(presented.pem) if presented.pem else None
    if peer is None or peer.device_id is None:
        raise UNAUTHORIZED
    now = hub.clock.now()
    if presented.forwarded:  # the proxy verified it; so does the hub (a proxy may be misconfigured)
        ca = ca_certificate(policy.ca_dir) if policy.ca_dir is not None else None
        if ca is None or not issued_by(peer, ca, now):
            raise UNAUTHORIZED
    issued = hub.certificates(peer.fingerprint)
    if issued is None or issued.revoked or issued.device_id != peer.device_id or issued.not_after <= now:
        raise UNAUTHORIZED
    return Caller(issued.device_id, issued.channel, peer.fingerprint)


def certificate_caller(request: Request) -> Caller | None:
    """The device whose client certificate came with this request; None when none came (or certificates
    are off); 401 when one came and does not authenticate."""
    policy: AuthPolicy = request.app.state.auth_policy
    if not policy.certificates:
        return None
    presented = presented_certificate(request.scope, policy.proxies)
    return None if presented is None else _by_certificate(request, presented, policy)


def authenticated_device(request: Request) -> Caller:
    """The device whose valid certificate or valid, unrevoked token made this request, as the policy
    allows (else 401)."""
    caller = certificate_caller(request)
    if caller is not None:
        return caller
    if request.app.state.auth_policy.certificate_only:
        raise UNAUTHORIZED
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


def certified_device(request: Request) -> Caller:
    """The device whose valid client certificate made this request: never a token (else 401)."""
    caller = certificate_caller(request)
    if caller is None:
        raise UNAUTHORIZED
    return caller


def certified_device_itself(device_id: str, caller: Caller = Depends(certified_device)) -> Caller:  # noqa: B008
    """The certificate's device, when the path's device id is its own (403 otherwise)."""
    return device_itself(device_id, caller)


def may_read_releases(request: Request) -> bool:
    """Whether this request may read the release repository: anyone, unless certificates are required;
    then a device with a valid certificate, or the admin token (operators' tools)."""
    if not request.app.state.auth_policy.certificate_only:
        return True
    if _is_admin(request, bearer(request)):
        return True
    try:
        return certificate_caller(request) is not None
    except HTTPException:
        return False


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
