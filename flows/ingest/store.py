"""The curated data: Parquet files under ``data/curated``, each the atomic commit of the batches it holds.

Two layouts, both read everywhere:

- ``chunks/<seq>-<digest>.parquet`` (written now): the accepted batches of one ingest chunk in one file.
  Its footer (Parquet key-value metadata ``edgeloop.batches``) is the ledger of those batches, in row
  order: ``[device_id, batch_id, rows, duplicates_dropped]`` each, so batch ``i``'s rows are the
  ``rows`` rows after those of batches ``0..i-1``. A batch whose rows were all dropped as repeats is
  listed with 0 rows. Writing the file (temp file, fsync, rename) commits every batch in its ledger at
  once: a batch is curated exactly when a ledger lists it. ``seq`` counts up from 1 (the order chunks
  were written); ``digest`` is the start of the sha256 of the ledger.
- ``parts/<device_id>/<batch_id>.parquet`` (written before bulk ingest): one batch per file, with
  its dropped-duplicate count in the footer (``edgeloop.duplicates_dropped``).

Also: the stored form of validated rows (``curated_frame``), the event ids already curated
(``curated_ids``), and the batches committed so far (``committed``). Does not validate, and does not
load the dataset for training (``flows.dataset`` does).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge.atomic import write_bytes_atomic
from edge.contracts.names import BATCH_ID_PATTERN, is_valid_device_id
from edge.contracts.schema import DataSchema
from flows.ingest.events import SeenEvents

log = logging.getLogger(__name__)

DUPLICATES_KEY = b"edgeloop.duplicates_dropped"
LEDGER_KEY = b"edgeloop.batches"
CHUNK_PATTERN = re.compile(r"^(\d{6,})-([0-9a-f]{16})\.parquet$")


@dataclass(frozen=True)
class Committed:
    """One curated batch: where it is and how many of its rows were kept and dropped as repeats."""

    device_id: str
    batch_id: str
    rows: int
    duplicates_dropped: int
    path: Path


def parts_root(curated: Path) -> Path:
    return curated / "parts"


def chunks_root(curated: Path) -> Path:
    return curated / "chunks"


def part_path(curated: Path, device_id: str, batch_id: str) -> Path:
    return parts_root(curated) / device_id / f"{batch_id}.parquet"


def iter_parts(curated: Path) -> Iterator[tuple[str, str, Path]]:
    """(device id, batch id, path) of every one-batch part (the layout before chunks), sorted."""
    root = parts_root(curated)
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_valid_device_id(p.name)):
        for path in sorted(folder.glob("*.parquet")):
            if BATCH_ID_PATTERN.match(path.stem):
                yield folder.name, path.stem, path


def iter_chunks(curated: Path) -> list[Path]:
    """Every committed chunk file, in the order written; temp files never match."""
    root = chunks_root(curated)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHUNK_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def part_files(curated: Path) -> list[Path]:
    """Every curated file, both layouts (one-batch parts first, then chunks in order)."""
    return [path for _, _, path in iter_parts(curated)] + iter_chunks(curated)


def chunk_ledger(path: Path) -> list[tuple[str, str, int, int]]:
    """The ledger in a chunk's footer: (device id, batch id, rows, duplicates dropped) per batch."""
    import pyarrow.parquet as pq

    raw = (pq.read_metadata(path).metadata or {}).get(LEDGER_KEY, b"[]")
    return [(str(d), str(b), int(r), int(x)) for d, b, r, x in json.loads(raw)]


