"""``edgeloop schema infer``: the params.yaml ``schema`` section from your history, for review.

Prints the section (stdout), or with ``--write`` puts it into params.yaml (old file kept as
params.yaml.bak). Skipped columns and notes go to stderr. A progress bar shows on long reads. Leaves out
the inference (``flows.history.infer``) and the file surgery (``flows.history.params_file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeloop.cli_common import RootOption, sub_app

schema_app = sub_app("Infer the data schema (params.yaml `schema`) from your own history.")
console = Console(stderr=True)


@schema_app.command("infer")
def infer(
    target: Annotated[Path, typer.Argument(help="A .csv or .parquet file, or a folder of them (read recursively).")],
    label: Annotated[str, typer.Option(help="The label column (its values become the classes).")],
    id_column: Annotated[str, typer.Option("--id", help="The event id column.")] = "event_id",
    time_column: Annotated[str, typer.Option("--time", help="The event time column.")] = "event_time",
    device_column: Annotated[str, typer.Option("--device", help="The device id column.")] = "device_id",
    margin: Annotated[float, typer.Option(help="Widen each observed range by this share of it on each side.",
                                          min=0.0, max=10.0)] = 0.1,
    max_classes: Annotated[int, typer.Option(help="Refuse a label with more distinct values.", min=2)] = 100,
    write: Annotated[bool, typer.Option("--write", help="Write the section into params.yaml (backup: "
                                                         "params.yaml.bak) instead of printing it.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Infer features (dtype, widened range, nullable), classes and role columns from CSV/Parquet history."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from edge.contracts.layout import Paths
    from flows.history.infer import infer as infer_schema
    from flows.history.infer import render
    from flows.history.reader import Roles, history_files

    files = history_files(target)
    roles = Roles(label, id_column, time_column, device_column)
    total = sum(p.stat().st_size for p in files)
    columns = (TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=total < 32 << 20) as progress:
        bar = progress.add_task("reading", total=total)
        inferred = infer_schema(files, roles, margin, max_classes, on_bytes=lambda n: progress.advance(bar, n),
                                source=str(target))
    for name, reason in inferred.skipped:
        console.print(f"skipped {name}: {reason}", soft_wrap=True, markup=False)
    for note in inferred.notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False)
    section = render(inferred)
    summary = (f"{len(inferred.features)} features, {len(inferred.classes)} classes, "
               f"{len(inferred.skipped)} skipped, from {inferred.rows} rows in {inferred.files} "
               f"file{'s' if inferred.files != 1 else ''}")
    if not write:
        typer.echo(section, nl=False)
        console.print(summary, markup=False)
        return
    from flows.history.params_file import replace_schema

    params_path = Paths.at(root).params
    backup = replace_schema(params_path, section)
    console.print(f"wrote the schema section into {params_path} ({summary}); the previous file is {backup}. "
                  f"Review it, then run `dvc repro` or `edgeloop retrain`.", soft_wrap=True, markup=False)
