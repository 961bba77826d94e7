"""``edgeloop fleet``: the hub's fleet view in the terminal (a rich table), read over HTTP.

Asks ``GET /v1/fleet`` of a running hub through the cloud's hub client (``flows.hub_client``: ``--url``,
else ``$EDGELOOP_HUB_URL``, else params.yaml's hub address; the admin token from ``--token-file`` or the
hub's admin token file; an https hub verified with ``--ca-file``, else ``$EDGELOOP_HUB_CA_FILE``, else
the plant CA) and prints the same rows as the ``/fleet`` page (hub.fleet_view), certificate expiry
included. ``--json``
prints the document as the hub sent it. Leaves out watching (run it again, or ``watch edgeloop fleet``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hub.fleet_view import COLUMNS, OFFLINE, ONLINE, summary_rows

out = Console()
_STYLE: dict[str, str] = {ONLINE: "green", OFFLINE: "red"}


def fleet_table(document: dict[str, Any]) -> Table:
    table = Table(title=f"fleet ({len(document.get('devices', []))} devices)")
    for column in COLUMNS:
        table.add_column(column)
    for device, row in zip(document.get("devices", []), summary_rows(document), strict=True):
        style = _STYLE.get(str(device.get("status")), "dim")
        cells = [f"[{style}]{row[c]}[/]" if c == "status" else row[c] for c in COLUMNS]
        table.add_row(*cells, style="strike dim" if device.get("revoked") else None)
    return table


def fleet(
    url: Annotated[
        str | None, typer.Option(help="Hub base URL (default: $EDGELOOP_HUB_URL, else hub.host:hub.port).")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the admin token (default: hub.admin_token_file).")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="CA certificate an https hub is verified with (default: "
                                                    "$EDGELOOP_HUB_CA_FILE, else <hub.tls.ca_dir>/ca.pem).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fleet document as JSON.")] = False,
    root: Annotated[
        Path, typer.Option("--root", help="Project folder holding params.yaml and data/.", file_okay=False)
    ] = Path("."),
) -> None:
    """Show every device: channel, online/offline, health, model, last heartbeat, drift, backlog, uploads."""
    from edge.contracts.layout import Paths
    from flows.hub_client import HubAdminClient
    from flows.params import load_params

    hub = load_params(Paths.at(root).params).hub
    document = HubAdminClient.for_project(root, hub, url=url, token_file=token_file, ca_file=ca_file).fleet()
    if as_json:
        out.print_json(json.dumps(document))
        return
    out.print(fleet_table(document))
    stale = float(document.get("stale_after_s", 0))
    out.print(f"[dim]offline: silent for more than {stale:.0f} s; generated {document.get('generated_at')}[/]")
