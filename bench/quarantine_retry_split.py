"""Benchmark retrying quarantined batches and the split's class check, each beside its floor in the same run.

(a) Retry: ``--batches`` simulated batches of ``--batch-rows`` rows (20 devices) are ingested once with
    air_temp_k's range too tight, so every batch is quarantined; the range is fixed and
    ``ingest.main(..., retry_quarantined=True)`` (what ``edgeloop ingest --retry-quarantined`` runs) curates
    them from the quarantine's raw copies. Floor: the plain ingest of the same batches from the landing
    zone into an empty project with the fixed params (the same read, validation and commit, no retry
    bookkeeping). Each repeat starts from a fresh copy of the quarantined project. Data Docs off on
    both sides.
(b) Split class check: a Tennessee-Eastman-shaped curated set (52 features, 22 classes, ``--rows`` rows,
    classes 18-21 only in the newest 20% by time), written with the store's chunk writer. Timed: the
    split stage with ``split.strategy: time`` stopping with its one line (exit 2), and with
    ``stratified_random`` writing the split. Floor: a child that only reads the curated files into
    pandas and counts classes. Once, for scale: the train stage (params.yaml's model) on the
    stratified split, what the time strategy would have run before evaluate failed.

Every measurement is a fresh ``python`` child; its wall time and its CPU time (user + system, all
threads; steadier than wall time on a shared machine) include its imports on both sides. Medians over
``--repeat``. A benchmark, not a test: it asserts nothing.

    .venv/bin/python bench/quarantine_retry_split.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeloop.testkit.project import override, repo_params_raw  # noqa: E402

RETRY = """
import sys, logging
logging.disable(logging.WARNING)
from edge.telemetry import switch_off; switch_off()
from edge.contracts.layout import Paths
from flows.params import load_params
from flows.stages import ingest
paths = Paths.at(sys.argv[1])
summary = ingest.main(load_params(paths.params), paths, retry_quarantined=sys.argv[2] == "retry")
print("BENCH", summary["curated"], summary["quarantined"], summary["retried_curated"])
"""

READ_FLOOR = """
import sys
import pyarrow.parquet as pq
from pathlib import Path
files = sorted(Path(sys.argv[1], "data", "curated", "chunks").glob("*.parquet"))
frame = pq.read_table(files).to_pandas()
print("BENCH", frame["fault"].value_counts().to_dict() and len(frame))
"""


CPU: list[float] = []  # CPU seconds (user + system) of each child, in call order


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, str, int]:
    """Wall seconds, output and exit code of a fresh child; its CPU seconds go to ``CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, (done.stdout + done.stderr).strip(), done.returncode


