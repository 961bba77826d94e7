"""``edgeloop hub serve``: run the hub with uvicorn, loopback unless a host is given explicitly.

Prints where the admin token file is (never the token). Graceful shutdown: on SIGTERM/SIGINT uvicorn
stops accepting connections and lets in-flight requests (uploads) finish, up to ``--grace`` seconds.
Request logs are one ``key=value`` line per request, without headers or bodies. Leaves out the hub's
routes and settings (``hub.app``, ``hub.settings``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge.contracts.hub_section import LOOPBACK
from edgeloop.cli_common import RootOption, sub_app

hub_app = sub_app("The hub: device uploads, heartbeats, fleet view and the release repository.")
console = Console(stderr=True)


@hub_app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: hub.host, loopback).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: hub.port).", min=1, max=65535)] = None,
    grace: Annotated[float, typer.Option(help="Seconds in-flight requests get to finish on shutdown.")] = 30.0,
    workers: Annotated[
        int, typer.Option(help="Worker processes (each keeps its own /metrics counters).", min=1, max=64)
    ] = 1,
    root: RootOption = Path("."),
) -> None:
    """Serve the hub over HTTP until interrupted."""
    import uvicorn

    from edge.contracts.layout import Paths
    from hub.app import ROOT_ENV, create_app
    from hub.settings import HubSettings

    paths = Paths.at(root)
    settings = HubSettings.load(paths.root)
    bind = host or settings.section.host
    port = port or settings.section.port
    if bind not in LOOPBACK:
        console.print(f"[yellow]binding {bind}: the hub is reachable from other machines[/]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    create_app(settings)  # fail fast on a bad database URL; creates tables and the admin token once
    console.print(f"hub on http://{bind}:{port}  admin token in {settings.admin_token_file}")
    os.environ[ROOT_ENV] = str(paths.root)
    uvicorn.run(
        "hub.app:app_from_environment", factory=True, host=bind, port=port,
        workers=workers, log_level="warning", timeout_graceful_shutdown=int(grace), access_log=False,
    )
