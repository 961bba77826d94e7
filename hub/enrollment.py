"""Enrollment and renewal: a key born on the device gets its client certificate from the plant CA.

``enroll(desk, code, csr)``: the one-time code (hub.tokens ``elc_...``) must be known, unused, unexpired
(by the hub's clock) and its device registered and not revoked, else ``Refused(401)`` with one detail
whatever was wrong; with no release repository yet, or no plant CA, ``Refused(409)`` saying so; a
malformed or tampered CSR, or an unaccepted key type, ``Refused(422)`` (hub.pki checks its signature).
Only then is the code used up, in the same transaction that records the new certificate: a conditional
UPDATE (hub.store.enrollment_codes.claim_code), so of two racing requests with one code exactly one
gets a certificate. Enrolling again (a re-imaged gateway, with a fresh code) revokes the device's
earlier certificates: their keys are gone or no longer trusted.

``renew(desk, caller, csr)``: for a device authenticated by its current certificate: the same checks of
the CSR, a new certificate, and the old ones stay valid until their own expiry.

Both answer ``Enrolled`` (edge.contracts.wire.ENROLLMENT_FIELDS). The code, the CSR and every key stay
out of logs and error messages. Leaves out HTTP (hub.routes.enrollment) and issuing codes (hub.registry).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Engine

from hub import tokens
from hub.clock import Clock
from hub.pki import PkiError, fingerprint, load_ca, sign_device_request
from hub.store.certificates import IssuedCertificate, insert_certificate, revoke_certificates
from hub.store.devices import device_channel
from hub.store.enrollment_codes import claim_code, find_code
from hub.store.release_files import trusted_root

__all__ = ["UNKNOWN_CODE", "Desk", "Enrolled", "Refused", "enroll", "renew"]

UNKNOWN_CODE = "enrollment code unknown, used or expired"
NO_REPOSITORY = ("the hub has no release repository yet, so it cannot give the device its root of trust: "
                 "publish a release first (`edgeloop release init`), then enroll again with the same code")
NO_CA = "the hub has no plant CA yet: its operator runs `edgeloop hub ca init`, then enroll again with the same code"


class Refused(Exception):
    """An enrollment or renewal the hub will not do: the HTTP status and a one-line detail for the device."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Desk:
    """What issuing a certificate needs of the hub."""

    engine: Engine
    write_lock: threading.Lock
    clock: Clock
    ca_dir: Path
    releases: Path  # the release repository (its metadata/root.json goes to the device)
    valid_for: timedelta  # hub.tls.device_cert_days


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    channel: str
    certificate: str  # PEM
    ca: str  # PEM: the plant CA, which issued it
    trusted_root: str  # the release repository's root.json
    not_after: datetime


def _issue(desk: Desk, device_id: str, csr: str) -> tuple[IssuedCertificate, str, str, str]:
    root = trusted_root(desk.releases)
    if root is None:
        raise Refused(409, NO_REPOSITORY)
    try:
        ca = load_ca(desk.ca_dir)
    except PkiError:
        raise Refused(409, NO_CA) from None
    try:
        certificate = sign_device_request(ca, csr, device_id, desk.valid_for)
    except PkiError as exc:
        raise Refused(422, str(exc)) from None
    issued = IssuedCertificate(device_id, fingerprint(certificate), format(certificate.serial_number, "x"),
                               certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return issued, pem, ca.pem.decode("ascii"), root


def _code(desk: Desk, code: str, now: datetime) -> tuple[str, str]:
    """(code id, device id) of a usable code; Refused(401) otherwise."""
    parsed = tokens.parse_code(code) if isinstance(code, str) else None
    stored = find_code(desk.engine, parsed[0]) if parsed else None
    if parsed is None or stored is None or stored.used or stored.expires_at <= now:
        raise Refused(401, UNKNOWN_CODE)
    if not tokens.matches(parsed[1], stored.salt, stored.digest):
        raise Refused(401, UNKNOWN_CODE)
    return stored.code_id, stored.device_id


def enroll(desk: Desk, code: str, csr: str) -> Enrolled:
    """A certificate for the device ``code`` was issued to, over the key in ``csr``; the code is used up."""
    now = desk.clock.now()
    code_id, device_id = _code(desk, code, now)
    channel = device_channel(desk.engine, device_id)
    if channel is None:  # revoked since the code was made
        raise Refused(401, UNKNOWN_CODE)
    issued, pem, ca, root = _issue(desk, device_id, csr)
    with desk.write_lock, desk.engine.begin() as connection:
        if not claim_code(connection, code_id, now):  # used by a racing request, or expired meanwhile
            raise Refused(401, UNKNOWN_CODE)
        revoke_certificates(connection, device_id, now)
        insert_certificate(connection, issued, now)
    return Enrolled(device_id, channel, pem, ca, root, issued.not_after)


def renew(desk: Desk, device_id: str, channel: str, csr: str) -> Enrolled:
    """A new certificate for ``device_id`` (authenticated by its current one); earlier ones stay valid."""
    issued, pem, ca, root = _issue(desk, device_id, csr)
    with desk.write_lock, desk.engine.begin() as connection:
        insert_certificate(connection, issued, desk.clock.now())
    return Enrolled(device_id, channel, pem, ca, root, issued.not_after)