def write_params(root: Path, raw: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def retry_part(work: Path, batches: int, batch_rows: int, repeat: int) -> dict[str, Any]:
    import simulator

    devices = 20
    fixed = override(repo_params_raw(), {"ingest.data_docs": False, "ingest.sources": ["data/uploads"],
                                         "simulate.rows_per_device": 0})
    tight = json.loads(json.dumps(fixed))
    tight["schema"]["features"][0]["max"] = 260.0
    base = work / "quarantined"
    simulator.write_fleet(base / "data" / "uploads", devices, batches // devices * batch_rows, batch_rows, 7,
                          "2026-01-01T00:00:00Z", 60.0)
    write_params(base, tight)
    _, out, code = run(["-c", RETRY, str(base), "plain"])
    assert code == 0 and out.endswith(f"BENCH 0 {batches} 0"), out
    write_params(base, fixed)
    retry: list[float] = []
    floor: list[float] = []
    retry_cpu: list[float] = []
    floor_cpu: list[float] = []
    for index in range(repeat):
        copy = work / f"retry-{index}"
        shutil.copytree(base, copy)
        seconds, out, code = run(["-c", RETRY, str(copy), "retry"])
        assert code == 0 and out.endswith(f"BENCH {batches} 0 {batches}"), out
        retry.append(seconds)
        retry_cpu.append(CPU[-1])
        fresh = work / f"floor-{index}"
        shutil.copytree(base / "data" / "uploads", fresh / "data" / "uploads")
        write_params(fresh, fixed)
        seconds, out, code = run(["-c", RETRY, str(fresh), "plain"])
        assert code == 0 and out.endswith(f"BENCH {batches} 0 0"), out
        floor.append(seconds)
        floor_cpu.append(CPU[-1])
        shutil.rmtree(copy)
        shutil.rmtree(fresh)
    return {"batches": batches, "rows": batches * batch_rows, "retry_s": retry, "floor_s": floor,
            "retry_median_s": statistics.median(retry), "floor_median_s": statistics.median(floor),
            "retry_cpu_median_s": statistics.median(retry_cpu), "floor_cpu_median_s": statistics.median(floor_cpu)}


def te_params() -> dict[str, Any]:
    """params.yaml with a TE-shaped schema: 52 features, 22 classes."""
    features = [{"name": f"xmeas_{i}", "dtype": "float", "min": -1e6, "max": 1e6} for i in range(1, 42)]
    features += [{"name": f"xmv_{i}", "dtype": "float", "min": -1e6, "max": 1e6} for i in range(1, 12)]
    raw = override(repo_params_raw(), {"simulate.rows_per_device": 0})
    raw["schema"] = {"features": features, "label": {"name": "fault", "classes": list(range(22))},
                     "event_id": "event_id", "device_id": "device_id", "event_time": "event_time"}
    return raw


def split_part(work: Path, rows: int, repeat: int) -> dict[str, Any]:
    import hashlib

    import numpy as np
    import pandas as pd

    from flows.ingest import store
    from flows.ingest.store import curated_frame
    from flows.params import parse_params

    root = work / "te"
    raw = te_params()
    params = parse_params(raw)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(rows, 52)), columns=params.schema.feature_names)
    cut = int(rows * 0.8)
    fault = rng.integers(0, 18, rows)
    fault[cut:] = rng.integers(0, 22, rows - cut)  # classes 18-21 only in the newest 20%
    for name in params.schema.feature_names[:6]:
        frame[name] += fault * 0.3  # learnable, so train does real work
    frame["fault"] = fault.astype("int64")
    frame["event_id"] = np.arange(rows, dtype="int64")
    frame["device_id"] = "te-plant"
    frame["event_time"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows) * 180, unit="s")
    per = 10_000
    entries = [("te-plant", hashlib.sha256(str(i).encode()).hexdigest(), min(per, rows - i * per), 0)
               for i in range(-(-rows // per))]
    store.write_chunk(root / "data" / "curated", curated_frame(frame, params.schema), entries,
                      np.arange(rows) // per)
    times: dict[str, list[float]] = {"time_stops": [], "stratified_random": [], "floor_read": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    line = ""
    for _ in range(repeat):
        write_params(root, raw)
        seconds, out, code = run(["-m", "flows", "split", "--root", str(root)])
        assert code == 2, out
        line = out.splitlines()[-1]
        times["time_stops"].append(seconds)
        cpu["time_stops"].append(CPU[-1])
        write_params(root, override(raw, {"split.strategy": "stratified_random"}))
        seconds, out, code = run(["-m", "flows", "split", "--root", str(root)])
        assert code == 0, out
        times["stratified_random"].append(seconds)
        cpu["stratified_random"].append(CPU[-1])
        seconds, out, code = run(["-c", READ_FLOOR, str(root)])
        assert code == 0, out
        times["floor_read"].append(seconds)
        cpu["floor_read"].append(CPU[-1])
    seconds, out, code = run(["-m", "flows", "train", "--root", str(root)], env={"OMP_NUM_THREADS": "1"})
    assert code == 0, out
    return {"rows": rows, "line": line, "train_once_s": seconds, "train_once_cpu_s": CPU[-1],
            **{f"{k}_median_s": statistics.median(v) for k, v in times.items()},
            **{f"{k}_cpu_median_s": statistics.median(v) for k, v in cpu.items()}, "runs": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-retry-split-"))
    try:
        result: dict[str, Any] = {}
        if args.part in ("a", "both"):
            result["retry"] = retry_part(work, args.batches, args.batch_rows, args.repeat)
        if args.part in ("b", "both"):
            result["split"] = split_part(work, args.rows, args.repeat)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
