"""Edge HTTP API benchmark: ``POST /predict`` latency of the real ``edge-runner run`` daemon over keep-alive.

The server is the daemon itself, in its own process as on a gateway: ``edge-runner run`` with the DEFAULT
settings (pending predictions 100,000, drift window 5,000, heartbeat and polls every 60 s), the default model
(bench/default_model.py) as its active release, and no hub reachable (polls and heartbeats fail at once: an
outage). Per request it does everything it does in service: parse and check the JSON, check the row, run
the model, keep the prediction for its label in the pending ring (the drift window too), count it, answer.

First ``FILL`` predictions from 4 client threads fill the pending ring (nobody sends labels: from then on
every prediction evicts the oldest, the steady state; their latency is shown too), then for 1 and 4 client
threads (``http.client``, one keep-alive connection
each, pre-encoded JSON bodies of real simulator rows) ``RUNS`` runs of 1,000 warm-up and ``MEASURED`` timed
requests spread over the threads. The table shows the median over the runs of each run's p50, p99, p99.9
and max, the request rate, and the daemon's RSS at the end.

    .venv/bin/python bench/edge_http.py

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

import numpy as np  # noqa: E402

RUNS = 3
MEASURED = 20_000  # timed requests per run (all threads together)
WARMUP = 1_000
FILL = 110_000  # predictions before the runs: the pending ring (100,000) is full
THREADS = (1, 4)
EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(port: int, bodies: list[bytes], warmup: int, samples: list[float], start: threading.Barrier) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    for body in bodies[:warmup]:
        conn.request("POST", "/predict", body, headers)
        conn.getresponse().read()
    start.wait()
    clock = time.perf_counter_ns
    local = []
    for body in bodies[warmup:]:
        t0 = clock()
        conn.request("POST", "/predict", body, headers)
        response = conn.getresponse()
        response.read()
        local.append((clock() - t0) / 1e6)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    samples.extend(local)
    conn.close()


def _run(port: int, bodies: list[bytes], threads: int, seed: int, measured: int, warmup: int
         ) -> dict[str, float]:
    per_thread = measured // threads
    warm = warmup // threads
    rng = np.random.default_rng(seed)
    samples: list[float] = []
    start = threading.Barrier(threads + 1)
    workers = []
    for _ in range(threads):
        picks = rng.integers(0, len(bodies), warm + per_thread)
        workers.append(threading.Thread(target=_client, args=(port, [bodies[i] for i in picks], warm, samples, start)))
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    values = np.array(samples)
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "p999": float(np.percentile(values, 99.9)), "max": float(values.max()), "rate": len(values) / elapsed}


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False


def main() -> None:
    from bench.default_model import describe
    from bench.edge_steady_state import prepare

    with tempfile.TemporaryDirectory() as scratch:
        folder = prepare(Path(scratch))
        rows = np.load(folder / "rows.npy")
        bodies = [json.dumps({"features": [None if v != v else v for v in row]}).encode() for row in rows.tolist()]
        port = _port()
        started = time.perf_counter()
        daemon = subprocess.Popen([EDGE_RUNNER, "run", "-c", str(folder / "runner.toml")],
                                  env=dict(os.environ, EDGE_RUNNER__API__PORT=str(port)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not _ready(port):
                time.sleep(0.05)
            startup_s = time.perf_counter() - started
            filling = _run(port, bodies, 4, 99, FILL, 0)  # the pending ring fills
            load = os.getloadavg()[0]
            results = {}
            for threads in THREADS:
                runs = [_run(port, bodies, threads, seed, MEASURED, WARMUP) for seed in range(RUNS)]
                results[threads] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rss = _rss_mb(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    print("Command: `.venv/bin/python bench/edge_http.py`")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {describe()}; "
          f"server: `edge-runner run` in its own process, default settings, no hub (started and serving in "
          f"{startup_s:.1f} s); {FILL:,} predictions first (pending ring full), then per run {WARMUP:,} warm-up and "
          f"{MEASURED:,} timed requests, median of {RUNS} runs; 1-minute load average before the runs {load:.2f}; "
          f"daemon RSS at the end {rss:.0f} MB")
    print()
    print("| client threads (1 keep-alive connection each) | p50 | p99 | p99.9 | max | requests/s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [(str(threads), r) for threads, r in results.items()]
    rows.append((f"4, while the first {FILL:,} predictions fill the pending ring (one pass)", filling))
    for name, r in rows:
        print(f"| {name} | {r['p50']:.3f} ms | {r['p99']:.3f} ms | {r['p999']:.3f} ms | {r['max']:.2f} ms | "
              f"{r['rate']:,.0f} |")


if __name__ == "__main__":
    main()
