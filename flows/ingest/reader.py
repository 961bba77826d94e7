"""Turn the bytes of one batch file into a pandas DataFrame, or a one-line reason why not.

Parquet is read with pyarrow; CSV with pandas after a strict UTF-8 decode (a UTF-8 byte-order mark is
allowed). Every way a file can be unreadable raises ``Unreadable`` with a plain-words reason; nothing
here crashes on bad bytes. Does not check sizes (the stage does, before reading), column types or
values (``flows.ingest.normalise`` and the GX suite do).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_MAGIC = b"PAR1"
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


class Unreadable(Exception):
    """The batch cannot become a table; the message is the one-line quarantine reason."""


def read_batch(
    body: bytes, extension: str, text_columns: Iterable[str] = (), expected_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """Read ``body`` as ``extension`` ("parquet" or "csv").

    In a CSV, ``text_columns`` stay strings, and a first line that holds numbers but none of
    ``expected_columns`` is taken for data: the file has no header row.
    """
    if not body:
        raise Unreadable("empty file (0 bytes)")
    if extension == "parquet":
        return read_parquet(body)
    if extension == "csv":
        return read_csv(body, text_columns, expected_columns)
    raise Unreadable(f"unsupported file type {extension!r}")


def read_parquet(body: bytes) -> pd.DataFrame:
    return parquet_frame(parquet_table(body))


def parquet_table(body: bytes) -> pa.Table:
    """The Arrow table in Parquet ``body`` (not yet pandas: ingest concatenates many before converting)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not body.startswith(PARQUET_MAGIC):
        raise Unreadable("not a parquet file (the bytes do not start with the parquet marker PAR1)")
    if not body.endswith(PARQUET_MAGIC) or len(body) < 12:
        raise Unreadable("truncated parquet file (the footer is missing: upload cut short?)")
    try:
        return pq.ParquetFile(pa.BufferReader(body)).read(use_threads=False, use_pandas_metadata=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise Unreadable(f"corrupt parquet file: {_first_line(exc)}") from None


def parquet_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as pandas, or ``Unreadable`` when Arrow cannot convert it."""
    import pyarrow as pa

    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise Unreadable(f"parquet file cannot be converted to a table: {_first_line(exc)}") from None


def _decode_utf8(body: bytes) -> str:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.start + 1].hex()
        hint = " (looks like UTF-16)" if body[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise Unreadable(f"CSV is not UTF-8 text{hint}: byte 0x{bad} at offset {exc.start}; save it as UTF-8") from None
    if "\x00" in text:
        raise Unreadable("CSV is not UTF-8 text (it contains NUL bytes: UTF-16?); save it as UTF-8")
    return text


def read_csv(body: bytes, text_columns: Iterable[str] = (), expected_columns: Iterable[str] = ()) -> pd.DataFrame:
    text = _decode_utf8(body)
    if not text.strip():
        raise Unreadable("CSV has no header and no rows (only whitespace)")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={name: str for name in text_columns})
    except pd.errors.EmptyDataError:
        raise Unreadable("CSV has no header and no rows") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise Unreadable(f"CSV cannot be parsed: {_first_line(exc)}") from None
    _check_header(frame, set(expected_columns))
    return frame


def _check_header(frame: pd.DataFrame, expected: set[str]) -> None:
    names = [str(c) for c in frame.columns]
    # pandas renames a repeated header "1.5" to "1.5.1": strip that suffix before testing
    numeric = [n for n in names if _NUMBER.match(re.sub(r"\.\d+$", "", n))]
    if numeric and (not expected.intersection(names) or len(numeric) == len(names)):
        raise Unreadable(f"CSV has no header row (the first line is data: {', '.join(names[:3])}, ...)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
