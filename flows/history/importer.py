"""Copy a historian export into the landing zone as batches, adding the event id, time and device it lacks.

Files are taken in ``history_files`` order and cut into batches of ``batch_rows`` rows, written as
Parquet to ``<to>/<device>/<stem>-<n>.parquet`` (``stem``: the file's path below the imported folder).
Columns that exist are kept as they are; missing ones are derived: event id = the row's index across
the files in that order (plus ``first_id``), event time = ``start + index * period_s``, device = the
constant ``device``. With a device column, rows go to their own device's folder.

Re-running is safe: a batch whose file already holds the same bytes is left alone and counted as
unchanged; one that holds other bytes (the export or the options changed) stops the import before
anything is placed. Never half-applied: batches are written to a hidden staging folder under ``<to>``
(ingest skips hidden folders) and moved into place only when the whole export was read and checked
(derived times must not lie in the future: ingest would quarantine them); a crash while moving leaves
whole files, and a rerun places the rest. The export is only read. Leaves out validation of values
(ingest does that) and the schema (``flows.history.infer``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edge.atomic import fsync_dir
from edge.contracts.names import DEVICE_ID_RULE, is_valid_device_id
from flows.history.reader import HistoryError, Scan

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ImportOptions:
    device: str | None = None  # the constant device id when the data has no device column
    id_column: str = "event_id"
    time_column: str = "event_time"
    device_column: str = "device_id"
    start: dt.datetime | None = None  # first derived event time (aware)
    period_s: float | None = None  # seconds between derived event times
    batch_rows: int = 10_000
    first_id: int = 0


@dataclass
class ImportReport:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    rows: int = 0
    derived: list[str] = field(default_factory=list)  # columns added (by name)
    devices: set[str] = field(default_factory=set)


def parse_start(text: str) -> dt.datetime:
    """``--start`` as an aware UTC datetime (a naive time is refused: say the zone)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HistoryError(f"--start {text!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        raise HistoryError(f"--start {text!r} needs a time zone (e.g. {text}Z)")
    return moment.astimezone(dt.UTC)


def _stem(path: Path, base: Path) -> str:
    relative = path.relative_to(base) if base in path.parents else Path(path.name)
    text = "__".join([*relative.parent.parts, relative.stem])
    return _UNSAFE.sub("_", text).lstrip("._-") or "export"


def _rebatched(chunks: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The chunks re-cut into tables of exactly ``rows`` rows (the last may be shorter)."""
    pending: list[pa.Table] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.num_rows
        while held >= rows:
            table = pa.concat_tables(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def _encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class _Importer:
    def __init__(self, to: Path, options: ImportOptions, staging: Path) -> None:
        self.to, self.options, self.staging = to, options, staging
        self.report = ImportReport()
        self.staged: list[tuple[Path, Path]] = []  # (staged file, final path)
        self.last_time: dt.datetime | None = None

    def _add_roles(self, table: pa.Table, first: int, path: Path) -> pa.Table:
        options, n = self.options, table.num_rows
        index = np.arange(first, first + n, dtype=np.int64)
        if options.id_column not in table.column_names:
            table = table.append_column(options.id_column, pa.array(index + options.first_id, pa.int64()))
            self._derived(options.id_column)
        if options.time_column not in table.column_names:
            if options.start is None or options.period_s is None:
                raise HistoryError(f"{path}: no time column {options.time_column!r}: name yours with --time COL, "
                                   f"or pass --start ISO and --period-s S to derive one")
            step = np.int64(round(options.period_s * 1e9))
            start_ns = np.int64(int(options.start.timestamp() * 1e6) * 1000)
            times = pa.array(start_ns + index * step, pa.timestamp("ns", tz="UTC"))
            table = table.append_column(options.time_column, times)
            self._derived(options.time_column)
            self.last_time = options.start + dt.timedelta(seconds=float(index[-1]) * options.period_s)
        if options.device_column not in table.column_names:
            if options.device is None:
                raise HistoryError(f"{path}: no device column {options.device_column!r}: pass --device NAME "
                                   f"(the machine this history comes from)")
            table = table.append_column(options.device_column, pa.array([options.device] * n, pa.string()))
            self._derived(options.device_column)
        elif options.device is not None:
            raise HistoryError(f"{path}: has a device column {options.device_column!r} already; drop --device "
                               f"(its rows go to their own devices' folders)")
        return table

    def _derived(self, name: str) -> None:
        if name not in self.report.derived:
            self.report.derived.append(name)

    def _by_device(self, table: pa.Table, path: Path) -> Iterator[tuple[str, pa.Table]]:
        column = table.column(self.options.device_column)
        if column.null_count:
            raise HistoryError(f"{path}: {column.null_count} rows have no {self.options.device_column!r}")
        values = column.cast(pa.string()).combine_chunks()
        for device in sorted(pc.unique(values).to_pylist()):
            if not is_valid_device_id(device):
                raise HistoryError(f"{path}: device id {device!r} cannot be a folder name: use {DEVICE_ID_RULE}")
            yield device, table.filter(pc.equal(values, device))

    def _stage(self, device: str, name: str, body: bytes) -> None:
        final = self.to / device / name
        self.report.devices.add(device)
        if final.is_file():
            if hashlib.sha256(final.read_bytes()).digest() == hashlib.sha256(body).digest():
                self.report.unchanged.append(final)
                return
            raise HistoryError(f"{final} exists with other content (the export or the options changed since it "
                               f"was imported); nothing was imported. Import into a new --to folder, or move "
                               f"the old batches away first")
        staged = self.staging / device / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(body)
        self.staged.append((staged, final))

    def run(self, files: list[Path], base: Path, on_bytes: Callable[[int], None] | None) -> ImportReport:
        first = 0
        for path in files:
            stem = _stem(path, base)
            for number, table in enumerate(_rebatched(Scan(path, on_bytes).chunks(), self.options.batch_rows)):
                table = self._add_roles(table, first, path)
                first += table.num_rows
                for device, rows in self._by_device(table, path):
                    self._stage(device, f"{stem}-{number:05d}.parquet", _encode(rows))
        self.report.rows = first
        self._check_times()
        self._place()
        return self.report

    def _check_times(self) -> None:
        now = dt.datetime.now(dt.UTC)
        if self.last_time is None or self.last_time <= now or self.options.start is None:
            return
        latest = self.options.start - (self.last_time - now)
        raise HistoryError(f"derived event times run to {self.last_time:%Y-%m-%dT%H:%M:%SZ}, after now: ingest "
                           f"quarantines future events. Pass --start {latest:%Y-%m-%dT00:00:00Z} or earlier; "
                           f"nothing was imported")

    def _place(self) -> None:
        folders = set()
        for staged, final in self.staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            with staged.open("rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(staged, 0o444)
            os.replace(staged, final)
            folders.add(final.parent)
            self.report.written.append(final)
        for folder in folders:
            fsync_dir(folder)


def import_history(files: list[Path], base: Path, to: Path, options: ImportOptions,
                   on_bytes: Callable[[int], None] | None = None) -> ImportReport:
    """Import ``files`` (found below ``base``) into the landing zone ``to``; see the module docstring."""
    if options.device is not None and not is_valid_device_id(options.device):
        raise HistoryError(f"--device {options.device!r} cannot be a folder name: use {DEVICE_ID_RULE}")
    to.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=to))
    try:
        return _Importer(to, options, staging).run(files, base, on_bytes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
