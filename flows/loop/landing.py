"""The loop's view of the landing zones: which batches landed when, how many labelled rows each holds, and
its edge rows (what the monitor's data-volume trigger and the IPW estimates read).

``landing_zones``: ``data/uploads`` as before, plus ``storage.uploads`` and every ``s3://`` entry of
``ingest.sources`` (deduplicated; through ``flows.storage``, so a missing bucket is one UserError). Other
local ingest sources (``data/simulated``) are not device uploads and stay out. ``landed_batches`` walks
them with ingest's own walk (``flows.ingest.discover``: the same layout rules, hidden names skipped),
each batch with its landing time: the file's mtime, or the object's LastModified from the listing (one
listing request per device folder, no request per object).

``labelled_rows`` and ``edge_rows`` read one batch: CSV whole (``flows.ingest.reader``), Parquet only
the columns the loop uses (device id, label, prediction, model version, upload reason, inclusion
probability): in a bucket that is the footer and those column chunks, as ranged GETs. A batch in a
bucket is read ONCE: what the loop needs of it (its labelled count and edge rows) is kept in
``data/loop/landed/<zone hash>/<device>/<file>.parquet``, with the object's size and LastModified in
the file's metadata, so a monitor tick lists the bucket and reads only objects it has not seen (a
rewritten object is read again). ``forget_gone`` drops the kept entries of objects no longer listed.
A local folder is read directly every time, as before. An unreadable batch counts 0 rows (ingest
quarantines it); a batch that could not be fetched (OSError) is tried again on the next pass.

Leaves out: estimating (``flows.loop.estimates``) and deciding (``flows.loop.triggers``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge.atomic import write_bytes_atomic
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON
from flows.ingest.discover import discover
from flows.storage import StoragePath, check_reachable, is_url, location

if TYPE_CHECKING:
    import pandas as pd

    from edge.contracts.layout import Paths
    from flows.params import Params

__all__ = ["CACHE_DIR", "Landed", "edge_rows", "forget_gone", "labelled_rows", "landed_batches", "landing_zones"]

CACHE_DIR = "loop/landed"  # under data/
_META_KEY = b"edgeloop.landed"
RANGE_BYTES = 1 << 18  # s3fs read-ahead of one ranged GET
EDGE_COLUMNS = (INCLUSION_PROBABILITY, PREDICTION, MODEL_VERSION, UPLOAD_REASON)  # an edge row carries them all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Landed:
    """One batch in a landing zone."""

    path: StoragePath
    zone: StoragePath
    device_id: str
    extension: str
    landed: datetime  # file mtime / object LastModified, UTC
    size: int


@dataclass(frozen=True)
class _Digest:
    labelled: int  # rows with a label
    edge: pd.DataFrame | None  # the labelled edge rows; None when the batch is no edge batch (or unreadable)
    keep: bool = True  # False: the batch could not be fetched, read it again next time


def landing_zones(params: Params, paths: Paths) -> list[StoragePath]:
    """``data/uploads``, then the bucket of ``storage.uploads`` and the ``s3://`` ingest sources, each once."""
    urls: list[str] = []
    for value in [params.storage.uploads, *params.ingest.sources]:
        if value is not None and is_url(value) and value.rstrip("/") not in urls:
            urls.append(value.rstrip("/"))
    endpoint = params.storage.endpoint_url
    return [paths.uploads, *(check_reachable(location(url, paths.root, endpoint)) for url in urls)]


def landed_batches(zones: list[StoragePath]) -> list[Landed]:
    """Every batch ingest would consider in ``zones``, with its landing time (no object is read). A batch
    in two zones (the hub names a batch by its content: copied into a bucket while moving there) is
    taken once, from the first zone."""
    out = []
    seen: set[tuple[str, str]] = set()
    for found in discover(zones):
        if found.problem is not None or (found.device_id, found.path.name) in seen:
            continue
        seen.add((found.device_id, found.path.name))
        try:
            stat = found.path.stat()
        except OSError:
            continue  # gone since the listing
        out.append(Landed(found.path, zones[found.source_index], found.device_id, found.extension,
                          datetime.fromtimestamp(stat.st_mtime, UTC), int(stat.st_size)))
    return out


def labelled_rows(batch: Landed, params: Params, paths: Paths) -> int:
    """Rows with a label in ``batch`` (0 when unreadable)."""
    return _digest(batch, params, paths, rows=False).labelled


def edge_rows(batch: Landed, params: Params, paths: Paths) -> pd.DataFrame | None:
    """The labelled rows of an edge batch (one that carries inclusion probabilities, predictions, model
    versions and upload reasons), model versions as text; None for any other or an unreadable batch."""
    return _digest(batch, params, paths, rows=True).edge


