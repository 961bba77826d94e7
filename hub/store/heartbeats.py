"""SQL of the ``heartbeats`` table: store a device's latest heartbeat, replacing the one before.

One row per device, written by one statement: ``INSERT ... ON CONFLICT (device_id) DO UPDATE`` (the
dialect's own insert: SQLite and PostgreSQL both have it), so racing heartbeats of one device, in one
process or several, never fail and never leave two rows. The update only applies when the new heartbeat
is not older than the stored one (``received_at``, from the hub's clock), so a late request cannot
replace a newer state. Core, in autocommit on PostgreSQL (hub.db.single_statements). Leaves out
validating the state (hub.schemas.heartbeats) and reading it back (hub.store.fleet).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.db import Heartbeat, single_statements
from hub.store.dialect import insert_for

__all__ = ["record_heartbeat"]


def record_heartbeat(sessions: sessionmaker[Session], write_lock: AbstractContextManager[Any], device_id: str,
                     state: dict[str, Any], received_at: datetime) -> None:
    """Store ``state`` as ``device_id``'s latest heartbeat, received at ``received_at``."""
    engine: Engine = sessions.kw["bind"]
    values = {"device_id": device_id, "received_at": received_at, "state": state}
    with write_lock, single_statements(engine).begin() as connection:  # one statement: its own transaction
        connection.execute(_upsert(engine.dialect.name), values)


@cache
def _upsert(dialect_name: str) -> Any:
    """The upsert, built once per dialect (building a statement costs more than running it), on the Table
    (Core: an ORM entity would take SQLAlchemy's ORM bulk path)."""
    table = Heartbeat.__table__
    statement = insert_for(dialect_name)(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.device_id],
        set_={"received_at": statement.excluded.received_at, "state": statement.excluded.state},
        where=table.c.received_at <= statement.excluded.received_at,
    )
