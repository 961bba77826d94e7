"""Where the pipeline's files live: a local folder (the default) or a prefix in S3-compatible object storage.

``location(value, root, endpoint_url)`` turns a params.yaml value into a path object. A plain path is a
``pathlib.Path`` resolved against the project root, exactly as before (nothing else is imported). An
``s3://bucket/prefix`` URL is a ``upath.UPath`` over s3fs: the same pathlib calls (``iterdir``,
``is_dir``, ``glob``, ``stat``, ``read_bytes``, ``open``) work on it. Credentials come from the usual AWS
chain (environment, ``~/.aws``, instance role), never from params.yaml; the endpoint of a MinIO or Ceph
server from ``storage.endpoint_url``, else from ``AWS_ENDPOINT_URL`` (botocore reads it). The S3
client is made once per process and endpoint (making one costs tenths of a second); each call forgets
the listings cached under its prefix, so a run lists the store afresh and never sees an older run's view.

Writing: ``write_bytes`` replaces a whole file at once. On a folder it is ``edge.atomic`` (temp file,
fsync, rename); in a bucket it is one PUT, which S3 makes visible complete or not at all.

Leaves out: other protocols (gs://, az://: s3fs is the only one installed and tested), deleting, and
the release repository (``flows.releases.mirror`` pushes that in its own order).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.atomic import write_bytes_atomic
from edge.contracts.errors import UserError

if TYPE_CHECKING:
    from upath import UPath

    StoragePath = Path | UPath
else:
    StoragePath = Any

__all__ = ["StoragePath", "check_reachable", "is_url", "location", "read_bytes", "s3_options", "write_bytes"]

SCHEME = "s3://"


def is_url(value: str) -> bool:
    """True for an object-store URL (``scheme://...``), False for a local path."""
    return "://" in value


def s3_options(endpoint_url: str | None = None) -> dict[str, Any]:
    """s3fs options: a custom endpoint when given."""
    return {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}


def _forget_listings(path: UPath) -> None:
    """Drop the filesystem's cached listings of ``path`` and everything below it."""
    root = path.path.rstrip("/")
    cache = path.fs.dircache
    for key in [k for k in list(cache) if k == root or k.startswith(root + "/")]:
        cache.pop(key, None)


def location(value: str, root: Path, endpoint_url: str | None = None) -> StoragePath:
    """``value`` as a path: ``s3://bucket/prefix`` -> UPath; anything else -> Path relative to ``root``."""
    if not is_url(value):
        path = Path(value)
        return path if path.is_absolute() else root / path
    if not value.startswith(SCHEME) or len(value) <= len(SCHEME) or value[len(SCHEME)] == "/":
        raise UserError(f"{value!r}: object storage locations are s3://bucket/prefix URLs")
    from upath import UPath

    path = UPath(value.rstrip("/"), **s3_options(endpoint_url))
    _forget_listings(path)
    return path


def check_reachable(path: StoragePath) -> StoragePath:
    """``path`` itself, once its bucket is known to exist and answer; a UserError naming the problem
    (missing bucket, no credentials, wrong endpoint) instead of an empty listing or a traceback.
    A local path is returned as it is (a missing folder is simply empty)."""
    if isinstance(path, Path):
        return path
    from botocore.exceptions import BotoCoreError

    bucket = path.path.split("/")[0]
    try:
        found = path.fs.exists(bucket)
    except (OSError, BotoCoreError) as exc:
        raise UserError(
            f"{path}: cannot reach the bucket ({type(exc).__name__}: {str(exc).strip()[:200]}); check the AWS"
            " credentials and storage.endpoint_url"
        ) from None
    if not found:
        raise UserError(f"{path}: bucket {bucket!r} not found or not visible (check the bucket name, the AWS"
                        " credentials and storage.endpoint_url)")
    return path


def is_local(path: StoragePath) -> bool:
    return isinstance(path, Path)


def write_bytes(path: StoragePath, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` as a whole: atomic rename on a folder, one PUT in a bucket."""
    if isinstance(path, Path):
        write_bytes_atomic(path, data, mode)
    else:
        path.write_bytes(data)


def read_bytes(path: StoragePath) -> bytes:
    return path.read_bytes()
