"""``edgeloop devices ...``: register devices, give them enrollment codes, list them, revoke them (a Typer sub-app).

Works directly on the hub database named in params.yaml (``hub.database``, or EDGELOOP_HUB_DATABASE),
so it needs no running hub and a revocation is seen by a running hub on its next request. ``add`` prints
the device token once, to stdout alone on its line (easy to pipe into a provisioning step), and on
stderr a one-time enrollment code inside the exact ``edge-runner enroll`` command to run on the gateway
(the gateway makes its own key; the code expires after ``hub.tls.enrollment_code_ttl_s`` and works
once). ``enroll-code`` gives an existing device a fresh code (a re-imaged gateway), printing the command
on stdout. Only salted hashes of tokens and codes are stored. ``list`` never shows secrets; it shows when
each device's certificate expires ("token only" without one), as a table fitted to the terminal
(edgeloop.cli_tables: names never cut, ``--wide`` for every column) or, with ``--json``, as a JSON list.
``revoke`` stops its token and every certificate at once. Mistakes raise ``UserError`` (one line, exit 2).
Leaves out the hub server and its HTTP API (``hub``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from edge.contracts.errors import UserError
from edge.contracts.names import DEVICE_ID_RULE
from edgeloop.cli_common import RootOption, sub_app
from edgeloop.cli_tables import Col, fit_table, show

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from hub.settings import HubSettings

devices_app = sub_app("Edge devices allowed to talk to the hub: add (issues a token and an enrollment code), "
                      "enroll-code, list, revoke.")
out = Console(highlight=False, soft_wrap=True)
note = Console(stderr=True, highlight=False, soft_wrap=True)

CA_ON_GATEWAY = "hub-ca.pem"  # what the printed command calls the copy of the CA file on the gateway


def _settings(root: Path) -> HubSettings:
    from edge.contracts.layout import Paths
    from hub.settings import HubSettings

    return HubSettings.load(Paths.at(root).root)


@contextmanager
def _sessions(root: Path) -> Iterator[sessionmaker[Session]]:
    from hub.db import make_engine, make_sessions

    engine = make_engine(_settings(root).database_url)
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


def _ttl(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _code(root: Path, name: str) -> tuple[str, str]:
    """A fresh enrollment code for ``name`` and the gateway's command that uses it."""
    from hub.registry import RegistryError, issue_enrollment_code
    from hub.tls.address import enrollment_target

    settings = _settings(root)
    try:
        with _sessions(root) as sessions:
            code = issue_enrollment_code(sessions, name, settings.section.tls.enrollment_code_ttl_s)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    target = enrollment_target(settings)
    command = f"edge-runner enroll --hub {target.url} --code {code}"
    if target.tls:
        command += f" --ca {CA_ON_GATEWAY}"
    ttl = settings.section.tls.enrollment_code_ttl_s
    note.print(f"To enroll the gateway of '{name}' (it makes its own key), run this on it within {_ttl(ttl)}; "
               "the code works once:")
    if target.tls:
        source = target.ca_file or "the CA certificate that issued the hub's certificate"
        note.print(f"  ({CA_ON_GATEWAY}: a copy of {source}; public: it is how the gateway knows this hub)",
                   markup=False)
    else:
        note.print("  (this hub serves plain HTTP on loopback only: gateways on other machines enroll over TLS, "
                   "see docs/hub.md#tls)")
    return code, command


@devices_app.command()
def add(
    name: Annotated[str, typer.Argument(help=f"Device id ({DEVICE_ID_RULE}).")],
    channel: Annotated[
        str, typer.Option(help="Release channel the device follows: canary, stable or one the repository has.")
    ] = "stable",
    root: RootOption = Path("."),
) -> None:
    """Register a device: print the gateway's enrollment command (stderr) and its token (stdout), once."""
    from hub.registry import RegistryError, add_device

    try:
        with _sessions(root) as sessions:
            token = add_device(sessions, name, channel, _channels(root))
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    note.print(f"device '{name}' added on channel '{channel}'.")
    _, command = _code(root, name)
    note.print(f"  {command}", markup=False)
    note.print("The line on stdout is its bearer token, for a hub on loopback or a token-only gateway "
               "(shown only now; not needed once enrolled):")
    out.print(token, markup=False)


@devices_app.command("enroll-code")
def enroll_code(
    name: Annotated[str, typer.Argument(help="Device id (already added).")],
    root: RootOption = Path("."),
) -> None:
    """A fresh one-time enrollment code (a re-imaged gateway): prints the gateway's command on stdout."""
    _, command = _code(root, name)
    out.print(command, markup=False)


LIST_COLUMNS = (Col("device", whole=True), Col("channel", whole=True), Col("status", whole=True, drop=1),
                Col("created (UTC)", whole=True, drop=3), Col("revoked (UTC)", whole=True, drop=4),
                Col("uploads", drop=5, justify="right"), Col("certificate expires", drop=2),
                Col("config", whole=True, drop=6))  # the runner policy version its last heartbeat reported


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@devices_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the devices as a JSON list (stdout only).")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the table gets.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Table of devices: name, channel, status, created, revoked, uploads, certificate expiry, runner policy
    version (no secrets)."""
    from hub.fleet_view import certificate_text
    from hub.registry import list_devices
    from hub.store.fleet import read_fleet_rows

    with _sessions(root) as sessions:
        devices = list_devices(sessions)
        applied = {r.device_id: (r.state or {}).get("config_version") for r in read_fleet_rows(sessions)}
    if as_json:
        print(json.dumps([{"device_id": d.device_id, "channel": d.channel, "status": d.status,
                           "created_at": _iso(d.created_at), "revoked_at": _iso(d.revoked_at), "uploads": d.uploads,
                           "certificate_not_after": _iso(d.certificate_not_after),
                           "config_version": applied.get(d.device_id)} for d in devices], indent=2))
        return
    now = datetime.now(UTC)
    rows: list[list[str | Text]] = [
        [d.device_id, d.channel, Text(d.status, style="green" if d.status == "active" else "red"),
         _when(d.created_at), _when(d.revoked_at), str(d.uploads), certificate_text(d.certificate_not_after, now),
         str(applied.get(d.device_id) or "-")]
        for d in devices]
    table = Console(highlight=False)  # made here: the width follows $COLUMNS at call time
    show(table, fit_table(LIST_COLUMNS, rows, table.width, title="devices", wide=wide), wide)
    if not devices:
        out.print("no devices yet: `edgeloop devices add NAME`")


@devices_app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="Device id to revoke.")],
    root: RootOption = Path("."),
) -> None:
    """Revoke a device: its token and every certificate get 401 from its next request on (add it again to
    give it a new token and enrollment code)."""
    from hub.registry import RegistryError, revoke_device

    try:
        with _sessions(root) as sessions:
            changed = revoke_device(sessions, name)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    out.print(f"device '{name}' revoked (its token and certificates)" if changed
              else f"device '{name}' was already revoked")
