"""What every ``edgeloop`` sub-command shares: the ``--root`` option, the options that reach the hub as an admin
(``--url``, ``--token-file``, ``--ca-file``), how a sub-app is made, and two helpers
for answering mistakes in one line (a busy port found before a server starts; Prefect's log records of a
``UserError`` kept quiet, since the command prints it).

Kept apart from ``edgeloop.cli`` so that the release, hub and device command modules can use it without
importing the top-level app (which imports them). Imports typer, the standard library and UserError. Leaves out
every command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from edge.contracts.errors import UserError

RootOption = Annotated[
    Path, typer.Option("--root", help="Project folder holding params.yaml and data/.", file_okay=False)
]
HubUrlOption = Annotated[
    str | None, typer.Option("--url", help="Hub base URL (default: $EDGELOOP_HUB_URL, else hub.host:hub.port).")
]
AdminTokenFileOption = Annotated[
    Path | None, typer.Option("--token-file", help="File holding the admin token (default: hub.admin_token_file).")
]
HubCaFileOption = Annotated[
    Path | None, typer.Option("--ca-file", help="CA certificate an https hub is verified with (default: "
                                                "$EDGELOOP_HUB_CA_FILE, else <hub.tls.ca_dir>/ca.pem).")
]


def sub_app(help_text: str) -> typer.Typer:
    """A Typer sub-app with the conventions of the main one: help when called bare, plain errors."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def check_port_free(host: str, port: int, holder: str, hint: str = "choose another with --port") -> None:
    """``UserError`` (one line) when ``host:port`` cannot be bound because something already listens there.

    Probes with a throw-away socket bound the way uvicorn binds (``SO_REUSEADDR``), so a port left in
    TIME_WAIT counts as free; other bind errors (an unknown address, a privileged port) are left to the
    server itself to report. ``holder`` guesses who has it ("another hub?")."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        return
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use ({holder}): stop it, or {hint}") from None


class QuietUserErrors(logging.Filter):
    """Drops log records about a ``UserError`` (Prefect logs a failed task's and flow's exception with its
    traceback): the command prints that error itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, UserError):
            return False
        return "UserError" not in record.getMessage()
