"""The structure of a ground-truth batch against the data schema: every column there, typed to hold it, rows.

- Parquet (``parquet_rows``): only the footer is read: every schema column present with an Arrow type
  that can hold its values (features numbers, the label numbers or strings like the schema's classes,
  the event time a timestamp or ISO 8601 text) and at least one row.
- CSV (``csv_rows``, what edge runners send: they have no pyarrow): strict UTF-8 (a BOM is allowed), a
  header row naming every schema column once (extra columns such as the record columns or context
  fields are allowed), rows counted with the csv module (quoted newlines are one row; blank lines are
  skipped, as ingest does), no row with more fields than the header, and at least one row.

Refusals name the column or the parse problem (``schema``, ``unreadable``, ``no_rows``). Leaves out
values (ranges, classes, timestamps, CSV cell types): the ingest stage checks those and quarantines bad
batches.
"""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq

from edge.contracts.schema import DataSchema
from edge.contracts.wire import CSV
from hub.checks.refusal import NO_ROWS, SCHEMA, UNREADABLE, Refused

__all__ = ["batch_rows", "csv_rows", "extension_for", "parquet_rows"]


def extension_for(media: str) -> str:
    """The file extension of a batch sent as ``media`` (one of ``UPLOAD_MEDIA_TYPES``): csv or parquet."""
    return "csv" if media == CSV else "parquet"


def batch_rows(body: bytes, extension: str, schema: DataSchema) -> int:
    """Rows of a batch stored with ``extension`` (``extension_for``) whose structure fits ``schema``."""
    return csv_rows(body, schema) if extension == extension_for(CSV) else parquet_rows(body, schema)


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _column_problem(name: str, kind: pa.DataType, role: str, schema: DataSchema) -> str | None:
    """Why column ``name`` of Arrow type ``kind`` cannot hold ``role`` values, else None."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if role == "feature" and not (_is_number(kind) or pa.types.is_null(kind)):
        return f"feature column {name!r} is {kind}, expected a number"
    if role == "label":
        numeric_classes = not isinstance(schema.label.classes[0], str)
        ok = _is_number(kind) if numeric_classes else (_is_text(kind) or pa.types.is_integer(kind))
        if not ok:
            expected = "numbers" if numeric_classes else "strings"
            return f"label column {name!r} is {kind}, expected {expected} like {list(schema.label.classes)}"
    if role == "event_time" and not (pa.types.is_timestamp(kind) or _is_text(kind)):
        return f"event time column {name!r} is {kind}, expected a timestamp or ISO 8601 text"
    return None


def _missing(names: list[str], schema: DataSchema) -> None:
    missing = [name for name in schema.column_names if name not in names]
    if missing:
        raise Refused(SCHEMA, f"missing column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(m) for m in missing)}")


def parquet_rows(body: bytes, schema: DataSchema) -> int:
    """Rows of a Parquet ``body`` whose footer fits ``schema``."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(body))
        arrow, rows = parquet.schema_arrow, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for garbage; all mean the same here
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise Refused(UNREADABLE, f"not a readable Parquet file: {reason}") from None
    roles = {f.name: "feature" for f in schema.features}
    roles |= {schema.label.name: "label", schema.event_time: "event_time"}
    _missing(list(arrow.names), schema)
    for name, role in roles.items():
        problem = _column_problem(name, arrow.field(name).type, role, schema)
        if problem:
            raise Refused(SCHEMA, problem)
    if rows < 1:
        raise Refused(NO_ROWS, "the batch has no rows")
    return int(rows)


def csv_rows(body: bytes, schema: DataSchema) -> int:
    """Rows of a CSV ``body`` whose header fits ``schema``."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused(UNREADABLE, f"not a UTF-8 CSV file: byte 0x{body[exc.start:exc.start + 1].hex()} "
                                  f"at offset {exc.start}") from None
    if "\x00" in text:
        raise Refused(UNREADABLE, "not a UTF-8 CSV file: it contains NUL characters")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, [])
        if not any(cell.strip() for cell in header):
            raise Refused(UNREADABLE, "not a CSV batch: the first line is not a header row")
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise Refused(SCHEMA, f"column {duplicated[0]!r} appears more than once in the header")
        _missing(header, schema)
        rows = 0
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line: ingest skips these too
            if len(record) > len(header):
                raise Refused(UNREADABLE, f"CSV line {reader.line_num} has {len(record)} fields, "
                                          f"the header has {len(header)}")
            rows += 1
    except csv.Error as exc:
        raise Refused(UNREADABLE, f"not a readable CSV file: line {reader.line_num}: {exc}"[:300]) from None
    if rows < 1:
        raise Refused(NO_ROWS, "the batch has no rows")
    return rows
