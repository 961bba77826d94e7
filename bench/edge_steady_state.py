"""Edge runner steady state: ``Runner.predict_one`` over 1,000,000 calls beside raw onnxruntime, memory and GC.

One fresh process per run (``--child``), started by this script, holds an in-process ``edge.runner.Runner``
with the DEFAULT settings (``feedback.pending_events`` 100,000, drift window 5,000, heartbeat and polls
every 60 s, the local API on; only the API port is ephemeral), the default model (bench/default_model.py)
installed as its active release, and no hub reachable (polls and heartbeats fail at once, as in an
outage: the runner keeps serving). It is built and started as ``edge-runner run`` does it (``gc.collect();
gc.freeze()`` in between, see edge/cli.py), and measured once the first poll and heartbeat are over, in
ten rounds (the next poll and heartbeat are 60 s away: none falls inside them):

- 100,000 ``Runner.predict_one(row)`` calls, one thread, each timed alone with ``time.perf_counter_ns``: the
  row check against the manifest, the model call, the decision rule, the answer, and keeping the
  prediction for its label in the pending ring (which is also the drift window) with its counters.
  Rows are 5,000 simulator rows as an HTTP client's JSON gives them (lists, None for a missing value),
  cycled; no label is ever sent, so after 100,000 calls every new prediction evicts the oldest one;
- 100,000 raw onnxruntime calls on the same rows, the floor: ``session.run([probabilities], {input: x})``
  on a session opened with the runner's options (CPU, one intra-op and one inter-op thread), ``x`` the
  row as a prebuilt float32 ``[1, features]`` array; timed the same way;
- the process's RSS (VmRSS) after the round.

Then a full ``gc.collect()`` with the pending ring full (median of 5), with the start-up objects frozen and
again after ``gc.unfreeze()`` (an in-process runner, as the demo's, does not freeze), the number of objects
the collector then tracks, and the garbage collections that ran during the million calls. Latencies go
into histograms of 10 ns bins (exact values above 200 µs), so the timing itself takes no memory per call.
RSS is the whole process's; the benchmark's own part (the rows, the histograms and the raw-onnxruntime
session) is measured as it is allocated and shown beside it.

    .venv/bin/python bench/edge_steady_state.py [--runs 3] [--calls 1000000]

Prints one line per run and a table of medians. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE  # noqa: E402
from edge.telemetry import switch_off  # noqa: E402

switch_off()

import gc  # noqa: E402

import numpy as np  # noqa: E402

ROUND = 100_000
ROWS = 5_000
BIN_NS = 10  # histogram resolution
BINS = 20_000  # up to 200 µs; slower calls are kept exactly


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(folder: Path) -> Path:
    """A device folder: a state dir with the default model active (version 1), a trusted root, a token,
    a config with the default settings, and ``rows.npy`` (the simulator rows the runs send)."""
    from dataclasses import replace

    from bench.default_model import model_bytes, trained, write_release
    from edge.contracts.manifest import Manifest
    from edge.state import StateDir
    from edgeloop.testkit.releases import release_config
    from flows.releases import init_repository

    release = write_release(folder / "candidate")
    manifest = Manifest.from_json((release / MANIFEST_FILE).read_bytes())
    staged = folder / "staged" / "1"
    staged.mkdir(parents=True)
    (staged / MODEL_FILE).write_bytes(model_bytes())
    (staged / MANIFEST_FILE).write_text(replace(manifest, version="1").to_json())
    state = StateDir(folder / "state")
    state.recover()
    state.activate(state.install(staged).name)
    root = init_repository(release_config(folder / "repository"))
    (folder / "token").write_text("elt_" + "0" * 16 + "_" + "A" * 43 + "\n")
    os.chmod(folder / "token", 0o600)
    (folder / "runner.toml").write_text(
        f'device_id = "bench-1"\nstate_dir = "state"\n[hub]\nurl = "http://127.0.0.1:{_closed_port()}"\n'
        f'token_file = "token"\n[releases]\ntrusted_root = "{root}"\n[api]\nport = 0\n')
    np.save(folder / "rows.npy", trained()[1][-ROWS:])
    return folder


def _floor_session(model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _full_gc_ms() -> float:
    """A full collection's time, median of 5."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


