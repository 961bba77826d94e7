"""``edgeloop deploy``: put the project's flows/prefect.yaml on a Prefect server for workers to run.

Against the server in ``PREFECT_API_URL``: creates the process work pool the file names, the
``edgeloop-retrain`` global concurrency limit (one retrain at a time across workers), and runs
``prefect deploy --all`` on the file (``flows.orchestration.work_pool``); then prints the deployments
as the server holds them, a warning for a monitor or promotion interval that differs from params.yaml's,
and the command that starts a worker. Run it from the root of a checkout.
Leaves out starting workers and the server (docs/prefect.md) and ``edgeloop serve`` (one process, no pool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgeloop.cli_common import RootOption

console = Console(stderr=True)
out = Console()


def deploy(
    root: RootOption = Path("."),
    prefect_file: Annotated[
        Path, typer.Option("--prefect-file", help="Deployment file, relative to --root.")
    ] = Path("flows/prefect.yaml"),
) -> None:
    """Deploy flows/prefect.yaml to the Prefect server in PREFECT_API_URL: the process work pool, the
    edgeloop-retrain concurrency limit (one retrain at a time), then `prefect deploy --all`."""
    from edge.contracts.layout import Paths
    from flows.params import load_params

    params = load_params(Paths.at(root).params)  # fail fast on bad params, before Prefect loads
    from flows.orchestration.work_pool import deploy_project, interval_drift, pool_names

    report = deploy_project(root, prefect_file)
    for step in report.steps:
        console.print(step, soft_wrap=True)
    for line in interval_drift(prefect_file if prefect_file.is_absolute() else root / prefect_file, params):
        console.print(f"[yellow]warning[/]: {line}", soft_wrap=True)
    table = Table(title="deployments")
    for column in ("deployment", "work pool", "schedule", "concurrency"):
        table.add_column(column, overflow="fold")
    for row in report.deployments:
        table.add_row(row.name, row.pool, row.schedules, row.concurrency)
    out.print(table)
    pools = pool_names(prefect_file if prefect_file.is_absolute() else root / prefect_file)
    console.print(f"start workers (each host: a checkout of this commit, pip install -e \".[cloud]\"):\n"
                  f"  EDGELOOP_ROOT={root.resolve()} DO_NOT_TRACK=1 prefect worker start --pool {pools[0]}",
                  soft_wrap=True, markup=False)
