"""The hub inside another program: uvicorn on 127.0.0.1 in a background thread (``edgeloop demo``, tests).

``embedded_hub(root, port=None, clock=None, extensions=())`` builds the app from ``root/params.yaml`` (the
same ``create_app`` as ``edgeloop hub serve``, with ``clock`` when given: a test's ``hub.clock.ManualClock``,
and ``extensions`` such as the operator console, edgeloop.console.mount),
serves it on loopback (an ephemeral port unless one is given) as ``hub.tls.listen.plan`` says: HTTPS
when ``hub.tls`` names a certificate (the same reloading context and protocol as ``edgeloop hub
serve``), else plain HTTP; waits until it accepts connections, yields an ``EmbeddedHub`` (base URL,
admin token, app, settings, root, clock) and stops the server on the way out, also when the body
raised. Leaves out workers and signal handling: the embedding program owns those (uvicorn installs no
signal handlers outside the main thread).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.clock import Clock, SystemClock

__all__ = ["EmbeddedHub", "embedded_hub", "free_port"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


@dataclass
class EmbeddedHub:
    url: str
    admin_token: str
    app: Any  # fastapi.FastAPI
    settings: Any  # hub.settings.HubSettings
    root: Path
    clock: Clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def embedded_hub(root: Path, port: int | None = None, clock: Clock | None = None,
                 extensions: Sequence[Callable[[Any], None]] = ()) -> Iterator[EmbeddedHub]:
    import uvicorn

    from edge.contracts.layout import Paths
    from hub.app import create_app
    from hub.settings import HubSettings
    from hub.tls.listen import plan

    paths = Paths.at(root)
    settings = HubSettings.load(paths.root)
    clock = clock or SystemClock()
    app = create_app(settings, clock, extensions)
    port = port or free_port()
    listening = plan(settings, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           **listening.uvicorn_options()))
    thread = threading.Thread(target=server.run, name="edgeloop-hub", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the hub did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        token = settings.admin_token_file.read_text().strip()
        yield EmbeddedHub(listening.url, token, app, settings, Path(root), clock)
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_TIMEOUT_S)
