"""The app factory ``edgeloop hub serve`` gives uvicorn: the hub's app with the operator console mounted.

Leaves out serving itself (edgeloop.hub_cli) and the hub's own parts (hub.app).
"""

from __future__ import annotations

from typing import Any

from edgeloop.console import mount

__all__ = ["app_from_environment"]


def app_from_environment() -> Any:
    """For uvicorn workers (``factory=True``): hub.app.app_from_environment with the console."""
    from hub.app import app_from_environment as hub_app

    return hub_app(extensions=(mount,))