class Latencies:
    """Call durations in 10 ns bins up to 200 µs, slower ones exactly: percentiles without a sample per call."""

    def __init__(self) -> None:
        self.bins = array.array("q", bytes(8 * BINS))
        self.slow: list[int] = []

    def add(self, ns: int) -> None:
        if ns < BIN_NS * BINS:
            self.bins[ns // BIN_NS] += 1
        else:
            self.slow.append(ns)

    def summary(self) -> dict[str, float]:
        counts = np.concatenate([np.frombuffer(self.bins, dtype=np.int64), np.ones(len(self.slow), dtype=np.int64)])
        values = np.concatenate([(np.arange(BINS) + 0.5) * BIN_NS, np.sort(np.array(self.slow, dtype=np.float64))])
        cumulative = np.cumsum(counts)
        total = int(cumulative[-1])

        def at(q: float) -> float:
            return float(values[np.searchsorted(cumulative, q * total, side="left")]) / 1000.0  # µs

        largest = max(self.slow) if self.slow else int(np.flatnonzero(counts[:BINS])[-1] + 1) * BIN_NS
        return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": largest / 1000.0, "calls": total}


def child(folder: Path, calls: int) -> dict[str, Any]:
    """One run in this process (see the module docstring); returns its numbers. Imports only what the
    runner does (edge, numpy, onnxruntime), so the RSS is a runner's and the benchmark's own."""
    import onnxruntime  # noqa: F401  # the runner's as well: not the benchmark's own memory

    from edge.config import load_config
    from edge.runner import Runner

    before = rss_mb()
    rows_x = np.load(folder / "rows.npy")
    rows = [[None if v != v else v for v in row] for row in rows_x.tolist()]
    matrices = [np.array([row], dtype=np.float32) for row in rows_x]
    ours, floor = Latencies(), Latencies()
    own = rss_mb() - before
    for stale in ("spool.db", "spool.db-wal", "spool.db-shm", "recent.db", "recent.db-wal", "recent.db-shm",
                  "status.json"):
        (folder / "state" / stale).unlink(missing_ok=True)  # every run starts from the same state
    runner = Runner(load_config(folder / "runner.toml", environ={}))
    gc.collect()
    gc.freeze()  # as `edge-runner run` does before start (edge/cli.py)
    runner.start()
    try:
        while runner.updates.last_poll is None or not (folder / "state" / "status.json").exists():
            time.sleep(0.01)  # the start-up poll and heartbeat are done (they fail: no hub): steady state from here
        before = rss_mb()  # the floor's session after the runner's: onnxruntime's own start-up is the runner's
        session = _floor_session((folder / "state" / "current" / MODEL_FILE).read_bytes())
        feed, outputs = session.get_inputs()[0].name, [session.get_outputs()[1].name]
        session.run(outputs, {feed: matrices[0]})
        own += rss_mb() - before
        return _measure(runner, session, feed, outputs, rows, matrices, ours, floor, calls) | {"bench_mb": own}
    finally:
        runner.stop()


def _measure(runner: Any, session: Any, feed: str, outputs: list[str], rows: list[list[float | None]],
             matrices: list[np.ndarray], ours: Latencies, floor: Latencies, calls: int) -> dict[str, Any]:
    clock, predict, run = time.perf_counter_ns, runner.predict_one, session.run
    for row, x in zip(rows, matrices, strict=True):  # warm-up: every row once, both ways
        predict(row)
        run(outputs, {feed: x})
    rss = [rss_mb()]
    collections = sum(s["collections"] for s in gc.get_stats())
    started = time.perf_counter()
    for first in range(0, calls, ROUND):
        for i in range(first, min(first + ROUND, calls)):
            row = rows[i % ROWS]
            t0 = clock()
            predict(row)
            ours.add(clock() - t0)
        for i in range(first, min(first + ROUND, calls)):
            x = matrices[i % ROWS]
            t0 = clock()
            run(outputs, {feed: x})
            floor.add(clock() - t0)
        rss.append(rss_mb())
    seconds = time.perf_counter() - started
    collected = sum(s["collections"] for s in gc.get_stats()) - collections
    frozen = _full_gc_ms()
    gc.unfreeze()  # and as an in-process runner without the daemon's freeze (the demo's) would collect
    unfrozen = _full_gc_ms()
    report = runner.state_report()
    return {"ours": ours.summary(), "floor": floor.summary(), "rss_mb": rss, "seconds": seconds,
            "gc_runs_during": collected, "full_gc_ms": frozen, "full_gc_unfrozen_ms": unfrozen,
            "gc_tracked_objects": len(gc.get_objects()), "pending": len(runner.pending),
            "pending_dropped": report["counters"]["pending_dropped"], "predictions": report["counters"]["predictions"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a prepared folder: one run, here
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.calls)))
        return
    scratch = tempfile.TemporaryDirectory()
    folder = prepare(Path(scratch.name))
    load = os.getloadavg()[0]
    results = []
    for run in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--child", str(folder), "--calls", str(args.calls)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        o, f = result["ours"], result["floor"]
        print(f"run {run + 1}: predict_one p50 {o['p50']:.2f} p99 {o['p99']:.2f} p99.9 {o['p999']:.2f} max "
              f"{o['max']:.0f} µs | floor p50 {f['p50']:.2f} p99 {f['p99']:.2f} p99.9 {f['p999']:.2f} max "
              f"{f['max']:.0f} µs | RSS {result['rss_mb'][0]:.0f} -> {result['rss_mb'][-1]:.0f} MB | full GC "
              f"{result['full_gc_ms']:.1f} ms | GC runs during {result['gc_runs_during']}", file=sys.stderr)
    _table(results, args.calls, load)
    scratch.cleanup()


