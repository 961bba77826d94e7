"""SQL of the ``uploads`` table: find a device's batch, record one (once, whoever races).

A row says a batch was accepted: device, batch id (its sha256), storage location, bytes, rows and when
(``stored_at``, from the hub's clock). UNIQUE (device_id, batch_id) makes recording idempotent: the
insert is ``INSERT ... ON CONFLICT DO NOTHING``, so of racing identical inserts (threads of one hub, or
hub processes on several hosts sharing one PostgreSQL) exactly one adds the row and the others, seeing
no row added, read the winner's row back (on PostgreSQL the loser's insert waits for the winner's
transaction, so the row is there to read; no error is raised or logged by the server). Core, not the
ORM (a third of the cost), one statement in autocommit on PostgreSQL (hub.db.single_statements), under
the app's write lock (hub.db.write_lock: SQLite only). Leaves out the
batch files (hub.store.batches) and checking them (hub.checks).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from hub.clock import as_utc
from hub.db import Upload, single_statements
from hub.store.dialect import insert_for

__all__ = ["UploadRecord", "find_upload", "record_upload"]


@dataclass(frozen=True)
class UploadRecord:
    device_id: str
    batch_id: str
    location: str  # the storage's logical key of the file
    bytes: int
    rows: int
    stored_at: datetime  # UTC, aware


_BY_BATCH = select(Upload.device_id, Upload.batch_id, Upload.path, Upload.bytes, Upload.rows, Upload.stored_at).where(
    Upload.device_id == bindparam("device_id"), Upload.batch_id == bindparam("batch_id"))


def find_upload(engine: Engine, device_id: str, batch_id: str) -> UploadRecord | None:
    """The recorded upload of ``batch_id`` by ``device_id``, if any."""
    with single_statements(engine).connect() as connection:
        row = connection.execute(_BY_BATCH, {"device_id": device_id, "batch_id": batch_id}).first()
    if row is None:
        return None
    return UploadRecord(row.device_id, row.batch_id, row.path, int(row.bytes), int(row.rows), as_utc(row.stored_at))


@cache
def _insert_once(dialect_name: str) -> Any:
    """The insert, built once per dialect, on the Table (Core, not the ORM's bulk path)."""
    table = Upload.__table__
    return (insert_for(dialect_name)(table)
            .on_conflict_do_nothing(index_elements=[table.c.device_id, table.c.batch_id])
            .returning(table.c.id))


def record_upload(engine: Engine, write_lock: AbstractContextManager[Any],
                  upload: UploadRecord) -> tuple[UploadRecord, bool]:
    """Insert ``upload``; (it, True), or (the row recorded first, False) when this batch is already there."""
    values = {"device_id": upload.device_id, "batch_id": upload.batch_id, "path": upload.location,
              "bytes": upload.bytes, "rows": upload.rows, "stored_at": upload.stored_at}
    with write_lock, single_statements(engine).begin() as connection:  # one statement: its own transaction
        added = connection.execute(_insert_once(engine.dialect.name), values).first() is not None  # none: there
    if added:
        return upload, True
    winner = find_upload(engine, upload.device_id, upload.batch_id)  # committed: the insert waited for it
    if winner is None:
        raise RuntimeError(f"upload {upload.batch_id} of {upload.device_id} neither inserted nor found")
    return winner, False
