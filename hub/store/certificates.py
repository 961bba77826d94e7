"""SQL of the ``device_certificates`` table: record a certificate the hub issued, find one by fingerprint (on
every request authenticated by certificate, so in Core), revoke a device's certificates, and their expiry.

A row names an issued certificate by its SHA-256 fingerprint, with serial, validity and when it was issued
and revoked; the certificate itself is not kept (the device holds it, the fingerprint identifies it).
``CertificateLookup`` is what the hub asks per request: on SQLite it remembers answers for as long as
the database is unchanged, asking SQLite's ``PRAGMA data_version`` first on every request (a few
microseconds: it changes whenever any other connection, in this process or another, such as
``edgeloop devices revoke``, commits), so a revocation still counts on the next request; on PostgreSQL
it runs the query every time, so a revocation committed through any hub process or host counts on the
very next request to every other. (A cache there would need its own per-request check against the
server, a "registry version" row read before each lookup; measured on the same socket, that read costs
about as much as the indexed lookup it would save, 70-120% in two runs: docs/benchmarks.md.) Leaves out
signing (hub.pki), the rules of enrollment and renewal (hub.enrollment) and HTTP (hub.auth).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import as_utc
from hub.db import Device, DeviceCertificate, single_statements

__all__ = ["CertificateCredentials", "CertificateLookup", "IssuedCertificate", "certificate_credentials",
           "insert_certificate", "latest_expiry", "revoke_certificates"]


@dataclass(frozen=True)
class IssuedCertificate:
    device_id: str
    fingerprint: str
    serial: str  # hex
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class CertificateCredentials:
    """What authenticating a certificate needs: its row and its device's."""

    device_id: str
    channel: str
    not_after: datetime  # UTC, aware
    revoked: bool  # the certificate or its device


def insert_certificate(connection: Connection, issued: IssuedCertificate, issued_at: datetime) -> None:
    """Record ``issued`` (inside the caller's transaction)."""
    connection.execute(insert(DeviceCertificate).values(
        device_id=issued.device_id, fingerprint=issued.fingerprint, serial=issued.serial,
        not_before=issued.not_before, not_after=issued.not_after, issued_at=issued_at,
    ))


def revoke_certificates(connection: Connection | Session, device_id: str, now: datetime) -> int:
    """Mark every unrevoked certificate of ``device_id`` revoked at ``now``; how many were."""
    result = connection.execute(
        update(DeviceCertificate)
        .where(DeviceCertificate.device_id == device_id, DeviceCertificate.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # a CursorResult


# built once: constructing a statement costs more than running it (a SQLite lookup by index: ~35 us)
_BY_FINGERPRINT = (
    select(DeviceCertificate.device_id, Device.channel, DeviceCertificate.not_after,
           DeviceCertificate.revoked_at, Device.revoked_at.label("device_revoked_at"))
    .join(Device, Device.device_id == DeviceCertificate.device_id)
    .where(DeviceCertificate.fingerprint == bindparam("fingerprint"))
)


def certificate_credentials(engine: Engine, fingerprint: str) -> CertificateCredentials | None:
    """The issued certificate with ``fingerprint`` and its device, if the hub issued one."""
    with single_statements(engine).connect() as connection:
        row = connection.execute(_BY_FINGERPRINT, {"fingerprint": fingerprint}).first()
    if row is None:
        return None
    return CertificateCredentials(row.device_id, row.channel, as_utc(row.not_after),
                                  row.revoked_at is not None or row.device_revoked_at is not None)


class CertificateLookup:
    """``certificate_credentials`` as the hub asks it on every request (see the module docstring)."""

    MAX_ENTRIES = 65_536

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._probe: Any = engine.raw_connection() if engine.dialect.name == "sqlite" else None
        self._version: int | None = None
        self._answers: dict[str, CertificateCredentials | None] = {}

    @property
    def cheap(self) -> bool:
        """True when a lookup is a memory read after one local PRAGMA (fine on the event loop)."""
        return self._probe is not None

    def __call__(self, fingerprint: str) -> CertificateCredentials | None:
        if self._probe is None:
            return certificate_credentials(self.engine, fingerprint)
        with self._lock:
            cursor = self._probe.cursor()
            try:
                version = cursor.execute("PRAGMA data_version").fetchone()[0]
            finally:
                cursor.close()
            if version != self._version:  # something was committed since: forget every answer
                self._answers.clear()
                self._version = version
            elif fingerprint in self._answers:
                return self._answers[fingerprint]
        answer = certificate_credentials(self.engine, fingerprint)
        with self._lock:
            if self._version == version and len(self._answers) < self.MAX_ENTRIES:
                self._answers[fingerprint] = answer
        return answer

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None


def latest_expiry(session: Session | sessionmaker[Session]) -> dict[str, datetime]:
    """Per device, the latest ``not_after`` of its unrevoked certificates (devices without one are absent)."""
    query = (
        select(DeviceCertificate.device_id, func.max(DeviceCertificate.not_after))
        .where(DeviceCertificate.revoked_at.is_(None))
        .group_by(DeviceCertificate.device_id)
    )
    if isinstance(session, sessionmaker):
        with session() as opened:
            rows = opened.execute(query).all()
    else:
        rows = session.execute(query).all()
    return {device_id: as_utc(not_after) for device_id, not_after in rows}
