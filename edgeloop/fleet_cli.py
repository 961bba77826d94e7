"""``edgeloop fleet``: the hub's fleet view in the terminal (a rich table), read over HTTP.

Asks ``GET /v1/fleet`` of a running hub through the cloud's hub client (``flows.hub_client``: ``--url``,
else ``$EDGELOOP_HUB_URL``, else params.yaml's hub address; the admin token from ``--token-file`` or the
hub's admin token file; an https hub verified with ``--ca-file``, else ``$EDGELOOP_HUB_CA_FILE``, else
the plant CA) and prints the same rows as the ``/fleet`` page (hub.fleet_view), certificate expiry
included. The table fits the terminal (edgeloop.cli_tables): ids, channels and versions are never cut;
on a narrow terminal the least useful columns are hidden and a footer line says which (``--wide`` shows
them all). ``--json`` prints the document as the hub sent it, on stdout alone. Leaves out watching (run it
again, or ``watch edgeloop fleet``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from edgeloop.cli_common import AdminTokenFileOption, HubCaFileOption, HubUrlOption
from edgeloop.cli_tables import Col, Fitted, fit_table, show
from hub.fleet_view import COLUMNS, OFFLINE, ONLINE, summary_rows

_STYLE: dict[str, str] = {ONLINE: "green", OFFLINE: "red"}
_HEALTH_STYLE: dict[str, str] = {"ok": "green", "degraded": "yellow", "error": "bold red"}
FLEET_COLUMNS: tuple[Col, ...] = (  # hub.fleet_view.COLUMNS, each with how it fits a narrow terminal
    Col("device", whole=True), Col("channel", whole=True), Col("status", whole=True, drop=1),
    Col("health", drop=1, min_width=24), Col("model", whole=True, drop=2),
    Col("config", whole=True, drop=9), Col("last heard", drop=3),
    Col("accuracy", drop=6),
    Col("est. accuracy (95%)", drop=5), Col("max drift", drop=4), Col("backlog", drop=7, justify="right"),
    Col("uploads", drop=8), Col("certificate", drop=5),
)
assert tuple(c.name for c in FLEET_COLUMNS) == COLUMNS


def fleet_table(document: dict[str, Any], width: int = 10_000, wide: bool = False) -> Fitted:
    """The fleet's devices laid out for a terminal ``width`` wide (revoked devices struck through)."""
    rows = []
    for device, row in zip(document.get("devices", []), summary_rows(document), strict=True):
        cells: list[str | Text] = []
        for column in COLUMNS:
            style = ""
            if column == "status":
                style = _STYLE.get(str(device.get("status")), "dim")
            elif column == "health":
                style = _HEALTH_STYLE.get(row[column].split(":")[0], "")
            if device.get("revoked"):
                style = f"{style} strike dim".strip()
            cells.append(Text(row[column], style=style))
        rows.append(cells)
    return fit_table(FLEET_COLUMNS, rows, width, title=f"fleet ({len(rows)} devices)", wide=wide)


def fleet(
    url: HubUrlOption = None,
    token_file: AdminTokenFileOption = None,
    ca_file: HubCaFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fleet document as JSON (stdout only).")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the table gets.")] = False,
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
        print(json.dumps(document, indent=2))
        return
    out = Console(highlight=False)  # made here: the width follows $COLUMNS at call time
    fitted = fleet_table(document, out.width, wide)
    show(out, fitted, wide)
    stale = float(document.get("stale_after_s", 0))
    out.print(f"offline: silent for more than {stale:.0f} s; generated {document.get('generated_at')}",
              style="dim", markup=False)
