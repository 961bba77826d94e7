"""Load-test the hub on loopback: N concurrent simulated devices uploading 1,000-row batches, and N
devices making no-change release polls, each for a fixed time.

The hub runs as its own process (`edgeloop hub serve`, one uvicorn worker) so its RSS is its own. The
load comes from wrk (Debian package `wrk`; one thread, N connections = N devices), a C load generator,
because a Python client on the same 2 cores saturates before the hub does. Every upload is a distinct
(device, batch) pair (bench/hub_uploads.lua). A no-change poll is what python-tuf's client does when
nothing changed: GET the next root version (404) and GET timestamp.json with If-None-Match (304).
Afterwards the landing zone is checked against the hub's database: every acknowledged batch is there
exactly once, nothing else. A benchmark, not a test.

    apt-get install wrk
    .venv/bin/python bench/hub.py --devices 50 200 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from edge.contracts.layout import Paths  # noqa: E402
from edge.contracts.record import batch_id  # noqa: E402
from edge.contracts.release_layout import METADATA_PATH  # noqa: E402
from edge.contracts.wire import IDEMPOTENCY_KEY, PARQUET_TYPES, device_path  # noqa: E402
from edgeloop.testkit.synthetic import make_rows  # noqa: E402
from flows.params import load_params  # noqa: E402
from hub import tokens  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.db import Device, make_engine, make_sessions  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from simulator.batches import encode_batch  # noqa: E402

ROWS_PER_BATCH = 1000


def project(root: Path, port: int) -> Paths:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["hub"]["port"] = port
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return Paths.at(root)


def register(paths: Paths, devices: int) -> dict[str, str]:
    settings = HubSettings.load(paths.root)
    sessions = make_sessions(make_engine(settings.database_url))
    issued = {}
    now = SystemClock().now()
    with sessions() as session:
        for i in range(devices):
            token = tokens.issue()
            name = f"bench-{i:04d}"
            session.add(Device(device_id=name, channel="canary", token_id=token.token_id,
                               token_salt=token.salt, token_digest=token.digest, created_at=now))
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
    from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
    from flows.releases import init_repository, publish

    config = release_config(paths.root)
    init_repository(config)
    publish(config, make_candidate(paths.root / "cand", tiny_onnx(seed=1), "cand-000000000001"), "canary")
    raw = yaml.safe_load(paths.params.read_text())
    raw["release"]["repository"] = str(config.repository)
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def start_hub(paths: Paths, port: int, workers: int) -> subprocess.Popen[bytes]:
    hub = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--root", str(paths.root), "--port", str(port),
         "--workers", str(workers)],
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
    """Peak RSS of the hub process plus its worker processes."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0.0
    for each in [str(pid), *children]:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


BATCH_POOL = 800  # distinct bodies; with N devices that is N * 800 distinct (device, batch) pairs


def write_load_files(folder: Path, issued: dict[str, str], batches: list[bytes]) -> None:
    """What bench/hub_uploads.lua reads: per device its upload path and token, and the batch bodies with keys."""
    (folder / "batches").mkdir(parents=True)
    (folder / "manifest.tsv").write_text("".join(f"{device_path(d, 'uploads')}\t{t}\n" for d, t in issued.items()))
    for i, body in enumerate(batches):
        (folder / "batches" / f"{i}.parquet").write_bytes(body)
        (folder / "batches" / f"{i}.key").write_text(batch_id(body) + "\n")


def wrk(url: str, connections: int, seconds: float, script: Path, *args: str) -> dict:
    """Run wrk and read requests/s, latency percentiles and errors from its report."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s",
           "-s", str(script), url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match.group(1)) * unit[match.group(2)] if match else float("nan")

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": requests,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50%"), "p99_ms": latency("99%"),
        "non_2xx_3xx": int(non_2xx.group(1)) if non_2xx else 0,  # polls: the expected root 404s
        "unexpected_status": int(re.search(r"UNEXPECTED (\d+)", out).group(1)),  # type: ignore[union-attr]
        "socket_errors": sum(int(x) for x in socket.groups()) if socket else 0,
    }


POLL_SCRIPT = """
local etag = nil
local i = 0
local threads = {}
bad = 0
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status ~= 304 and status ~= 404 and status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write("UNEXPECTED " .. total .. "\\n")
end
local metadata = nil
init = function(args) etag, metadata = args[1], args[2] end
request = function()
  i = i + 1
  if i % 2 == 1 then return wrk.format("GET", metadata .. "2.root.json") end
  return wrk.format("GET", metadata .. "timestamp.json", {["If-None-Match"] = etag})
end
"""


def check_landing(paths: Paths) -> dict:
    """Files in the landing zone vs uploads the hub recorded: equal sets, nothing twice, nothing lost."""
    from sqlalchemy import select

    from hub.db import Upload

    settings = HubSettings.load(paths.root)
    with make_sessions(make_engine(settings.database_url))() as session:
        recorded = [f"{u.device_id}/{u.batch_id}.parquet" for u in session.scalars(select(Upload))]
    files = {p.relative_to(paths.uploads).as_posix() for p in paths.uploads.rglob("*.parquet")}
    return {"files": len(files), "recorded": len(recorded), "lost": len(set(recorded) - files),
            "unrecorded": len(files - set(recorded)), "recorded_twice": len(recorded) - len(set(recorded))}


def bench(devices: int, seconds: float, workers: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"edgeloop-hub-{devices}-"))
    port = 18700 + devices
    try:
        paths = project(work / "p", port)
        issued = register(paths, devices)
        publish_release(paths)
        write_load_files(work / "load", issued, make_batches(paths, BATCH_POOL))
        (work / "poll.lua").write_text(POLL_SCRIPT)
        hub = start_hub(paths, port, workers)
        try:
            url = f"http://127.0.0.1:{port}"
            uploads = wrk(url, devices, seconds, REPO / "bench" / "hub_uploads.lua", str(work / "load"),
                          IDEMPOTENCY_KEY, PARQUET_TYPES[0])
            etag = httpx.get(f"{url}{METADATA_PATH}timestamp.json").headers["etag"]
            polls = wrk(url, devices, seconds, work / "poll.lua", etag, METADATA_PATH)
            polls["polls_per_s"] = polls["requests_per_s"] / 2
            rss = rss_mib(hub.pid)
        finally:
            hub.terminate()
            hub.wait(timeout=60)
        uploads["stored"] = check_landing(paths)
        return {"devices": devices, "seconds": seconds, "workers": workers, "uploads": uploads, "polls": polls,
                "hub_peak_rss_mib": rss}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[50, 200], help="concurrent devices")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each load phase")
    parser.add_argument("--workers", type=int, default=1, help="hub worker processes")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    for n in args.devices:
        print(json.dumps(bench(n, args.seconds, args.workers), indent=2), flush=True)


if __name__ == "__main__":
    main()
