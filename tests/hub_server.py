"""A real hub for tests: uvicorn on 127.0.0.1 (ephemeral port) in a background thread.

``running_hub(root)`` copies params.yaml into ``root`` when it is missing, starts the app built from it,
yields a handle with the base URL (on ``port`` when given, so a test can restart a hub where
devices expect it), the admin token and the app, and stops the server afterwards.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from flows.params import load_params
from flows.paths import Paths
from hub.app import create_app
from hub.settings import HubSettings
from tests.conftest import REPO


@dataclass
class HubHandle:
    url: str
    admin_token: str
    app: Any
    settings: HubSettings
    root: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_hub(root: Path, port: int | None = None) -> Iterator[HubHandle]:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "params.yaml").exists():
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    paths = Paths.at(root)
    settings = HubSettings.from_params(load_params(paths.params), paths)
    app = create_app(settings)
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("hub did not start")
        time.sleep(0.02)
    try:
        token = settings.admin_token_file.read_text().strip()
        yield HubHandle(f"http://127.0.0.1:{port}", token, app, settings, root)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
