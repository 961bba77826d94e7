"""A real hub for tests: ``hub.embedded`` (uvicorn on 127.0.0.1 in a background thread) in a test root.

``running_hub(root, port=None, clock=None)`` copies params.yaml into ``root`` when it is missing, starts
the app built from it, yields a handle with the base URL (on ``port`` when given, so a test can restart
a hub where devices expect it), the admin token, the app and the hub's clock, and stops the server
afterwards. Pass a ``ManualClock`` to decide how much time passes (``clock.advance(seconds)``) instead
of sleeping: heartbeat times, staleness, ``stored_at`` and the fleet's ``generated_at`` all follow it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeloop.testkit.project import REPO
from hub.clock import Clock, ManualClock
from hub.embedded import EmbeddedHub, embedded_hub, free_port

__all__ = ["HubHandle", "ManualClock", "free_port", "running_hub"]

HubHandle = EmbeddedHub


@contextmanager
def running_hub(root: Path, port: int | None = None, clock: Clock | None = None) -> Iterator[HubHandle]:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "params.yaml").exists():
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    with embedded_hub(root, port, clock) as hub:
        yield hub
