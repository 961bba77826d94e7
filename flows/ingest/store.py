"""The curated parts: one Parquet file per accepted batch at ``data/curated/parts/<device_id>/<batch_id>.parquet``.

Writing a part (atomically) is the commit of its batch. Each part records, in its Parquet key-value
metadata, how many of the batch's rows were dropped as events already curated from earlier batches, so
totals can be re-derived from the folder alone. Also reads back the (device, event id) keys already
curated. Does not validate, and does not load the dataset for training (``flows.dataset`` does).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from edge.atomic import write_bytes_atomic
from edge.contracts.names import BATCH_ID_PATTERN, is_valid_device_id
from edge.contracts.schema import DataSchema

DUPLICATES_KEY = b"edgeloop.duplicates_dropped"


def parts_root(curated: Path) -> Path:
    return curated / "parts"


def part_path(curated: Path, device_id: str, batch_id: str) -> Path:
    return parts_root(curated) / device_id / f"{batch_id}.parquet"


def iter_parts(curated: Path) -> Iterator[tuple[str, str, Path]]:
    """(device id, batch id, path) of every committed part, sorted; temp files are never parts."""
    root = parts_root(curated)
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_valid_device_id(p.name)):
        for path in sorted(folder.glob("*.parquet")):
            if BATCH_ID_PATTERN.match(path.stem):
                yield folder.name, path.stem, path


def curated_frame(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The stored form of a validated batch: features as float64, everything else as normalised."""
    out = frame.copy()
    for name in schema.feature_names:
        out[name] = out[name].astype("float64")
    return out


def encode_part(frame: pd.DataFrame, duplicates_dropped: int) -> bytes:
    """Deterministic Parquet bytes of ``frame`` with the duplicate count in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[DUPLICATES_KEY] = str(int(duplicates_dropped)).encode()
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), sink, compression="zstd")
    return sink.getvalue()


def write_part(path: Path, frame: pd.DataFrame, duplicates_dropped: int) -> None:
    write_bytes_atomic(path, encode_part(frame, duplicates_dropped))


def part_stats(path: Path) -> tuple[int, int]:
    """(rows, duplicates dropped) of a part, from its footer only."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    extra = (meta.metadata or {}).get(DUPLICATES_KEY, b"0")
    return meta.num_rows, int(extra)


def curated_events(curated: Path, event_id: str) -> dict[str, set[object]]:
    """Event ids already curated, per device (a part's rows all carry its folder's device id)."""
    import pyarrow.parquet as pq

    seen: dict[str, set[object]] = {}
    for device_id, _, path in iter_parts(curated):
        ids = pq.read_table(path, columns=[event_id]).column(0).to_pylist()
        seen.setdefault(device_id, set()).update(ids)
    return seen


def drop_seen(frame: pd.DataFrame, event_id: str, seen: set[object]) -> tuple[pd.DataFrame, int]:
    """Remove rows whose event id is in ``seen``; adds the batch's ids to ``seen``."""
    ids = frame[event_id].tolist()
    repeated = np.fromiter((i in seen for i in ids), dtype=bool, count=len(ids))
    seen.update(ids)
    if not repeated.any():
        return frame, 0
    return frame.loc[~repeated].reset_index(drop=True), int(repeated.sum())
