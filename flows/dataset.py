"""Load the curated dataset: every curated part concatenated, in one stable row order.

Rows are sorted by (event time, device id, event id) with a fresh index, so the same parts always give
the same frame. Parts may differ in which optional record columns they carry (missing ones become
null). Reads only ``data/curated`` (both layouts, ``flows.ingest.store``); does not validate (ingest
did) or split (the split stage does).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.ingest.store import part_files


def curated_part_files(paths: Paths) -> list[Path]:
    return part_files(paths.curated)


def _read_parts(files: list[Path]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(path) for path in files]
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


def load_curated(paths: Paths, schema: DataSchema) -> pd.DataFrame:
    """All curated rows, sorted by (event time, device id, event id); UserError when there are none."""
    files = curated_part_files(paths)
    frame = _read_parts(files) if files else pd.DataFrame()
    if frame.empty:
        raise UserError(
            f"no curated data: {paths.curated} holds no rows. Add ground-truth batches to "
            f"{paths.uploads} (<device_id>/<batch_id>.parquet or .csv) or set simulate.rows_per_device "
            "above 0, then run the ingest stage"
        )
    return sort_rows(frame, schema)
