"""Batch files in an S3-compatible bucket: the ``BatchStorage`` protocol over fsspec/s3fs.

``ObjectLanding`` is where uploads land when ``params.yaml → storage.uploads`` is an
``s3://bucket/prefix`` URL (with ``storage.endpoint_url`` for MinIO or Ceph; credentials from the AWS
chain). ``ObjectStorage`` keeps the landing zone's layout, ``<prefix>/<device_id>/<batch_id>.<ext>``
(names checked by ``edge.contracts.record.landing_path``), so the ingest stage reads the bucket as it
reads the folder. A batch is written with one PUT of the whole body: S3 shows an object complete or
not at all, and the key is the body's sha256, so a retry or two racing hubs write the same bytes.
``exists`` asks the bucket every time (no listing cache), so several hub processes and hosts agree.
The bucket is checked when the storage is made: a missing bucket, missing credentials or a wrong
endpoint stop the hub at start with one line instead of failing every upload.
``landing_storage`` picks the local folder (the default) or the bucket.

Leaves out: deleting and listing (ingest's job), summaries (still files: hub.store.summaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.record import landing_path
from hub.store.batches import BatchStorage, LocalStorage

__all__ = ["ObjectLanding", "ObjectStorage", "landing_storage"]

SCHEME = "s3://"


@dataclass(frozen=True)
class ObjectLanding:
    url: str  # s3://bucket/prefix
    endpoint_url: str | None = None

    @classmethod
    def from_section(cls, storage: object) -> ObjectLanding | None:
        """The bucket from params.yaml's ``storage:`` section; None for the local landing zone (data/uploads)."""
        if storage is None:
            return None
        if not isinstance(storage, dict):
            raise UserError("storage: expected a mapping")
        url, endpoint = storage.get("uploads"), storage.get("endpoint_url")
        if url is None:
            return None
        if not isinstance(url, str) or not url.startswith(SCHEME) or not url[len(SCHEME):].strip("/"):
            raise UserError(f"storage.uploads: expected s3://bucket/prefix (or null for data/uploads), got {url!r}")
        if endpoint is not None and not isinstance(endpoint, str):
            raise UserError("storage.endpoint_url: expected an http(s) URL or null")
        return cls(url.rstrip("/"), endpoint or None)


class ObjectStorage:
    """Batches as objects under one bucket prefix. ``location`` is the logical key ``<prefix name>/<device>/<file>``."""

    def __init__(self, landing: ObjectLanding) -> None:
        import fsspec

        options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
        if landing.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": landing.endpoint_url}
        self.fs, root = fsspec.url_to_fs(landing.url, **options)
        self.root = PurePosixPath(root)
        self._check_bucket(landing.url)

    def _check_bucket(self, url: str) -> None:
        from botocore.exceptions import BotoCoreError

        bucket = self.root.parts[0]
        try:
            found = self.fs.exists(bucket)
        except (OSError, BotoCoreError) as exc:
            raise UserError(f"storage.uploads {url}: cannot reach the bucket ({type(exc).__name__}: {exc})") from None
        if not found:
            raise UserError(f"storage.uploads {url}: bucket {bucket!r} not found or not visible (check the bucket"
                            " name, the AWS credentials and storage.endpoint_url)")

    def key(self, device_id: str, batch_id: str, extension: str) -> str:
        return str(landing_path(Path(self.root), device_id, batch_id, extension))  # ValueError on unsafe names

    def location(self, device_id: str, batch_id: str, extension: str) -> str:
        return f"{self.root.name}/{device_id}/{batch_id}.{extension}"

    def exists(self, device_id: str, batch_id: str, extension: str) -> bool:
        return bool(self.fs.exists(self.key(device_id, batch_id, extension)))

    def put(self, device_id: str, batch_id: str, body: bytes, extension: str) -> str:
        self.fs.pipe_file(self.key(device_id, batch_id, extension), body)  # one PUT: complete or absent
        return self.location(device_id, batch_id, extension)


def landing_storage(folder: Path, landing: ObjectLanding | None) -> BatchStorage:
    """The bucket when one is configured, else the local landing zone ``folder``."""
    return LocalStorage(folder) if landing is None else ObjectStorage(landing)
