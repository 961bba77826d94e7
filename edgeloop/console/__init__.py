"""The operator console: server-rendered pages in the hub's own FastAPI app (fleet, releases, loop, reports).

``mount(app)`` adds the console's routes to an app built by hub.app.create_app (pass it in
``extensions``); ``edgeloop hub serve``, the demo and the test kit do. It lives above the hub
(it reads the release repository and the loop log through flows) so the hub never imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["mount"]


def mount(app: Any) -> None:
    """Add the console's routes to the hub's app (fastapi.FastAPI)."""
    from edgeloop.console.routes import router

    app.include_router(router)
