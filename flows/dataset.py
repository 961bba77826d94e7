"""Load the curated dataset: every curated part concatenated, in one stable row order.

Rows are sorted by (event time, device id, event id) with a fresh index, so the same parts always give
the same frame. Parts may differ in which optional record columns they carry (missing ones become
null). On request each row also carries the landing batch it came from (``BATCH_COLUMN``, read from the
chunk ledgers), for a split that holds out whole batches. When nothing is curated, the error says how
many batches sit in quarantine, their commonest reasons and the command that retries them. Reads only
``data/curated`` (both layouts, ``flows.ingest.store``) and, for that message, the quarantine's reason
files; does not validate (ingest did) or split (the split stage does).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.ingest.store import chunk_ledger, iter_chunks, iter_parts, part_files

if TYPE_CHECKING:
    import pyarrow as pa

    from flows.storage import StoragePath

BATCH_COLUMN = "__edgeloop_batch__"  # "<device_id>/<batch_id>" of each row's landing batch (on request)
RETRY_COMMAND = "edgeloop ingest --retry-quarantined"
TOP_REASONS = 3


def curated_part_files(paths: Paths) -> list[Path]:
    return part_files(paths.curated)


def _batch_of_rows(curated: Path) -> dict[Path, np.ndarray]:
    """Per curated file, the landing batch of each of its rows (chunk ledgers list batches in row order)."""
    out: dict[Path, np.ndarray] = {}
    for device_id, bid, path in iter_parts(curated):
        out[path] = np.array([f"{device_id}/{bid}"], dtype=object)  # broadcast over the part's rows
    for path in iter_chunks(curated):
        ledger = chunk_ledger(path)
        names = np.array([f"{d}/{b}" for d, b, _, _ in ledger], dtype=object)
        out[path] = np.repeat(names, [rows for _, _, rows, _ in ledger])
    return out


def _with_batch(table: pa.Table, batches: np.ndarray) -> pa.Table:
    import pyarrow as pa

    if len(batches) == 1 and table.num_rows != 1:
        batches = np.repeat(batches, table.num_rows)
    if len(batches) != table.num_rows:  # a ledger that disagrees with its file: never guess
        raise UserError(f"a curated file's ledger lists {len(batches)} rows but it holds {table.num_rows}")
    return table.append_column(BATCH_COLUMN, pa.array(batches.astype(str)))


def _read_parts(files: list[Path], batches: dict[Path, np.ndarray] | None = None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(path) for path in files]
    if batches is not None:
        tables = [_with_batch(t, batches[path]) for t, path in zip(tables, files, strict=True)]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # parts disagree on a column's type (e.g. probabilities as list vs JSON text): let pandas mix them
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    return table.to_pandas()


def sort_rows(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    keys = [schema.event_time, schema.device_id, schema.event_id]
    try:
        ordered = frame.sort_values(keys, kind="stable")
    except TypeError:  # event ids of mixed types (numbers in one part, text in another)
        ordered = frame.sort_values(keys, kind="stable", key=lambda s: s.astype(str) if s.dtype == object else s)
    return ordered.reset_index(drop=True)


def quarantine_summary(quarantine: StoragePath, curated: Path) -> tuple[int, list[tuple[str, int]]]:
    """(batches still quarantined, their commonest kinds of reason with counts): what a retry could bring back.

    A batch curated since (``edgeloop ingest --retry-quarantined``) is not counted."""
    from flows.ingest.ledger import still_quarantined
    from flows.ingest.quarantine import reason_kind
    from flows.storage import read_bytes

    reasons: Counter[str] = Counter()
    for _, _, path in still_quarantined(curated, quarantine):  # type: ignore[arg-type]  # a UPath walks alike
        reasons[reason_kind(read_bytes(path).decode("utf-8", errors="replace"))] += 1
    return sum(reasons.values()), reasons.most_common(TOP_REASONS)


def quarantine_hint(quarantine: StoragePath | None, curated: Path) -> str:
    """'' when nothing is quarantined; else one sentence: how many, why, and the command to retry them."""
    if quarantine is None:
        return ""
    try:
        count, top = quarantine_summary(quarantine, curated)
    except (OSError, UserError) as exc:
        return f" The quarantine {quarantine} cannot be listed ({exc})."
    if not count:
        return ""
    shown = "; ".join(f"{n} x {reason[:160]}" for reason, n in top)
    return (
        f" {count} batches are in quarantine {quarantine} (commonest reasons: {shown}). If params.yaml was "
        f"too strict, fix it and run `{RETRY_COMMAND}` to check them again."
    )


def load_curated(
    paths: Paths, schema: DataSchema, quarantine: StoragePath | None = None, with_batch: bool = False
) -> pd.DataFrame:
    """All curated rows, sorted by (event time, device id, event id); UserError when there are none.

    ``quarantine`` (default ``paths.quarantine``) is only read for that error's hint; ``with_batch`` adds
    ``BATCH_COLUMN``."""
    files = curated_part_files(paths)
    batches = _batch_of_rows(paths.curated) if with_batch and files else None
    frame = _read_parts(files, batches) if files else pd.DataFrame()
    if frame.empty:
        hint = quarantine_hint(paths.quarantine if quarantine is None else quarantine, paths.curated)
        add = "" if hint else (
            f" Add ground-truth batches to {paths.uploads} (<device_id>/<batch_id>.parquet or .csv) or set "
            "simulate.rows_per_device above 0, then run the ingest stage."
        )
        raise UserError(f"no curated data: {paths.curated} holds no rows.{hint}{add}")
    return sort_rows(frame, schema)
