"""SQL of the ``uploads`` table: find a device's batch, record one (once, whoever races).

A row says a batch was accepted: device, batch id (its sha256), storage location, bytes, rows and when
(``stored_at``, from the hub's clock). UNIQUE (device_id, batch_id) makes recording idempotent: of two
racing identical inserts one wins and the other gets the winner's row back. Inserts are Core (a third of
the ORM's cost) under the app's write lock (SQLite takes one writer at a time, and its busy handler
sleeps in growing steps). Leaves out the batch files (hub.store.batches) and checking them (hub.checks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub.clock import as_utc
from hub.db import Upload

__all__ = ["UploadRecord", "find_upload", "record_upload"]


@dataclass(frozen=True)
class UploadRecord:
    device_id: str
    batch_id: str
    location: str  # the storage's logical key of the file
    bytes: int
    rows: int
    stored_at: datetime  # UTC, aware


def find_upload(engine: Engine, device_id: str, batch_id: str) -> UploadRecord | None:
    """The recorded upload of ``batch_id`` by ``device_id``, if any."""
    columns = (Upload.device_id, Upload.batch_id, Upload.path, Upload.bytes, Upload.rows, Upload.stored_at)
    query = select(*columns).where(Upload.device_id == device_id, Upload.batch_id == batch_id)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return UploadRecord(row.device_id, row.batch_id, row.path, int(row.bytes), int(row.rows), as_utc(row.stored_at))


def record_upload(engine: Engine, write_lock: threading.Lock, upload: UploadRecord) -> tuple[UploadRecord, bool]:
    """Insert ``upload``; (it, True), or (the row recorded first, False) when this batch is already there."""
    try:
        with write_lock, engine.begin() as connection:
            connection.execute(insert(Upload).values(
                device_id=upload.device_id, batch_id=upload.batch_id, path=upload.location, bytes=upload.bytes,
                rows=upload.rows, stored_at=upload.stored_at,
            ))
    except IntegrityError:  # a racing identical request recorded it first
        winner = find_upload(engine, upload.device_id, upload.batch_id)
        if winner is None:
            raise
        return winner, False
    return upload, True