def _median(results: list[dict[str, Any]], *path: str | int) -> float:
    values = []
    for result in results:
        value: Any = result
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def _table(results: list[dict[str, Any]], calls: int, load: float) -> None:
    from bench.default_model import describe

    print(f"Command: `.venv/bin/python bench/edge_steady_state.py` ({len(results)} runs, {calls:,} calls each)")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {describe()}; "
          f"1-minute load average before the runs {load:.2f}")
    print()
    print("| measure (median of the runs) | `Runner.predict_one` | raw onnxruntime `session.run` (floor) |")
    print("|---|---:|---:|")
    for key, name in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")):
        print(f"| latency {name} over {calls:,} calls | {_median(results, 'ours', key):.2f} µs | "
              f"{_median(results, 'floor', key):.2f} µs |")
    rounds = len(results[0]["rss_mb"])
    rss = " / ".join(f"{_median(results, 'rss_mb', i):.0f}" for i in range(rounds))
    print(f"| RSS after start, then after every {ROUND:,} calls (MB) | {rss} | |")
    print(f"| of which the benchmark's own (rows, histograms, the raw-onnxruntime session) | "
          f"{_median(results, 'bench_mb'):.0f} MB | |")
    print(f"| full `gc.collect()` with the pending ring full, start-up objects frozen as `edge-runner run` does / "
          f"not frozen | {_median(results, 'full_gc_ms'):.2f} / {_median(results, 'full_gc_unfrozen_ms'):.1f} ms | |")
    print(f"| objects the collector tracks when nothing is frozen | {_median(results, 'gc_tracked_objects'):,.0f} | |")
    print(f"| garbage collections during the {calls:,} calls | {_median(results, 'gc_runs_during'):.0f} | |")
    print(f"| predictions waiting / dropped unlabelled | {_median(results, 'pending'):,.0f} / "
          f"{_median(results, 'pending_dropped'):,.0f} | |")


if __name__ == "__main__":
    main()