def part_stats(path: Path) -> tuple[int, int]:
    """(rows, duplicates dropped) of a one-batch part, from its footer only."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    extra = (meta.metadata or {}).get(DUPLICATES_KEY, b"0")
    return meta.num_rows, int(extra)


def committed(curated: Path, with_stats: bool = True) -> Iterator[Committed]:
    """Every curated batch, both layouts (``with_stats=False`` skips reading one-batch parts' footers)."""
    for device_id, bid, path in iter_parts(curated):
        rows, dropped = part_stats(path) if with_stats else (0, 0)
        yield Committed(device_id, bid, rows, dropped, path)
    for path in iter_chunks(curated):
        for device_id, bid, rows, dropped in chunk_ledger(path):
            yield Committed(device_id, bid, rows, dropped, path)


def curated_frame(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The stored form of validated rows: features float64, int classes and event ids int64."""
    out = frame.copy()
    for name in schema.feature_names:
        out[name] = out[name].astype("float64")
    if not isinstance(schema.label.classes[0], str):
        out[schema.label.name] = out[schema.label.name].astype("int64")
    out[schema.event_id] = out[schema.event_id].astype("int64")
    return out


def _encode(frame: pd.DataFrame, metadata: dict[bytes, bytes]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def encode_part(frame: pd.DataFrame, duplicates_dropped: int) -> bytes:
    """Deterministic Parquet bytes of a one-batch part (the layout before chunks; kept for tools and tests)."""
    return _encode(frame, {DUPLICATES_KEY: str(int(duplicates_dropped)).encode()})


def write_part(path: Path, frame: pd.DataFrame, duplicates_dropped: int) -> None:
    write_bytes_atomic(path, encode_part(frame, duplicates_dropped))


Entry = tuple[str, str, int, int]  # device id, batch id, rows kept, duplicates dropped


def _next_seq(curated: Path) -> int:
    names = [CHUNK_PATTERN.match(p.name) for p in iter_chunks(curated)]
    return max((int(m.group(1)) for m in names if m), default=0) + 1


def _write_chunk(curated: Path, frame: pd.DataFrame, entries: Sequence[Entry]) -> Path:
    ledger = json.dumps([list(e) for e in entries], separators=(",", ":")).encode()
    body = _encode(frame, {LEDGER_KEY: ledger})
    digest = hashlib.sha256(ledger).hexdigest()[:16]
    path = chunks_root(curated) / f"{_next_seq(curated):06d}-{digest}.parquet"
    write_bytes_atomic(path, body)
    return path


def _kind(value: object) -> str:
    """What Arrow makes of a value: lists (python or numpy), text, numbers, flags, or the type's name."""
    if isinstance(value, list | tuple | np.ndarray):
        return "list"
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | float | np.number):
        return "number"
    return "str" if isinstance(value, str) else type(value).__name__


def _value_kinds(frame: pd.DataFrame, rows: np.ndarray) -> tuple[tuple[str, ...], ...]:
    """Per object column, the kinds of a batch's values: batches that agree can share a file."""
    kinds = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_object_dtype(column.dtype):
            values = column.iloc[rows]
            kinds.append(tuple(sorted({_kind(v) for v in values[values.notna()]})))
    return tuple(kinds)


def write_chunk(
    curated: Path, frame: pd.DataFrame, entries: Sequence[Entry], batch_of_row: np.ndarray
) -> tuple[list[Path], dict[int, str]]:
    """Commit ``entries`` (in row order; ``batch_of_row`` indexes them) with their rows ``frame``.

    Usually one file. When batches disagree on a column's type (probabilities as lists in one, as
    text in another), one file per set of batches that agree. Returns the files written and, for a
    batch whose rows cannot be stored at all, its entry index and the reason.
    """
    import pyarrow as pa

    try:
        return [_write_chunk(curated, frame, entries)], {}
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.info("curated rows of this chunk disagree on a column type (%s); storing them by type", exc)
    groups: dict[tuple[tuple[str, ...], ...], list[int]] = {}
    for index in range(len(entries)):
        groups.setdefault(_value_kinds(frame, np.flatnonzero(batch_of_row == index)), []).append(index)
    written: list[Path] = []
    failed: dict[int, str] = {}
    for indexes in groups.values():
        rows = np.isin(batch_of_row, indexes)
        try:
            written.append(_write_chunk(curated, frame.iloc[np.flatnonzero(rows)], [entries[i] for i in indexes]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            reason = f"could not be stored ({type(exc).__name__}: {str(exc).strip()[:200]})"
            failed.update({i: reason for i in indexes})
    return written, failed


def curated_ids(curated: Path, schema: DataSchema) -> SeenEvents:
    """Event ids already curated, per device. Ids of a non-integer column (curated before ids were
    checked) are left out: they can never equal a checked id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen = SeenEvents()
    for device_id, _, path in iter_parts(curated):
        column = pq.read_table(path, columns=[schema.event_id]).column(0)
        if pa.types.is_integer(column.type):
            seen.add(device_id, column.to_numpy())
    for path in iter_chunks(curated):
        table = pq.read_table(path, columns=[schema.device_id, schema.event_id])
        frame = table.to_pandas()
        for device_id, ids in frame.groupby(schema.device_id, sort=False)[schema.event_id]:
            seen.add(str(device_id), ids.to_numpy())
    return seen
