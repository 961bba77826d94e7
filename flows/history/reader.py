"""How to read a historian export: which files, in which order, in bounded Arrow chunks, and the role columns.

``history_files(target)`` is the file itself or every ``.csv``/``.parquet`` file below a folder (sorted by
relative path; hidden files and folders and README files skipped). ``Scan(path).chunks()`` streams a file
as ``pyarrow.Table`` chunks with pyarrow (Parquet by record batches, CSV by blocks), so a 1 GB export never
sits in memory at once; ``on_bytes`` reports progress. A CSV's column types are inferred by pyarrow from
its first block; when a later block disagrees (an int column with a ``1.5`` further down), the column is
widened (int -> float -> text) and the file is read again: for a CSV larger than one block that costs one
extra parse up front. ``Roles`` holds the names of the event id, event time and device id columns
(defaults ``event_id``, ``event_time``, ``device_id``, as in params.yaml). Leaves out what is done with the
chunks (``flows.history.infer``, ``flows.history.importer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from edge.contracts.errors import UserError

EXTENSIONS = ("csv", "parquet")
CSV_BLOCK_BYTES = 16 << 20  # bytes of CSV parsed per chunk
PARQUET_BATCH_ROWS = 65_536  # rows per Parquet chunk
_CONFLICT = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


class HistoryError(UserError):
    """The export cannot be read or used as asked; the message says what and how to fix it."""


@dataclass(frozen=True)
class Roles:
    """Names of the columns that are not features: the label and the event id, event time and device id."""

    label: str
    event_id: str = "event_id"
    event_time: str = "event_time"
    device_id: str = "device_id"

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.label, self.event_id, self.event_time, self.device_id)


def history_files(target: Path) -> list[Path]:
    """The export's files, in a fixed order; HistoryError when there is none."""
    if target.is_file():
        if target.suffix[1:].lower() not in EXTENSIONS:
            raise HistoryError(f"{target}: not a .csv or .parquet file")
        return [target]
    if not target.is_dir():
        raise HistoryError(f"{target}: no such file or folder")
    files = sorted(
        (p for p in target.rglob("*")
         if p.is_file() and p.suffix[1:].lower() in EXTENSIONS
         and not any(part.startswith(".") for part in p.relative_to(target).parts)
         and not p.name.upper().startswith("README")),
        key=lambda p: p.relative_to(target).as_posix(),
    )
    if not files:
        raise HistoryError(f"{target}: no .csv or .parquet files in this folder")
    return files


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]


class Scan:
    """One export file read in chunks; ``on_bytes(n)`` is called with the bytes consumed since the last call."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.kind = path.suffix[1:].lower()
        self._on_bytes = on_bytes or (lambda _n: None)
        self._csv_types: dict[str, pa.DataType] | None = None

    def chunks(self) -> Iterator[pa.Table]:
        """The file's rows as Arrow tables of bounded size, every chunk with the same column types."""
        try:
            if self.kind == "parquet":
                yield from self._parquet()
            else:
                if self._csv_types is None:
                    self._csv_types = self._resolve_csv_types()
                yield from self._csv(self._csv_types, report=True)
        except (pa.ArrowException, OSError) as exc:
            raise HistoryError(f"{self.path}: cannot be read: {_first_line(exc)}") from None

    def _parquet(self) -> Iterator[pa.Table]:
        try:
            handle = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise HistoryError(f"{self.path}: not a readable Parquet file: {_first_line(exc)}") from None
        size, rows = self.path.stat().st_size, max(handle.metadata.num_rows, 1)
        for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False):
            self._on_bytes(int(size * batch.num_rows / rows))
            yield pa.Table.from_batches([batch])

    def _open_csv(self, handle: BinaryIO, types: dict[str, pa.DataType]) -> pacsv.CSVStreamingReader:
        return pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )

    def _csv(self, types: dict[str, pa.DataType], report: bool) -> Iterator[pa.Table]:
        with self.path.open("rb") as handle:
            reader = self._open_csv(handle, types)
            done = 0
            for batch in reader:
                if report:
                    self._on_bytes(handle.tell() - done)
                    done = handle.tell()
                yield pa.Table.from_batches([batch], schema=reader.schema)

    def _resolve_csv_types(self) -> dict[str, pa.DataType]:
        """Column types that hold every block of the CSV (only a file over one block can disagree)."""
        types: dict[str, pa.DataType] = {}
        if self.path.stat().st_size <= CSV_BLOCK_BYTES:
            return types
        while True:
            try:
                with self.path.open("rb") as handle:
                    reader = self._open_csv(handle, types)
                    names = reader.schema.names
                    for _batch in reader:
                        pass
                return types
            except pa.ArrowInvalid as exc:
                found = _CONFLICT.search(str(exc))
                if not found:
                    raise
                name = names[int(found.group(1))]
                widened = pa.float64() if found.group(2).startswith(("int", "uint")) else pa.string()
                if types.get(name) == widened:
                    widened = pa.string()
                types[name] = widened
