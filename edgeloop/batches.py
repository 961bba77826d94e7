"""Encode and land ground-truth batches in the one upload format (Parquet, content-addressed).

Used by the simulator, tests and (later) the hub so that every writer produces byte-for-byte the same
kind of file that edge runners upload. Reading and validating batches is the ingest stage's job.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edge.atomic import write_bytes_atomic
from edge.record import batch_id, landing_path


def encode_batch(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame`` (no index), deterministic for the same frame."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def land_batch(root: Path, device_id: str, body: bytes, extension: str = "parquet") -> Path:
    """Write a batch body at its content address under ``root``; a second call is a no-op."""
    path = landing_path(root, device_id, batch_id(body), extension)
    if not path.exists():
        write_bytes_atomic(path, body, mode=0o444)
    return path


def write_batch(root: Path, device_id: str, frame: pd.DataFrame) -> Path:
    """Encode ``frame`` as Parquet and land it for ``device_id``; returns the landed path."""
    return land_batch(root, device_id, encode_batch(frame))
