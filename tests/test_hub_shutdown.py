"""Graceful shutdown, for real: `edgeloop hub serve` gets SIGTERM while an upload is still streaming;
the upload completes (201, file stored) and the process then exits cleanly.

No sleeping on hope: the upload goes over a plain socket with ``Expect: 100-continue``, so the hub's
``100 Continue`` proves its upload handler is reading the body; the first half goes out, SIGTERM goes
in, and the second half is sent only once the hub has stopped accepting connections (it is shutting
down). Every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from edge.contracts.layout import Paths
from edge.contracts.wire import IDEMPOTENCY_KEY, PARQUET_TYPES, device_path
from edgeloop.testkit.hub import free_port
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.db import make_engine, make_sessions
from hub.registry import add_device
from hub.settings import HubSettings
from simulator.batches import encode_batch

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

DEADLINE_S = 30.0


def wait_for(condition, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to and including the first blank line (one response head)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed after {head!r}"
        head += byte
    return head


def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(override(repo_params_raw(), {"hub.port": port})))
    paths = Paths.at(tmp_path)
    params = load_params(paths.params)
    settings = HubSettings.load(paths.root)
    token = add_device(make_sessions(make_engine(settings.database_url)), "press-01", "canary")
    body = encode_batch(make_rows(params.schema, "press-01", 500, seed=3))
    key = hashlib.sha256(body).hexdigest()

    hub = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--root", str(tmp_path), "--grace", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}"), "the hub answers")
        head = (f"POST {device_path('press-01', 'uploads')} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\n{IDEMPOTENCY_KEY}: {key}\r\nContent-Type: {PARQUET_TYPES[0]}\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as upload:
            upload.sendall(head.encode())
            assert read_head(upload).startswith(b"HTTP/1.1 100")  # the handler is reading the body
            half = len(body) // 2
            upload.sendall(body[:half])
            hub.send_signal(signal.SIGTERM)
            wait_for(lambda: not listens(port), "the hub stops accepting connections")
            assert hub.poll() is None, "the hub exited with an upload in flight"
            upload.sendall(body[half:])
            response = b""
            while chunk := upload.recv(65536):  # Connection: close: the response ends with the connection
                response += chunk
        # uvicorn re-raises the signal once shut down, so "clean" is death by SIGTERM, not a crash code
        assert hub.wait(timeout=DEADLINE_S) in (0, -signal.SIGTERM)
    finally:
        if hub.poll() is None:
            hub.kill()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 201"), response[:500]
    assert f'"batch_id":"{key}"'.encode() in rest.partition(b"\r\n\r\n")[2]
    stored = paths.uploads / "press-01" / f"{key}.parquet"
    assert stored.read_bytes() == body
