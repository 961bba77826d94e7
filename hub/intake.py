"""What the hub does with a device's batch or summary once HTTP has read it: verify, check, store, once.

``Intake.batch`` (blocking: run it in a worker thread) takes a decoded batch body: the key must be its
sha256 (hub.checks.digest); a batch already stored is answered from its row without parsing it again
(and its file healed if lost: the file exists before its row does); otherwise its structure is checked
against the data schema (hub.checks.batches), the file lands (content-addressed, atomic:
hub.store.batches) and then its row is recorded (hub.store.uploads, UNIQUE per device and batch). Racing
identical requests are safe: identical bytes whoever writes the file, and the row insert that loses
answers with the winner's row. ``Intake.summary`` does the same for summary documents (hub.store.
summaries): a summary already stored is answered as it is. Either returns (result, created): created
is False for a retry, which gets the first success's body with ``deduplicated: true``.
Every timestamp comes from the hub's clock. Raises ``hub.checks.refusal.Refused``; leaves out HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from edge.contracts.schema import DataSchema
from hub.checks.batches import batch_rows
from hub.checks.digest import check_digest
from hub.checks.summaries import check_summary
from hub.clock import Clock
from hub.schemas.summaries import SummaryResult
from hub.schemas.uploads import UploadResult
from hub.store.batches import BatchStorage
from hub.store.summaries import StoredSummary, find_summary, put_summary
from hub.store.uploads import UploadRecord, find_upload, record_upload

__all__ = ["Intake"]


def _upload_result(record: UploadRecord, location: str, deduplicated: bool) -> UploadResult:
    return UploadResult(device_id=record.device_id, batch_id=record.batch_id, bytes=record.bytes, rows=record.rows,
                        stored_at=record.stored_at.isoformat(), location=location, deduplicated=deduplicated)


def _summary_result(stored: StoredSummary, deduplicated: bool) -> SummaryResult:
    return SummaryResult(device_id=stored.device_id, summary_id=stored.summary_id, bytes=stored.bytes,
                         stored_at=stored.stored_at.isoformat(), location=stored.location, deduplicated=deduplicated)


@dataclass(frozen=True)
class Intake:
    engine: Engine
    write_lock: threading.Lock  # one writer at a time in this process (SQLite)
    storage: BatchStorage
    schema: DataSchema
    summaries: Path  # the summaries folder
    clock: Clock

    def batch(self, device_id: str, key: str, body: bytes, extension: str) -> tuple[UploadResult, bool]:
        """Store one batch (``extension``: csv or parquet) of ``device_id``; (result, created)."""
        check_digest(body, key, "Parquet or CSV batch")
        # The file exists before its row does, so no file means no row: the common path skips the query.
        known = find_upload(self.engine, device_id, key) if self.storage.exists(device_id, key, extension) else None
        if known is not None:  # a retry: same bytes (same hash), already checked; heal a lost file
            return _upload_result(known, self.storage.put(device_id, key, body, extension), True), False
        rows = batch_rows(body, extension, self.schema)
        location = self.storage.put(device_id, key, body, extension)  # file first: content-addressed, atomic
        upload = UploadRecord(device_id, key, location, len(body), rows, self.clock.now())
        recorded, created = record_upload(self.engine, self.write_lock, upload)
        return _upload_result(recorded, location, not created), created

    def summary(self, device_id: str, key: str, body: bytes) -> tuple[SummaryResult, bool]:
        """Store one summary document of ``device_id``; (result, created)."""
        known = find_summary(self.summaries, device_id, key)
        if known is not None:
            return _summary_result(known, True), False
        check_digest(body, key, "JSON object")
        check_summary(body)
        stored, created = put_summary(self.summaries, device_id, key, body, self.clock.now())
        return _summary_result(stored, not created), created
