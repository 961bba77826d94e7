"""``edgeloop fleet``: the hub's fleet view in the terminal (a rich table), read over HTTP.

Asks ``GET /v1/fleet`` of a running hub (``--url``, default ``http://127.0.0.1:<hub.port>`` from
params.yaml) with the admin token from the hub's admin token file (``hub.admin_token_file``, or
``--token-file``), and prints the same rows as the ``/fleet`` page (hub.fleet_view). ``--json`` prints
the document as the hub sent it. Standard library HTTP only. The lead registers the command function
``fleet`` on the ``edgeloop`` app. Leaves out watching (run it again, or ``watch edgeloop fleet``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeloop.errors import UserError
from hub.fleet_view import COLUMNS, OFFLINE, ONLINE, summary_rows

out = Console()
_STYLE = {ONLINE: "green", OFFLINE: "red"}


def fetch_fleet(url: str, token: str, timeout: float = 10.0) -> dict[str, Any]:
    """The ``GET /v1/fleet`` document of the hub at ``url``; UserError when it cannot be had."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/fleet", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) URL from the user)
            document: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = " (wrong admin token? see --token-file)" if exc.code == 401 else ""
        raise UserError(f"hub at {url} answered HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"cannot read the fleet from {url}: {exc}") from None
    return document


def fleet_table(document: dict[str, Any]) -> Table:
    table = Table(title=f"fleet ({len(document.get('devices', []))} devices)")
    for column in COLUMNS:
        table.add_column(column)
    for device, row in zip(document.get("devices", []), summary_rows(document), strict=True):
        style = _STYLE.get(str(device.get("status")), "dim")
        cells = [f"[{style}]{row[c]}[/]" if c == "status" else row[c] for c in COLUMNS]
        table.add_row(*cells, style="strike dim" if device.get("revoked") else None)
    return table


def _defaults(root: Path) -> tuple[str, Path]:
    """(URL, admin token file) from params.yaml in ``root``."""
    from flows.params import load_params
    from flows.paths import Paths

    paths = Paths.at(root)
    hub = load_params(paths.params).hub
    return f"http://127.0.0.1:{hub.port}", paths.resolve(hub.admin_token_file)


def fleet(
    url: Annotated[str | None, typer.Option(help="Hub base URL (default: http://127.0.0.1:<hub.port>).")] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the admin token (default: hub.admin_token_file).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fleet document as JSON.")] = False,
    root: Annotated[
        Path, typer.Option("--root", help="Project folder holding params.yaml and data/.", file_okay=False)
    ] = Path("."),
) -> None:
    """Show every device: channel, online/offline, health, model, last heartbeat, drift, backlog, uploads."""
    default_url, default_token_file = _defaults(root) if url is None or token_file is None else ("", Path())
    file = token_file or default_token_file
    try:
        token = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"cannot read the admin token from {file}: {exc.strerror}") from None
    document = fetch_fleet(url or default_url, token)
    if as_json:
        out.print_json(json.dumps(document))
        return
    out.print(fleet_table(document))
    stale = float(document.get("stale_after_s", 0))
    out.print(f"[dim]offline: silent for more than {stale:.0f} s; generated {document.get('generated_at')}[/]")
