"""SQL of the ``heartbeats`` table: store a device's latest heartbeat, replacing the one before.

One row per device. Portable SQLAlchemy, no dialect-specific upsert: read, then insert or update,
retried once if two first heartbeats of a new device race. ``received_at`` is passed in (the hub's
clock). Leaves out validating the state (hub.schemas.heartbeats) and reading it back (hub.store.fleet).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.db import Heartbeat

__all__ = ["record_heartbeat"]


def _upsert(session: Session, device_id: str, state: dict[str, Any], received_at: datetime) -> None:
    row = session.get(Heartbeat, device_id)
    if row is None:
        session.add(Heartbeat(device_id=device_id, received_at=received_at, state=state))
    else:
        row.received_at, row.state = received_at, state
    session.commit()


def record_heartbeat(sessions: sessionmaker[Session], write_lock: threading.Lock, device_id: str,
                     state: dict[str, Any], received_at: datetime) -> None:
    """Store ``state`` as ``device_id``'s latest heartbeat, received at ``received_at``."""
    for attempt in range(2):
        with write_lock, sessions() as session:
            try:
                _upsert(session, device_id, state, received_at)
                return
            except IntegrityError:  # a concurrent first heartbeat inserted the row: update it instead
                session.rollback()
                if attempt:
                    raise
