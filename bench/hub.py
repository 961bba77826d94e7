"""Load-test the hub on loopback: N concurrent simulated devices uploading 1,000-row batches, and N
devices making no-change release polls, each for a fixed time.

The hub runs as its own process (`edgeloop hub serve`, one uvicorn worker) so its RSS is its own; the
load generator is one asyncio process with an httpx client per device. Every upload is a distinct
batch (pre-encoded before the clock starts). A no-change poll is what python-tuf's client does when
nothing changed: GET the next root version (404) and GET timestamp.json with If-None-Match (304).
Afterwards the landing zone is checked: every 2xx upload is there exactly once, nothing else.
A benchmark, not a test.

    .venv/bin/python bench/hub.py --devices 50 200 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

from edge.record import batch_id  # noqa: E402
from edgeloop.batches import encode_batch  # noqa: E402
from flows.params import load_params  # noqa: E402
from flows.paths import Paths  # noqa: E402
from hub import tokens  # noqa: E402
from hub.db import Device, make_engine, make_sessions  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from tests.synthetic import make_rows  # noqa: E402

ROWS_PER_BATCH = 1000


def project(root: Path, port: int) -> Paths:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["hub"]["port"] = port
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return Paths.at(root)


def register(paths: Paths, devices: int) -> dict[str, str]:
    settings = HubSettings.from_params(load_params(paths.params), paths)
    sessions = make_sessions(make_engine(settings.database_url))
    issued = {}
    with sessions() as session:
        for i in range(devices):
            token = tokens.issue()
            name = f"bench-{i:04d}"
            session.add(Device(device_id=name, channel="canary", token_id=token.token_id,
                               token_salt=token.salt, token_digest=token.digest))
            issued[name] = token.token
        session.commit()
    return issued


def make_batches(paths: Paths, count: int) -> list[bytes]:
    schema = load_params(paths.params).schema
    base = make_rows(schema, "x", ROWS_PER_BATCH, seed=1)
    out = []
    for i in range(count):
        frame = base.copy()
        frame[schema.event_id] = np.arange(ROWS_PER_BATCH, dtype=np.int64) + i * ROWS_PER_BATCH
        out.append(frame)
    return [encode_batch(f) for f in out]


def publish_release(paths: Paths) -> None:
    from flows.releases import init_repository, publish
    from tests.release_helpers import make_candidate, release_config, tiny_onnx

    config = release_config(paths.root)
    init_repository(config)
    publish(config, make_candidate(paths.root / "cand", tiny_onnx(seed=1), "cand-000000000001"), "canary")
    raw = yaml.safe_load(paths.params.read_text())
    raw["release"]["repository"] = str(config.repository)
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def start_hub(paths: Paths, port: int) -> subprocess.Popen[bytes]:
    hub = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--root", str(paths.root), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return hub
        except httpx.HTTPError:
            time.sleep(0.1)
    hub.kill()
    raise RuntimeError("hub did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def upload_device(client: httpx.AsyncClient, url: str, name: str, token: str, batches: list[bytes],
                        deadline: float, stats: dict) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.apache.parquet"}
    while time.monotonic() < deadline and batches:
        body = batches.pop()
        started = time.perf_counter()
        try:
            response = await client.post(f"{url}/v1/devices/{name}/uploads", content=body,
                                         headers={**headers, "Idempotency-Key": batch_id(body)})
            ok = response.status_code in (200, 201)
        except httpx.HTTPError:
            ok = False
        stats["latency"].append(time.perf_counter() - started)
        if ok:
            stats["stored"].append((name, batch_id(body)))
        else:
            stats["errors"] += 1


async def poll_device(client: httpx.AsyncClient, url: str, deadline: float, stats: dict) -> None:
    etag = None
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            root = await client.get(f"{url}/releases/metadata/2.root.json")
            headers = {"If-None-Match": etag} if etag else {}
            ts = await client.get(f"{url}/releases/metadata/timestamp.json", headers=headers)
            etag = ts.headers.get("etag", etag)
            ok = root.status_code == 404 and ts.status_code in (200, 304)
        except httpx.HTTPError:
            ok = False
        stats["latency"].append(time.perf_counter() - started)
        stats["done"] += ok
        stats["errors"] += not ok


async def run_load(kind: str, url: str, issued: dict[str, str], batches: list[bytes], seconds: float) -> dict:
    stats: dict = {"latency": [], "stored": [], "errors": 0, "done": 0}
    limits = httpx.Limits(max_connections=len(issued), max_keepalive_connections=len(issued))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.monotonic()
        deadline = started + seconds
        if kind == "upload":
            tasks = [upload_device(client, url, n, t, batches, deadline, stats) for n, t in issued.items()]
        else:
            tasks = [poll_device(client, url, deadline, stats) for _ in issued]
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    lat = sorted(stats["latency"]) or [float("nan")]
    count = len(stats["stored"]) if kind == "upload" else stats["done"]
    return {"per_s": count / elapsed, "count": count, "errors": stats["errors"],
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "stored": stats["stored"]}


def check_landing(paths: Paths, stored: list[tuple[str, str]]) -> dict:
    files = sorted(p.relative_to(paths.uploads).as_posix() for p in paths.uploads.rglob("*.parquet"))
    expected = sorted(f"{d}/{b}.parquet" for d, b in set(stored))
    return {"files": len(files), "acknowledged": len(stored), "lost": len(set(expected) - set(files)),
            "unexpected": len(set(files) - set(expected)), "duplicate_acks": len(stored) - len(set(stored))}


def bench(devices: int, seconds: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"edgeloop-hub-{devices}-"))
    port = 18700 + devices
    try:
        paths = project(work / "p", port)
        issued = register(paths, devices)
        publish_release(paths)
        batches = make_batches(paths, int(350 * seconds))  # more than the hub takes in `seconds`
        hub = start_hub(paths, port)
        try:
            url = f"http://127.0.0.1:{port}"
            uploads = asyncio.run(run_load("upload", url, issued, batches, seconds))
            polls = asyncio.run(run_load("poll", url, issued, [], seconds))
            rss = rss_mib(hub.pid)
        finally:
            hub.terminate()
            hub.wait(timeout=60)
        landing = check_landing(paths, uploads.pop("stored"))
        polls.pop("stored")
        return {"devices": devices, "seconds": seconds, "uploads": uploads, "polls": polls,
                "landing": landing, "hub_peak_rss_mib": rss}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[50, 200], help="concurrent devices")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each load phase")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    for n in args.devices:
        print(json.dumps(bench(n, args.seconds), indent=2), flush=True)


if __name__ == "__main__":
    main()
