"""``edgeloop hub serve | ca init | cert``: run the hub with uvicorn; make the plant CA and the hub's certificate.

``serve`` listens as hub.tls.listen decides: HTTPS when ``hub.tls.cert_file/key_file`` are set (or
``--cert/--key``), plain HTTP on loopback otherwise; plain HTTP on another address is refused in one line
saying how to configure TLS; a port something already listens on is refused in one line, before anything
starts, naming ``--port``. The start-up line says which it is and where the admin token file is (never
the token). A re-issued certificate is picked up for new connections without a restart. Graceful
shutdown: on SIGTERM/SIGINT uvicorn stops accepting connections and lets in-flight requests (uploads)
finish, up to ``--grace`` seconds. Logs: start-up, warnings and every 5xx; one ``key=value`` line per
request (without headers or bodies) only with ``--access-log`` (hub.serving).
``--workers N`` runs N uvicorn worker processes on one port (each builds its own app from
EDGELOOP_HUB_ROOT); more than one needs PostgreSQL (SQLite takes one writer at a time: refused in one
line). Hub processes on other ports or hosts share the same database and project folder; the schema is
created or upgraded once, at the first start (hub.db, hub.migrations).

``ca init`` makes the plant CA in ``hub.tls.ca_dir`` (hub.pki: ``ca.key`` 0600, ``ca.pem`` public);
``cert --name/--ip`` issues the hub's server certificate from it into ``keys/hub-tls/`` and prints the
params.yaml lines that serve it. Both use the ``cryptography`` library only. Leaves out the hub's routes
and settings (``hub.app``, ``hub.settings``) and devices (``edgeloop.devices_cli``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge.contracts.errors import UserError
from edgeloop.cli_common import RootOption, check_port_free, sub_app

hub_app = sub_app("The hub: device uploads, heartbeats, fleet view and the release repository.")
ca_app = sub_app("The plant CA: it issues the hub's certificate and every device's.")
hub_app.add_typer(ca_app, name="ca")
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

SERVER_FOLDER = "keys/hub-tls"  # where `edgeloop hub cert` writes hub.pem and hub.key, inside the project


@hub_app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: hub.host, loopback).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: hub.port).", min=1, max=65535)] = None,
    grace: Annotated[float, typer.Option(help="Seconds in-flight requests get to finish on shutdown.")] = 30.0,
    workers: Annotated[
        int, typer.Option(help="Worker processes on this port (needs PostgreSQL for more than one; each keeps its "
                               "own /metrics counters).", min=1, max=64)
    ] = 1,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="The hub's certificate chain, PEM (default: hub.tls.cert_file).",
                                  dir_okay=False)
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Its private key, PEM (default: hub.tls.key_file).", dir_okay=False)
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request (off: only errors and 5xx).")] = False,
    root: RootOption = Path("."),
) -> None:
    """Serve the hub (HTTPS when it has a certificate; plain HTTP on loopback only) until interrupted."""
    import uvicorn

    from edge.contracts.layout import Paths
    from flows.params import check_yaml
    from hub.app import ROOT_ENV, create_app
    from hub.serving import configure_logging
    from hub.settings import HubSettings
    from hub.tls.listen import is_loopback, plan

    paths = Paths.at(root)
    check_yaml(paths.params)  # a syntax error with its line and column (hub.settings only says it is not YAML)
    settings = HubSettings.load(paths.root)
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise UserError(f"--workers {workers}: the hub's database is SQLite, which takes one writer at a time; run one "
                        "process, or give the hub PostgreSQL (EDGELOOP_HUB_DATABASE=postgresql+psycopg://user@host/db, "
                        "docs/hub.md#database)")
    listening = plan(settings, host, port, cert and cert.resolve(), key and key.resolve())
    check_port_free(listening.host, listening.port, "another hub?")  # before the banner and the database
    configure_logging(access_log)  # hub.serving: INFO records on stderr; a line per request only when asked
    create_app(settings)  # fail fast on a bad database URL; migrates the schema and creates the admin token once
    bind = listening.host
    shown = f"[{bind}]" if ":" in bind else bind
    console.print(f"hub on {listening.scheme}://{shown}:{listening.port} ({listening.description})", highlight=False,
                  soft_wrap=True)
    if not is_loopback(bind):
        console.print(f"[yellow]binding {bind}: the hub is reachable from other machines[/]")
    console.print(f"admin token in {settings.admin_token_file}", highlight=False, soft_wrap=True)
    os.environ[ROOT_ENV] = str(paths.root)
    uvicorn.run(
        "edgeloop.console.serving:app_from_environment", factory=True, host=bind, port=listening.port,
        workers=workers, log_level="warning", timeout_graceful_shutdown=int(grace), access_log=False,
        **listening.uvicorn_options(),
    )


@ca_app.command("init")
def ca_init(
    name: Annotated[str, typer.Option(help="The CA's name (shown in every certificate it issues).")] = (
        "edgeloop plant CA"),
    days: Annotated[float, typer.Option(help="How long the CA is valid, in days.", min=1)] = 3650.0,
    root: RootOption = Path("."),
) -> None:
    """Create the plant CA in hub.tls.ca_dir: ca.key (0600, stays on this machine) and ca.pem (public)."""
    from edge.contracts.layout import Paths
    from flows.params import check_yaml
    from hub.pki import CA_KEY, init_ca
    from hub.settings import HubSettings

    check_yaml(Paths.at(root).params)  # a syntax error with its line and column
    settings = HubSettings.load(Paths.at(root).root)
    ca = init_ca(settings.ca_dir, name, days)
    console.print(f"plant CA created in {settings.ca_dir}:", highlight=False, soft_wrap=True)
    console.print(f"  {ca.cert_file.name}: public; gateways verify the hub with it (give it to them)", highlight=False)
    console.print(f"  {CA_KEY}: mode 0600; it makes device identities: keep it on this machine, back it up "
                  "offline, never commit it (keys/ and *.key are git-ignored)", highlight=False, soft_wrap=True)
    console.print("next: edgeloop hub cert --name <the name gateways use for this machine> [--ip <its address>]",
                  highlight=False, soft_wrap=True)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@hub_app.command()
def cert(
    name: Annotated[list[str] | None, typer.Option("--name", help="DNS name gateways connect to (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address gateways connect to (repeatable).")] = None,
    days: Annotated[float, typer.Option(help="Validity in days (re-issue before it ends).", min=1)] = 397.0,
    loopback: Annotated[
        bool, typer.Option(help="Also name localhost and 127.0.0.1 (the cloud's tools on this machine use them).")
    ] = True,
    root: RootOption = Path("."),
) -> None:
    """Issue the hub's server certificate from the plant CA into keys/hub-tls/ (replacing the one there)."""
    from edge.contracts.layout import Paths
    from flows.params import check_yaml
    from hub.pki import issue_server_certificate, load_ca
    from hub.settings import HubSettings

    names, ips = list(name or []), list(ip or [])
    if not names and not ips:
        raise UserError("say what gateways connect to: --name hub.plant.local and/or --ip 10.0.0.5")
    paths = Paths.at(root)
    check_yaml(paths.params)  # a syntax error with its line and column
    settings = HubSettings.load(paths.root)
    ca = load_ca(settings.ca_dir)
    if loopback:
        names += [n for n in ("localhost",) if n not in names]
        ips += [i for i in ("127.0.0.1",) if i not in ips]
    cert_file, key_file = issue_server_certificate(ca, names, ips, paths.resolve(SERVER_FOLDER), days)
    console.print(f"hub certificate for {', '.join(names + ips)}, valid {days:.0f} days: {cert_file} "
                  f"(key {key_file.name}, mode 0600)", highlight=False, soft_wrap=True)
    configured = settings.cert_file == cert_file and settings.key_file == key_file
    if configured:
        console.print("params.yaml already serves these files: a running hub uses the new certificate for new "
                      "connections (no restart)", highlight=False, soft_wrap=True)
        return
    console.print("set in params.yaml (a running hub then picks up re-issued files without a restart):",
                  highlight=False, soft_wrap=True)
    out.print("hub:\n  host: 0.0.0.0            # or the address gateways reach\n  tls:\n"
              f"    cert_file: {_relative(cert_file, paths.root)}\n    key_file: {_relative(key_file, paths.root)}")
