"""Garbage-collector pauses of a server process, for bench/hub.py (never imported by the project itself).

bench/hub.py puts this folder on PYTHONPATH of the servers it starts (the hub and the floor) and names a
folder in EDGELOOP_BENCH_GC_DIR; Python imports ``sitecustomize`` at start-up in every process, uvicorn
workers included. A ``gc.callbacks`` hook times each collection (perf_counter between its "start" and
"stop") and a daemon thread appends, every half second, one JSON line per process to
``<folder>/<pid>.jsonl``: the wall time and, per generation, how many collections ran in that interval,
their total and their longest pause in ms. Intervals with no collection are skipped. SIGUSR1 asks for
one full collection now (``gc.collect()``, on the main thread, between two bytecodes of whatever it was
doing) and appends how long it took (``forced_full_ms``): what any full collection would stall the
process for at that moment. Without EDGELOOP_BENCH_GC_DIR it does nothing.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time

FOLDER = os.environ.get("EDGELOOP_BENCH_GC_DIR")
INTERVAL_S = 0.5


def _install(folder: str) -> None:
    started = [0.0]
    stats = [[0, 0.0, 0.0] for _ in range(3)]  # per generation: count, total ms, max ms
    lock = threading.Lock()

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        entry = stats[info["generation"]]
        with lock:
            entry[0] += 1
            entry[1] += ms
            entry[2] = max(entry[2], ms)

    def dump() -> None:
        path = os.path.join(folder, f"{os.getpid()}.jsonl")
        while True:
            time.sleep(INTERVAL_S)
            with lock:
                snapshot = [list(entry) for entry in stats]
                for entry in stats:
                    entry[:] = [0, 0.0, 0.0]
            if any(entry[0] for entry in snapshot):
                line = {"t": time.time(), "count": [e[0] for e in snapshot],
                        "total_ms": [round(e[1], 3) for e in snapshot], "max_ms": [round(e[2], 3) for e in snapshot]}
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line) + "\n")

    def forced(_signum: int, _frame: object) -> None:
        started_at = time.perf_counter()
        gc.collect()
        ms = (time.perf_counter() - started_at) * 1000
        with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"t": time.time(), "forced_full_ms": round(ms, 3)}) + "\n")

    gc.callbacks.append(timed)
    threading.Thread(target=dump, name="gc-probe", daemon=True).start()
    signal.signal(signal.SIGUSR1, forced)


if FOLDER:
    _install(FOLDER)
