"""``edgeloop devices ...``: register devices, list them, revoke them (a Typer sub-app).

Works directly on the hub database named in params.yaml (``hub.database``, or EDGELOOP_HUB_DATABASE),
so it needs no running hub and a revocation is seen by a running hub on its next request. ``add`` prints
the device token once, to stdout alone on its line (easy to pipe into a provisioning step); only its
salted hash is stored. ``list`` never shows secrets. Mistakes raise ``UserError`` (one line, exit 2).
Leaves out the hub server and its HTTP API (``hub``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from edge.contracts.errors import UserError
from edge.contracts.names import DEVICE_ID_RULE
from edgeloop.cli_common import RootOption, sub_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

devices_app = sub_app("Edge devices allowed to talk to the hub: add (issues a token), list, revoke.")
out = Console()
note = Console(stderr=True)


@contextmanager
def _sessions(root: Path) -> Iterator[sessionmaker[Session]]:
    from edge.contracts.layout import Paths
    from hub.db import make_engine, make_sessions
    from hub.settings import HubSettings

    paths = Paths.at(root)
    settings = HubSettings.load(paths.root)
    engine = make_engine(settings.database_url)
    try:
        yield make_sessions(engine)
    finally:
        engine.dispose()


def _channels(root: Path) -> set[str]:
    """The channels a device may follow: the defaults and every channel of the release repository."""
    from edge.contracts.layout import Paths
    from edge.contracts.names import DEFAULT_CHANNELS
    from flows.params import load_params
    from flows.releases import ReleaseConfig, list_channels

    paths = Paths.at(root)
    return set(DEFAULT_CHANNELS) | set(list_channels(ReleaseConfig.from_params(load_params(paths.params), paths)))


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


@devices_app.command()
def add(
    name: Annotated[str, typer.Argument(help=f"Device id ({DEVICE_ID_RULE}).")],
    channel: Annotated[
        str, typer.Option(help="Release channel the device follows: canary, stable or one the repository has.")
    ] = "stable",
    root: RootOption = Path("."),
) -> None:
    """Register a device and print its token once (store it on the device; it cannot be shown again)."""
    from hub.registry import RegistryError, add_device

    try:
        with _sessions(root) as sessions:
            token = add_device(sessions, name, channel, _channels(root))
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    note.print(f"device '{name}' added on channel '{channel}'. Its token (shown only now):")
    out.print(token, soft_wrap=True, highlight=False)


@devices_app.command("list")
def list_command(root: RootOption = Path(".")) -> None:
    """Table of devices: name, channel, status, created, revoked, stored uploads (no secrets)."""
    from hub.registry import list_devices

    with _sessions(root) as sessions:
        devices = list_devices(sessions)
    table = Table(title="devices")
    for column in ("device", "channel", "status", "created (UTC)", "revoked (UTC)", "uploads"):
        table.add_column(column)
    for d in devices:
        status = "[green]active[/]" if d.status == "active" else "[red]revoked[/]"
        table.add_row(d.device_id, d.channel, status, _when(d.created_at), _when(d.revoked_at), str(d.uploads))
    out.print(table)
    if not devices:
        out.print("no devices yet: `edgeloop devices add NAME`")


@devices_app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="Device id to revoke.")],
    root: RootOption = Path("."),
) -> None:
    """Revoke a device's token: its requests get 401 from now on (add it again for a new token)."""
    from hub.registry import RegistryError, revoke_device

    try:
        with _sessions(root) as sessions:
            changed = revoke_device(sessions, name)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    out.print(f"device '{name}' revoked" if changed else f"device '{name}' was already revoked")
