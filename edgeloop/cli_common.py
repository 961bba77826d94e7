"""What every ``edgeloop`` sub-command shares: the ``--root`` option and how a sub-app is made.

Kept apart from ``edgeloop.cli`` so that the release, hub and device command modules can use it without
importing the top-level app (which imports them). Imports only typer. Leaves out every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RootOption = Annotated[
    Path, typer.Option("--root", help="Project folder holding params.yaml and data/.", file_okay=False)
]


def sub_app(help_text: str) -> typer.Typer:
    """A Typer sub-app with the conventions of the main one: help when called bare, plain errors."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
