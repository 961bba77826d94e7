"""What a label costs on the device (issues 14 and 15): ``Runner.feedback`` per call, beside its floor.

A label's event id is recorded (so a retry is answered the same and never spooled twice): in the spooled
row's own transaction (``synchronous=FULL``), or, for a label that spools no row, kept in memory and
written in batches of ``edge.spool.RECORD_BATCH`` without an fsync (issue 15: one transaction per label
made the demo a third slower). This measures, in
process (no HTTP: bench/edge_http.py has the API's own overhead), on a runner that is built but not
started (no loops competing), with a model trained on the simulator installed in its state dir:

- ``wrong``: a label that contradicts the prediction: the row is spooled with its record (one transaction);
- ``right``: a label that confirms it, nothing selected for upload (``random_rate = 0``): the record alone
  (in memory; every ``RECORD_BATCH``-th label writes a batch: the p99);
- ``repeat``: the same label again for an event already labelled: from memory or one indexed SELECT;
- floor: one ``INSERT`` + ``COMMIT`` in a WAL SQLite file with ``synchronous=FULL`` in the same folder
  (one durable write: the least a durable label can cost), timed right after each label of the case, so
  case and floor see the same moments of a shared disk.

Every label also adds its row to recent.db (the on-device validation set: one more transaction, with an
fsync per label before issue 15, without one since). ``ROWS`` labels per case, ``REPEATS`` runs; p50 and
p99 in microseconds, the median over runs. Run it against another checkout's ``edge`` with
``PYTHONPATH=<checkout>`` first (the ``repeat`` case is then a 404).

    .venv/bin/python bench/edge_feedback.py

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.pop(0)  # bench/ itself: its hub.py is not the hub package
sys.path.append(str(REPO))  # appended: PYTHONPATH=<other checkout> puts its edge first

from edge.telemetry import switch_off  # noqa: E402

switch_off()

import numpy as np  # noqa: E402

import edge  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.contracts.manifest import Manifest  # noqa: E402
from edge.contracts.release_layout import MANIFEST_FILE  # noqa: E402
from edge.runner import Runner  # noqa: E402
from edge.state import StateDir  # noqa: E402
from edgeloop.testkit.runner_world import runner_config, site_data, write_candidate  # noqa: E402

ROWS = 1000
REPEATS = 3


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


class _Floor:
    """One ``INSERT`` + ``COMMIT`` in a WAL SQLite file with ``synchronous=FULL``: one durable write."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT)")
        self.samples: list[float] = []

    def once(self, i: int) -> None:
        started = time.perf_counter()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (payload) VALUES (?)", (json.dumps({"event_id": i, "label": 1}),))
        self.db.execute("COMMIT")
        self.samples.append(time.perf_counter() - started)


def _runner_cases(base: Path, candidate: Path, run: int) -> dict[str, tuple[float, float]]:
    """Each case's p50/p99, and beside it the floor measured between its labels (same moments)."""
    config = load_config(runner_config(base / f"device-{run}", "http://127.0.0.1:9", "t" * 32, b"{}",
                                       upload={"random_rate": 0.0}), environ={})
    state = StateDir(config.state_dir)
    state.install(candidate)
    state.activate("1")
    runner = Runner(config)
    x, _ = site_data(ROWS, 51)
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in x]
    results: dict[str, tuple[float, float]] = {}
    try:
        labelled: list[tuple[int, int]] = []
        for case in ("wrong", "right", "repeat"):
            floor = _Floor(base / f"device-{run}" / f"floor-{case}.db")
            samples = []
            for i, row in enumerate(rows):
                if case == "repeat":
                    event_id, label = labelled[i]
                else:
                    prediction = runner.predict_one(row)
                    event_id = prediction.event_id
                    label = int(prediction.label) if case == "right" else 1 - int(prediction.label)
                    labelled.append((event_id, label))
                started = time.perf_counter()
                with contextlib.suppress(LookupError):  # a repeat before the record existed: a 404
                    runner.feedback(event_id, label)
                samples.append(time.perf_counter() - started)
                floor.once(i)
            floor.db.close()
            results[case] = _percentiles(samples)
            results[f"  floor ({case})"] = _percentiles(floor.samples)
    finally:
        runner.stop()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:  # the repository's disk, as a state dir would be
        base = Path(tmp)
        candidate = write_candidate(base / "candidate", 1)
        manifest = Manifest.from_json((candidate / MANIFEST_FILE).read_bytes())
        (candidate / MANIFEST_FILE).write_text(replace(manifest, version="1").to_json())
        runs = [_runner_cases(base, candidate, run) for run in range(REPEATS)]
    print(f"edge from {Path(edge.__file__).parent}; {ROWS} labels per case, median of {REPEATS} runs")
    for case in runs[0]:
        p50 = statistics.median(r[case][0] for r in runs)
        p99 = statistics.median(r[case][1] for r in runs)
        print(f"  {case:<16} p50 {p50:8.0f} us   p99 {p99:8.0f} us")


if __name__ == "__main__":
    main()