def forget_gone(paths: Paths, batches: list[Landed]) -> int:
    """Delete the kept entries of bucket objects not in ``batches`` (a full listing); how many."""
    root = paths.data / CACHE_DIR
    if not root.is_dir():
        return 0
    wanted = {_cache_file(paths, b) for b in batches if not isinstance(b.path, Path)}
    removed = 0
    for path in root.glob("*/*/*.parquet"):
        if path not in wanted:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _wanted(params: Params) -> list[str]:
    schema = params.schema
    return list(dict.fromkeys([schema.device_id, schema.label.name, *EDGE_COLUMNS]))


class _NotFetched(Exception):
    """The batch's bytes could not be had (network, permissions): read it again on the next pass."""


class _Watched:
    """A binary file that remembers whether reading it failed (so a fetch error is not taken for bad bytes)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def read(self, *args: Any) -> bytes:
        try:
            return self._handle.read(*args)
        except BaseException:
            self.failed = True
            raise


def _open(path: StoragePath) -> IO[bytes]:
    if isinstance(path, Path):
        return path.open("rb")
    return path.open("rb", block_size=RANGE_BYTES)  # read ahead a little, not s3fs's default 50 MiB


def _read(batch: Landed, params: Params) -> pd.DataFrame:
    """The loop's columns of ``batch``: _NotFetched when the bytes cannot be had; Unreadable, OSError,
    ValueError or TypeError (Arrow's errors among them) when they are bad."""
    schema = params.schema
    wanted = _wanted(params)
    if batch.extension == "parquet":
        import pyarrow.parquet as pq

        try:
            raw = _open(batch.path)
        except OSError as exc:
            raise _NotFetched(str(exc)) from None
        with raw:
            handle = _Watched(raw)
            try:  # s3fs: ranged GETs for the footer and the column chunks read
                parquet = pq.ParquetFile(handle)
                names = set(parquet.schema_arrow.names)
                table = parquet.read(columns=[c for c in wanted if c in names], use_threads=False)
            except Exception as exc:
                if handle.failed:
                    raise _NotFetched(str(exc)) from None
                raise
        return table.to_pandas()
    from flows.ingest.reader import read_batch

    try:
        body = batch.path.read_bytes()
    except OSError as exc:
        raise _NotFetched(str(exc)) from None
    text = [schema.device_id, MODEL_VERSION, schema.label.name, PREDICTION]
    frame = read_batch(body, batch.extension, text, schema.column_names)
    return frame[[c for c in wanted if c in frame.columns]]


def _read_digest(batch: Landed, params: Params) -> _Digest:
    import pyarrow as pa

    from flows.ingest.reader import Unreadable

    label = params.schema.label.name
    try:
        frame = _read(batch, params)
    except _NotFetched:
        return _Digest(0, None, keep=False)
    except (Unreadable, OSError, ValueError, TypeError, pa.ArrowException):
        return _Digest(0, None)  # bad bytes: ingest quarantines the batch
    if label not in frame.columns:
        return _Digest(0, None)
    labelled = frame[frame[label].notna()]
    if not set(EDGE_COLUMNS) <= set(frame.columns):
        return _Digest(len(labelled), None)
    edge = labelled.reset_index(drop=True)
    edge[MODEL_VERSION] = edge[MODEL_VERSION].astype(str)
    return _Digest(len(labelled), edge)


def _cache_file(paths: Paths, batch: Landed) -> Path:
    zone = hashlib.sha256(str(batch.zone).encode()).hexdigest()[:16]
    return paths.data / CACHE_DIR / zone / batch.device_id / f"{batch.path.name}.parquet"


def _stamp(batch: Landed) -> dict[str, object]:
    return {"size": batch.size, "landed": batch.landed.isoformat()}


def _digest(batch: Landed, params: Params, paths: Paths, rows: bool) -> _Digest:
    if isinstance(batch.path, Path):
        return _read_digest(batch, params)
    target = _cache_file(paths, batch)
    kept = _load(target, batch, rows)
    if kept is not None:
        return kept
    digest = _read_digest(batch, params)
    if digest.keep:
        _store(target, batch, digest)
    return digest


def _load(target: Path, batch: Landed, rows: bool) -> _Digest | None:
    """The kept digest of ``batch`` when it was made from the same object (size and time), else None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(target)
        meta = json.loads((parquet.schema_arrow.metadata or {})[_META_KEY])
        if meta["stamp"] != _stamp(batch):
            return None
        labelled, edge = int(meta["labelled"]), bool(meta["edge"])
        return _Digest(labelled, parquet.read(use_threads=False).to_pandas() if edge and rows else None)
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None


def _store(target: Path, batch: Landed, digest: _Digest) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {"stamp": _stamp(batch), "labelled": digest.labelled, "edge": digest.edge is not None}
    try:
        table = pa.Table.from_pandas(digest.edge if digest.edge is not None else pd.DataFrame(), preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        write_bytes_atomic(target, sink.getvalue())
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:  # mixed types Arrow cannot store: reread
        log.debug("not kept: %s: %s", batch.path, exc)
