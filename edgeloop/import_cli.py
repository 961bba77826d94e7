"""``edgeloop import``: a historian export into the landing zone, with the event id, time and device it lacks.

Thin: parses the options, shows a progress bar on long reads, prints what was written and what was
already there. Leaves out the import itself (``flows.history.importer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeloop.cli_common import RootOption

console = Console(stderr=True)


def import_history(
    target: Annotated[Path, typer.Argument(help="A .csv or .parquet export, or a folder of them (read recursively).")],
    device: Annotated[str | None, typer.Option(help="Device id for every row, when the data has no device column.")]
    = None,
    id_column: Annotated[str, typer.Option("--id", help="Event id column: kept when present, else derived from "
                                                        "the row index.")] = "event_id",
    time_column: Annotated[str, typer.Option("--time", help="Event time column: kept when present, else derived "
                                                            "from --start and --period-s.")] = "event_time",
    device_column: Annotated[str, typer.Option("--device-column", help="Device id column: kept when present.")]
    = "device_id",
    start: Annotated[str | None, typer.Option(help="Event time of the first row, ISO 8601 with a zone "
                                                   "(when deriving times).")] = None,
    period_s: Annotated[float | None, typer.Option(help="Seconds between rows (when deriving times).", min=1e-6)]
    = None,
    first_id: Annotated[int, typer.Option(help="Event id of the first row (when deriving ids).", min=0)] = 0,
    batch_rows: Annotated[int, typer.Option(help="Rows per landed batch file.", min=1)] = 10_000,
    to: Annotated[Path | None, typer.Option(help="Landing zone (default: data/uploads under --root).")] = None,
    root: RootOption = Path("."),
) -> None:
    """Copy a historian export into the landing zone as Parquet batches, adding missing id/time/device columns.

    Re-running imports nothing twice; the export is never modified.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from edge.contracts.layout import Paths
    from flows.history.importer import ImportOptions, parse_start
    from flows.history.importer import import_history as run_import
    from flows.history.reader import history_files

    files = history_files(target)
    options = ImportOptions(device, id_column, time_column, device_column,
                            parse_start(start) if start else None, period_s, batch_rows, first_id)
    landing = to or Paths.at(root).uploads
    total = sum(p.stat().st_size for p in files)
    columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=total < 32 << 20) as progress:
        bar = progress.add_task("importing", total=total)
        report = run_import(files, target if target.is_dir() else target.parent, landing, options,
                            on_bytes=lambda n: progress.advance(bar, n))
    devices = ", ".join(sorted(report.devices))
    added = f"; added {', '.join(report.derived)}" if report.derived else "; every role column was in the data"
    if not report.written:
        typer.echo(f"nothing new: all {len(report.unchanged)} batches of {report.rows} rows are already in "
                   f"{landing} ({devices})")
        return
    again = f", {len(report.unchanged)} already there" if report.unchanged else ""
    typer.echo(f"imported {report.rows} rows from {len(files)} file(s) as {len(report.written)} batches into "
               f"{landing} ({devices}){again}{added}")
