"""Encode ground-truth frames as Parquet upload batches and land them (content-addressed).

Used by the simulator, tests and benchmarks: cloud-side writers of the upload format (edge runners send
CSV, edge.ground_truth). Landing goes through ``edge.contracts.record.land_batch``, the same function the
hub stores uploads with. Reading and validating batches is the ingest stage's job.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edge.contracts.record import land_batch


def encode_batch(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame`` (no index), deterministic for the same frame."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_batch(root: Path, device_id: str, frame: pd.DataFrame) -> Path:
    """Encode ``frame`` as Parquet and land it for ``device_id``; returns the landed path."""
    return land_batch(root, device_id, encode_batch(frame))
