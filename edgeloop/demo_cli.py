"""``edgeloop demo``: run the closed loop end to end on this machine (see edgeloop.demo.run).

Prints each step and a line per plant tick, then the summary; writes ``reports/demo/index.html``.
Ctrl-C stops every runner, flow and the hub it started before exiting. Leaves out the demo itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeloop.cli_common import RootOption

__all__ = ["demo"]


def demo(
    root: RootOption = Path("."),
    canary: Annotated[int, typer.Option(min=1, max=8, help="Edge runners following the canary channel.")] = 2,
    stable: Annotated[int, typer.Option(min=1, max=16, help="Edge runners following stable.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the simulated plant.")] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and the runners' logs.")] = False,
    tls: Annotated[bool, typer.Option(
        "--tls", help="Mutual TLS: a plant CA, the hub on HTTPS, runners enrolled with keys made on the device.",
    )] = False,
) -> None:
    """Run the whole loop in a few minutes: hub, v1, edge runners, drift, automatic retrain, canary,
    promotion, recovery. Report: reports/demo/index.html (works offline)."""
    import logging
    import os

    from edgeloop.demo.run import run_demo
    from edgeloop.demo.workspace import DemoSettings

    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        logging.getLogger("edge").setLevel(logging.ERROR)
    console = Console(stderr=True)
    settings = DemoSettings(canary=canary, stable=stable, seed=seed, tls=tls)
    result = run_demo(Path(root).resolve(), settings, lambda text: console.print(text, highlight=False))
    Console().print(f"report: {result['report']}")
