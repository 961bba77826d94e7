"""Graceful shutdown, for real: `edgeloop hub serve` gets SIGTERM while an upload is still streaming;
the upload completes (201, file stored) and the process then exits cleanly."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from edge.contracts.layout import Paths
from edgeloop.testkit.hub import free_port
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.db import make_engine, make_sessions
from hub.registry import add_device
from hub.settings import HubSettings
from simulator.batches import encode_batch


def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(override(repo_params_raw(), {"hub.port": port})))
    paths = Paths.at(tmp_path)
    params = load_params(paths.params)
    settings = HubSettings.load(paths.root)
    token = add_device(make_sessions(make_engine(settings.database_url)), "press-01", "canary")
    body = encode_batch(make_rows(params.schema, "press-01", 500, seed=3))

    hub = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--root", str(tmp_path), "--grace", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hub did not start"
            time.sleep(0.1)

        def slow_body():
            half = len(body) // 2
            yield body[:half]
            time.sleep(1.5)  # the hub receives SIGTERM while this upload is half sent
            yield body[half:]

        result: dict[str, httpx.Response] = {}
        headers = {
            "Authorization": f"Bearer {token}", "Idempotency-Key": hashlib.sha256(body).hexdigest(),
            "Content-Type": "application/vnd.apache.parquet", "Content-Length": str(len(body)),
        }
        sender = threading.Thread(
            target=lambda: result.update(
                response=httpx.post(f"{url}/v1/devices/press-01/uploads", content=slow_body(), headers=headers,
                                    timeout=30)
            )
        )
        sender.start()
        time.sleep(0.5)
        hub.send_signal(signal.SIGTERM)
        sender.join(timeout=30)
        # uvicorn re-raises the signal once shut down, so "clean" is death by SIGTERM, not a crash code
        assert hub.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if hub.poll() is None:
            hub.kill()
    assert result["response"].status_code == 201, result["response"].text
    stored = paths.uploads / "press-01" / f"{hashlib.sha256(body).hexdigest()}.parquet"
    assert stored.read_bytes() == body
