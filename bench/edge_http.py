"""Edge HTTP API benchmark (issue 5): ``POST /predict`` latency over keep-alive connections.

The server runs in its own process, as on a gateway: ``edge.http_api.serve`` in front of a small service
that does what the runner does per request (``Predictor.predict``, ``DriftMonitor.observe``,
``HealthMonitor.prediction``, a metrics counter). The model is the default one (HistGradientBoosting with
params.yaml's hgb settings, trained on simulator data, as bench/edge_inference.py builds it); without the
cloud extras installed it falls back to the small real model tests/test_edge_inference.py builds.
Clients use ``http.client`` with one keep-alive connection per thread and pre-encoded JSON bodies of
real simulator rows; 1 and 4 client threads; per run 1,000 warm-up requests, then ``MEASURED`` timed
requests spread over the threads; p50/p99 per run, the table shows the median of ``RUNS`` runs.

    .venv/bin/python bench/edge_http.py

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import gc
import http.client
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE  # noqa: E402
from edge.telemetry import switch_off

switch_off()

import numpy as np  # noqa: E402

RUNS = 3
MEASURED = 6_000  # timed requests per run (all threads together)
WARMUP = 1_000
THREADS = (1, 4)


def _default_model() -> tuple[bytes, Any, np.ndarray, str]:
    """(model bytes, manifest, rows, description) of the default model (bench/default_model.py)."""
    from bench.default_model import describe, model_bytes, trained, write_release
    from edge.contracts.manifest import Manifest

    with tempfile.TemporaryDirectory() as scratch:
        folder = write_release(Path(scratch) / "release")
        manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
    return model_bytes(), manifest, trained()[1], describe()


def _server(ready: Any, stop: Any) -> None:
    """Child process: build the model, serve it, report (port, model text, rows) and wait for ``stop``."""
    from edge.drift import DriftMonitor
    from edge.health import HealthMonitor
    from edge.http_api import serve
    from edge.inference import Predictor
    from edge.metrics import Registry

    model, manifest, x, described = _default_model()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / MODEL_FILE).write_bytes(model)
        (folder / MANIFEST_FILE).write_text(manifest.to_json())
        predictor = Predictor.from_folder(folder)

    class Service:
        def __init__(self) -> None:
            self.registry = Registry()
            self.drift = DriftMonitor(manifest)
            self.health_monitor = HealthMonitor()
            self.predictions = self.registry.counter("predictions_total", "Predictions made", ("model_version",))

        def predict(self, features: Any, context: Any) -> dict[str, Any]:
            p = predictor.predict(features)
            self.drift.observe(features)
            self.health_monitor.prediction()
            self.predictions.inc(p.model_version)
            return {"label": p.label, "probabilities": p.probabilities, "model_version": p.model_version,
                    "event_id": p.event_id}

        def feedback(self, event_id: int, label: Any, features: Any) -> dict[str, Any]:
            return {}

        def health(self) -> dict[str, Any]:
            return {"status": self.health_monitor.status()}

        def metrics_text(self) -> str:
            return self.registry.render()

    gc.collect()
    gc.freeze()  # start-up objects (training data, sessions) leave the collector's scans, as a runner would do
    api = serve(Service())
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in x[:20_000]]
    ready.put((api.port, described, rows))
    stop.wait()
    api.close()


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


def _run(port: int, bodies: list[bytes], threads: int, seed: int) -> tuple[float, float, float]:
    per_thread = MEASURED // threads
    warm = WARMUP // threads
    rng = np.random.default_rng(seed)
    samples: list[float] = []
    start = threading.Barrier(threads + 1)
    workers = []
    for _ in range(threads):
        picks = rng.integers(0, len(bodies), warm + per_thread)
        mine = [bodies[i] for i in picks]
        workers.append(threading.Thread(target=_client, args=(port, mine, warm, samples, start)))
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    values = np.array(samples)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99)), len(values) / elapsed


def main() -> None:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_server, args=(ready, stop), daemon=True)
    started = time.perf_counter()
    server.start()
    port, described, rows = ready.get(timeout=300)
    startup_s = time.perf_counter() - started
    bodies = [json.dumps({"features": row}).encode() for row in rows]
    load = os.getloadavg()[0]
    results = {}
    try:
        for threads in THREADS:
            runs = [_run(port, bodies, threads, seed) for seed in range(RUNS)]
            results[threads] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
    finally:
        stop.set()
        server.join(timeout=10)
    print("Command: `.venv/bin/python bench/edge_http.py`")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; model: "
          f"{described}; server in its own process (model build + load {startup_s:.0f} s); "
          f"{MEASURED:,} timed requests per run after {WARMUP:,} warm-up, median of {RUNS} runs; "
          f"1-minute load average before the runs {load:.2f}")
    print()
    print("| client threads (1 keep-alive connection each) | p50 | p99 | requests/s |")
    print("|---|---|---|---|")
    for threads, (p50, p99, rate) in results.items():
        print(f"| {threads} | {p50:.3f} ms | {p99:.3f} ms | {rate:,.0f} |")


if __name__ == "__main__":
    main()
