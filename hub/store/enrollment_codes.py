"""SQL of the ``enrollment_codes`` table: store a device's new one-time code, find one, and use one up.

A row holds the code's id, salt and salted hash (hub.tokens), its device, when it was made and when it
expires, and when it was used. ``put_code`` replaces the device's codes not used yet (one live code per
device, also when two are issued at once: the device's row is locked first). ``claim_code`` is the
single-use guarantee: one conditional UPDATE (``used_at IS NULL AND expires_at > now``), so of two
racing enrollments with the same code exactly one sees a row change (on PostgreSQL the second waits for
the first's row lock, then finds ``used_at`` set), in one hub process or several.
Leaves out checking the secret (hub.enrollment) and the certificates (hub.store.certificates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import as_utc
from hub.db import Device, EnrollmentCode, single_statements
from hub.tokens import IssuedToken

__all__ = ["StoredCode", "claim_code", "find_code", "put_code"]


@dataclass(frozen=True)
class StoredCode:
    code_id: str
    device_id: str
    salt: str
    digest: str
    expires_at: datetime  # UTC, aware
    used: bool


def put_code(sessions: sessionmaker[Session], device_id: str, issued: IssuedToken, now: datetime,
             expires_at: datetime) -> None:
    """Store ``issued`` as ``device_id``'s code, dropping the codes it had that were never used."""
    with sessions.begin() as session:
        session.get(Device, device_id, with_for_update=True)  # one issuer at a time per device
        session.execute(delete(EnrollmentCode).where(EnrollmentCode.device_id == device_id,
                                                     EnrollmentCode.used_at.is_(None)))
        session.add(EnrollmentCode(code_id=issued.token_id, device_id=device_id, salt=issued.salt,
                                   digest=issued.digest, created_at=now, expires_at=expires_at))


def find_code(engine: Engine, code_id: str) -> StoredCode | None:
    columns = (EnrollmentCode.code_id, EnrollmentCode.device_id, EnrollmentCode.salt, EnrollmentCode.digest,
               EnrollmentCode.expires_at, EnrollmentCode.used_at)
    with single_statements(engine).connect() as connection:
        row = connection.execute(select(*columns).where(EnrollmentCode.code_id == code_id)).first()
    if row is None:
        return None
    return StoredCode(row.code_id, row.device_id, row.salt, row.digest, as_utc(row.expires_at), row.used_at is not None)


def claim_code(connection: Connection, code_id: str, now: datetime) -> bool:
    """Use the code up, inside the caller's transaction; False when it was used or expired meanwhile."""
    result = connection.execute(
        update(EnrollmentCode)
        .where(EnrollmentCode.code_id == code_id, EnrollmentCode.used_at.is_(None), EnrollmentCode.expires_at > now)
        .values(used_at=now)
    )
    return int(result.rowcount or 0) == 1
