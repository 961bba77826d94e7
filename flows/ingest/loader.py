"""Open each discovered file once and decode it: bytes, batch id, size and name checks, then a table.

``open_file`` reads a file (unless it is above ``ingest.max_bytes``), computes its batch id (sha256 of
the bytes) and says why it cannot be a batch at all (a stray file, too large, a name that is a batch id
but not this content's). ``decode`` turns the bytes into a ``Loaded`` batch: Parquet into an Arrow table
(not yet pandas: ingest concatenates many tables before converting them once), CSV into a DataFrame
through ``flows.ingest.reader``. Every way the bytes cannot become a table raises ``Unreadable``.
``signature`` groups batches whose raw columns have the same names and types, so they can be
concatenated and normalised together. Leaves out: normalising, validating and deciding (the stage).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.contracts.names import BATCH_ID_PATTERN
from edge.contracts.record import MODEL_VERSION, PREDICTION, batch_id
from flows.ingest.discover import Found
from flows.ingest.reader import parquet_frame, parquet_table, read_batch

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from flows.params import Params

PANDAS_KEY = b"pandas"


@dataclass(frozen=True)
class Opened:
    """A file's batch id and bytes (None when not read), or the reason it cannot be a batch."""

    item: Found
    batch_id: str
    body: bytes | None
    problem: str | None


@dataclass
class Loaded:
    """One decoded batch: ``table`` for Parquet or ``frame`` for CSV (raw, not normalised)."""

    item: Found
    batch_id: str
    table: pa.Table | None = None
    frame: pd.DataFrame | None = None

    @property
    def device_id(self) -> str:
        return self.item.device_id

    @property
    def rows(self) -> int:
        if self.table is not None:
            return int(self.table.num_rows)
        assert self.frame is not None
        return len(self.frame)

    @property
    def signature(self) -> str:
        """Equal for batches whose raw columns (names, types, pandas index layout) are the same."""
        if self.table is not None:
            return "parquet:" + table_signature(self.table)
        assert self.frame is not None
        return "csv:" + json.dumps([[str(name), str(dtype)] for name, dtype in self.frame.dtypes.items()])

    def raw_frame(self) -> pd.DataFrame:
        """The batch as pandas, as ``flows.ingest.reader.read_batch`` returns it; may raise ``Unreadable``."""
        if self.table is not None:
            return parquet_frame(self.table)
        assert self.frame is not None
        return self.frame


def _pandas_layout(table: pa.Table) -> dict[str, Any]:
    """The table's pandas metadata without the bounds of a range index (they differ with the row count)."""
    raw = (table.schema.metadata or {}).get(PANDAS_KEY)
    if raw is None:
        return {}
    try:
        layout = json.loads(raw)
    except ValueError:
        return {"unparsed": raw.decode("utf-8", "replace")}
    layout.pop("creator", None)
    layout["index_columns"] = [
        {"kind": "range", "name": c.get("name")} if isinstance(c, dict) else c for c in layout.get("index_columns", [])
    ]
    return dict(layout)


def table_signature(table: pa.Table) -> str:
    return table.schema.remove_metadata().to_string() + "\n" + json.dumps(_pandas_layout(table), sort_keys=True)


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """One table of same-signature ``tables``; a range index (metadata only) becomes the default one."""
    import pyarrow as pa

    joined = pa.concat_tables(tables)
    raw = (joined.schema.metadata or {}).get(PANDAS_KEY)
    if raw is None:
        return joined
    try:
        layout = json.loads(raw)
    except ValueError:
        return joined
    index = layout.get("index_columns", [])
    if index and all(isinstance(c, dict) for c in index):  # range indexes: bounds belong to the first table
        layout["index_columns"] = []
        metadata = {**joined.schema.metadata, PANDAS_KEY: json.dumps(layout).encode()}
        joined = joined.replace_schema_metadata(metadata)
    return joined


def text_columns(params: Params) -> list[str]:
    """CSV columns read as text: device ids ("007" stays "007"), model versions ("7" is a version, not a
    number: edge runners upload CSV) and string class labels with the predictions made of them."""
    schema = params.schema
    text = [schema.device_id, MODEL_VERSION]
    if isinstance(schema.label.classes[0], str):
        text += [schema.label.name, PREDICTION]
    return text


def _sha256_file(item: Found) -> str:
    with item.path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def open_file(item: Found, max_bytes: int) -> Opened:
    """Read ``item`` (when it may be a batch and is small enough) and say why it cannot be one, if so."""
    size = item.path.stat().st_size
    body = item.path.read_bytes() if size <= max_bytes and item.problem is None else None
    bid = batch_id(body) if body is not None else _sha256_file(item)
    problem = item.problem
    if problem is None and size > max_bytes:
        problem = f"file is {size} bytes, above ingest.max_bytes ({max_bytes}); not read"
    stem = item.path.stem
    if problem is None and BATCH_ID_PATTERN.match(stem) and stem != bid:
        problem = f"content does not match its batch id (named {stem[:12]}..., bytes hash to {bid[:12]}...)"
    if problem is None and body is None:
        problem = "not read"
    return Opened(item, bid, body, problem)


def decode(opened: Opened, text: list[str], expected: list[str]) -> Loaded:
    """The batch's table (Parquet) or frame (CSV); raises ``Unreadable`` with the quarantine reason."""
    assert opened.body is not None
    if opened.item.extension == "parquet" and opened.body:
        return Loaded(opened.item, opened.batch_id, table=parquet_table(opened.body))
    return Loaded(opened.item, opened.batch_id, frame=read_batch(opened.body, opened.item.extension, text, expected))
