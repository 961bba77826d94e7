"""Batch files in the landing zone: a tiny storage interface and its local-filesystem implementation.

Batches are content-addressed: ``<landing>/<device_id>/<batch_id>.<parquet|csv>``
(``edge.contracts.record.landing_path``, which refuses any name that could escape the landing zone).
Writing is idempotent: the same batch written twice, or by two racing requests, ends as one complete
file with the same bytes. ``LocalStorage`` lands it with ``edge.contracts.record.land_batch`` (temp +
fsync + rename), so the ingest stage never sees a half-written batch. Another store (an object store,
where a PUT of a whole object is atomic too) fits the ``BatchStorage`` protocol; ``create_app`` uses
``LocalStorage`` on the project's landing zone. Leaves out deleting and listing (ingest reads the
landing zone itself) and the upload rows (hub.store.uploads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edge.contracts.record import land_batch, landing_path

__all__ = ["BatchStorage", "LocalStorage"]


class BatchStorage(Protocol):
    """The landing zone as the hub sees it: ask whether a batch is there, put one there."""

    def exists(self, device_id: str, batch_id: str, extension: str) -> bool:
        """True when the complete batch is stored."""
        ...

    def put(self, device_id: str, batch_id: str, body: bytes, extension: str) -> str:
        """Store ``body`` (whose sha256 is ``batch_id``) atomically and idempotently; return its location."""
        ...


class LocalStorage:
    """Batches as files under one folder (the project's landing zone).

    ``location`` strings are logical keys (``<folder name>/<device_id>/<batch_id>.<ext>``), not server
    paths, so responses do not reveal the hub's file system layout.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, device_id: str, batch_id: str, extension: str) -> Path:
        return landing_path(self.root, device_id, batch_id, extension)  # ValueError on unsafe names

    def location(self, device_id: str, batch_id: str, extension: str) -> str:
        return f"{self.root.name}/{device_id}/{batch_id}.{extension}"

    def exists(self, device_id: str, batch_id: str, extension: str) -> bool:
        return self.path(device_id, batch_id, extension).is_file()

    def put(self, device_id: str, batch_id: str, body: bytes, extension: str) -> str:
        landed = land_batch(self.root, device_id, body, extension)  # at the body's own sha256
        return self.location(device_id, landed.stem, extension)
