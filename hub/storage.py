"""Where uploaded batches land: a tiny storage interface and its local-filesystem implementation.

Batches are content-addressed: ``<landing>/<device_id>/<batch_id>.<parquet|csv>``
(``edge.contracts.record.landing_path``, which refuses any name that could escape the landing zone).
Writing is idempotent: the same batch written twice, or by two racing requests, ends as one complete
file with the same bytes. The local implementation lands it with ``edge.contracts.record.land_batch``
(temp + fsync + rename), so the ingest stage never sees a half-written batch. An object store (S3,
GCS, ...) can implement the same ``BatchStorage`` protocol later: a PUT of a whole object is atomic
there too. Leaves out deleting and listing (ingest reads the landing zone itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edge.contracts.record import land_batch, landing_path

EXTENSION = "parquet"  # the default; edge runners send CSV (extension "csv")


class BatchStorage(Protocol):
    """The landing zone as the hub sees it: ask whether a batch is there, put one there."""

    def exists(self, device_id: str, batch_id: str, extension: str = EXTENSION) -> bool:
        """True when the complete batch is stored."""
        ...

    def put(self, device_id: str, batch_id: str, body: bytes, extension: str = EXTENSION) -> str:
        """Store ``body`` (whose sha256 is ``batch_id``) atomically and idempotently; return its location."""
        ...


class LocalStorage:
    """Batches as files under one folder (default: the project's data/uploads).

    ``location`` strings are logical keys (``uploads/<device_id>/<batch_id>.<ext>``), not server paths,
    so responses do not reveal the hub's file system layout.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, device_id: str, batch_id: str, extension: str = EXTENSION) -> Path:
        return landing_path(self.root, device_id, batch_id, extension)  # ValueError on unsafe names

    def location(self, device_id: str, batch_id: str, extension: str = EXTENSION) -> str:
        return f"{self.root.name}/{device_id}/{batch_id}.{extension}"

    def exists(self, device_id: str, batch_id: str, extension: str = EXTENSION) -> bool:
        return self.path(device_id, batch_id, extension).is_file()

    def put(self, device_id: str, batch_id: str, body: bytes, extension: str = EXTENSION) -> str:
        landed = land_batch(self.root, device_id, body, extension)  # at the body's own sha256
        return self.location(device_id, landed.stem, extension)
