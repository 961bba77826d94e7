"""Benchmark bulk ingest, each number beside its floor measured in the same run.

(a) Many small batches: ``--batches`` Parquet batches of ``--batch-rows`` rows (default 10,000 x 100,
    100 devices, written by the plant simulator) ingested from an empty project by the ingest stage
    (``flows.stages.ingest.main``, Data Docs on, as params.yaml has it). Floor: a plain script that
    reads the same files (``pyarrow.parquet.read_table`` of the file list), concatenates them, runs ONE
    Great Expectations validation with the same expectations (the per-batch suite, every device
    allowed) and writes one Parquet file. No bookkeeping, no quarantine, no Data Docs.
(b) 1M rows in 200 batches (20 devices, 5,000-row batches, as bench/pipeline.py): the stage functions
    ingest -> split -> train -> export -> evaluate -> gate, called directly in one process (no Prefect;
    DVC and Prefect drive the same functions). Floor: a plain script doing one GX validation, the same
    time split, a fit with the same model params, the ONNX export and one Evidently drift report on the
    same rows (at most ``evaluate.max_rows`` per side, as the evaluate stage samples).

Every measurement runs in a fresh child process from an empty project folder. Great Expectations and
pyarrow are imported before the timer in both the stage child and the floor child (the other libraries
are imported by the work itself, in the same order on both sides), so "work" compares work; the child's
whole wall time (imports included) and the work's CPU time (all threads: less sensitive than wall time
to other load on a shared machine) are reported too. Medians over ``--repeat`` runs. A benchmark, not a test: it asserts
nothing and is never collected by pytest.

    .venv/bin/python bench/ingest_bulk.py --part a --repeat 3
    .venv/bin/python bench/ingest_bulk.py --part b --b-repeat 3 --omp-threads 1
"""

from __future__ import annotations

import argparse
import json
import os
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

PRELUDE = """
import json, resource, sys, time
started = time.perf_counter()
from edge.telemetry import switch_off
switch_off()
import logging
logging.disable(logging.WARNING)
import great_expectations, pyarrow.parquet
from great_expectations.data_context.types.base import ProgressBarsConfig
from flows.params import load_params
from edge.contracts.layout import Paths
imported = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu_at_import = usage.ru_utime + usage.ru_stime

def done(**extra):
    end = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("BENCH " + json.dumps({"import_s": imported - started, "work_s": end - imported,
                                 "process_s": end - started, "peak_mib": usage.ru_maxrss / 1024,
                                 "work_cpu_s": usage.ru_utime + usage.ru_stime - cpu_at_import, **extra}))
"""

INGEST = PRELUDE + """
from flows.stages import ingest
paths = Paths.at(sys.argv[1])
summary = ingest.main(load_params(paths.params), paths)
done(curated=summary["new_curated"], quarantined=summary["new_quarantined"], rows=summary["new_rows"],
     chunks=summary["chunks"])
"""

FLOOR_INGEST = PRELUDE + """
import pathlib
import great_expectations as gx
from flows.ingest.suite import DEVICE_PARAMETER, MAX_TIME_PARAMETER, MIN_TIME_PARAMETER, OPTIONAL_CHECKED
from flows.ingest.suite import build_expectations
import datetime as dt
paths = Paths.at(sys.argv[1])
params = load_params(paths.params)
files = sorted(str(p) for p in pathlib.Path(params.ingest.sources[0]).glob("*/*.parquet"))
frame = pyarrow.parquet.read_table(files).to_pandas()
context = gx.get_context(mode="ephemeral")
context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
asset = context.data_sources.add_pandas("uploads").add_dataframe_asset("batch")
batch = asset.add_batch_definition_whole_dataframe("whole")
present = [c for c in OPTIONAL_CHECKED if c in frame.columns]
suite = context.suites.add(gx.ExpectationSuite(name="floor"))
for expectation in build_expectations(params.schema, params.ingest, present):
    suite.add_expectation(expectation)
definition = context.validation_definitions.add(gx.ValidationDefinition(name="floor", data=batch, suite=suite))
checked = [c for c in frame.columns if c in {*params.schema.column_names, *OPTIONAL_CHECKED}]
now = dt.datetime.now(dt.UTC)
result = definition.run(batch_parameters={"dataframe": frame[checked]}, result_format="SUMMARY",
                        expectation_parameters={DEVICE_PARAMETER: sorted(frame[params.schema.device_id].unique()),
                                                MIN_TIME_PARAMETER: params.ingest.earliest_event_time(),
                                                MAX_TIME_PARAMETER: now + dt.timedelta(hours=1)})
paths.curated.mkdir(parents=True, exist_ok=True)
frame.to_parquet(paths.curated / "all.parquet", index=False)
done(success=bool(result.success), rows=len(frame), files=len(files))
"""

PIPELINE = PRELUDE + """
from flows.stages import run_stage
paths = Paths.at(sys.argv[1])
params = load_params(paths.params)
seconds = {}
results = {}
for stage in ("ingest", "split", "train", "export", "evaluate", "gate"):
    t = time.perf_counter()
    results[stage] = run_stage(stage, params, paths)
    seconds[stage] = time.perf_counter() - t
done(stages=seconds, passed=bool(results["gate"].get("passed")), rows=results["ingest"]["new_rows"])
"""

FLOOR_PIPELINE = PRELUDE + """
import datetime as dt, pathlib
import numpy as np
import great_expectations as gx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from flows.ingest.suite import DEVICE_PARAMETER, MAX_TIME_PARAMETER, MIN_TIME_PARAMETER, OPTIONAL_CHECKED
from flows.ingest.suite import build_expectations
from flows.stages.train import build_estimator
paths = Paths.at(sys.argv[1])
params = load_params(paths.params)
schema = params.schema
seconds = {}
t = time.perf_counter()
files = sorted(str(p) for p in pathlib.Path(params.ingest.sources[0]).glob("*/*.parquet"))
frame = pyarrow.parquet.read_table(files).to_pandas()
context = gx.get_context(mode="ephemeral")
context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
asset = context.data_sources.add_pandas("uploads").add_dataframe_asset("batch")
batch = asset.add_batch_definition_whole_dataframe("whole")
present = [c for c in OPTIONAL_CHECKED if c in frame.columns]
suite = context.suites.add(gx.ExpectationSuite(name="floor"))
for expectation in build_expectations(schema, params.ingest, present):
    suite.add_expectation(expectation)
definition = context.validation_definitions.add(gx.ValidationDefinition(name="floor", data=batch, suite=suite))
checked = [c for c in frame.columns if c in {*schema.column_names, *OPTIONAL_CHECKED}]
result = definition.run(batch_parameters={"dataframe": frame[checked]}, result_format="SUMMARY",
                        expectation_parameters={DEVICE_PARAMETER: sorted(frame[schema.device_id].unique()),
                                                MIN_TIME_PARAMETER: params.ingest.earliest_event_time(),
                                                MAX_TIME_PARAMETER: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)})
seconds["validate"] = time.perf_counter() - t
t = time.perf_counter()
frame = frame.sort_values([schema.event_time, schema.device_id, schema.event_id], kind="stable")
cut = len(frame) - round(len(frame) * params.split.holdout_fraction)
train, holdout = frame.iloc[:cut], frame.iloc[cut:]
classes = {c: i for i, c in enumerate(schema.label.classes)}
x = train[schema.feature_names].to_numpy(dtype=np.float32)
y = train[schema.label.name].map(classes).to_numpy()
model = build_estimator(params.train).fit(x, y)
seconds["fit"] = time.perf_counter() - t
t = time.perf_counter()
onnx_model = to_onnx(model, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                     options={"zipmap": False}, target_opset=params.export.opset)
(paths.root / "model.onnx").write_bytes(onnx_model.SerializeToString())
seconds["export"] = time.perf_counter() - t
t = time.perf_counter()
cap = params.evaluate.max_rows
reference = train.sample(min(cap, len(train)), random_state=0)[schema.feature_names].reset_index(drop=True)
current = holdout.sample(min(cap, len(holdout)), random_state=0)[schema.feature_names].reset_index(drop=True)
definition = DataDefinition(numerical_columns=schema.feature_names)
report = Report([DataDriftPreset(columns=schema.feature_names, method=params.evaluate.drift_method,
                                 threshold=params.evaluate.drift_threshold)])
snapshot = report.run(current_data=Dataset.from_pandas(current, data_definition=definition),
                      reference_data=Dataset.from_pandas(reference, data_definition=definition))
(paths.root / "drift.html").write_text(snapshot.get_html_str(as_iframe=False))
seconds["drift"] = time.perf_counter() - t
done(stages=seconds, success=bool(result.success), rows=len(frame))
"""


def make_project(root: Path, landing: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ingest"]["sources"] = [str(landing)]
    raw["simulate"]["rows_per_device"] = 0
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


OMP_THREADS: str | None = None  # --omp-threads: OMP_NUM_THREADS for every child (ours and floor alike)


def child(code: str, root: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1", "ORT_DISABLE_TELEMETRY": "1"}
    if OMP_THREADS is not None:
        env["OMP_NUM_THREADS"] = OMP_THREADS
    load = os.getloadavg()[0]
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(root)], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr[-4000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")][-1]
    result: dict[str, Any] = json.loads(line[len("BENCH "):])
    result["wall_s"] = wall
    result["load_1min"] = [load, os.getloadavg()[0]]  # other work on the machine, before and after
    return result


def land(landing: Path, devices: int, rows: int, batch_rows: int) -> float:
    from simulator.fleet import write_fleet

    t = time.perf_counter()
    write_fleet(landing, devices, rows // devices, batch_rows, 7, "2026-01-01T00:00:00Z", 60)
    return time.perf_counter() - t


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def part(name: str, devices: int, rows: int, batch_rows: int, repeat: int, ours: str, floor: str,
         work: Path) -> dict[str, Any]:
    landing = work / f"landing-{name}"
    seconds = land(landing, devices, rows, batch_rows)
    batches = sum(1 for _ in landing.glob("*/*.parquet"))
    print(f"({name}) landed {batches} batches of {batch_rows} rows in {seconds:.1f} s", file=sys.stderr, flush=True)
    mine, base = [], []
    for i in range(repeat):
        for code, out, label in ((ours, mine, "stages"), (floor, base, "floor")):
            project = make_project(work / f"{name}-{label}-{i}", landing)
            out.append(child(code, project))
            print(f"({name}) run {i + 1}/{repeat} {label}: work {out[-1]['work_s']:.1f} s", file=sys.stderr, flush=True)
            shutil.rmtree(project, ignore_errors=True)
    summary: dict[str, Any] = {"batches": batches, "batch_rows": batch_rows, "rows": rows, "runs": repeat,
                               "ours": mine, "floor": base}
    for who, runs in (("ours", mine), ("floor", base)):
        summary[f"{who}_work_s"] = med(runs, "work_s")
        summary[f"{who}_process_s"] = med(runs, "process_s")
        summary[f"{who}_peak_mib"] = med(runs, "peak_mib")
        summary[f"{who}_work_cpu_s"] = med(runs, "work_cpu_s")
        summary[f"{who}_work_min_s"] = min(r["work_s"] for r in runs)
        if "stages" in runs[0]:
            summary[f"{who}_stages_s"] = {k: statistics.median(r["stages"][k] for r in runs) for k in runs[0]["stages"]}
    summary["ratio_work"] = summary["ours_work_s"] / summary["floor_work_s"]
    summary["ratio_process"] = summary["ours_process_s"] / summary["floor_process_s"]
    summary["ratio_cpu"] = summary["ours_work_cpu_s"] / summary["floor_work_cpu_s"]
    shutil.rmtree(landing, ignore_errors=True)
    return summary


def report(name: str, s: dict[str, Any]) -> str:
    lines = [f"({name}) {s['batches']:,} batches x {s['batch_rows']:,} rows, median of {s['runs']} run(s)", "",
             "| | ours | floor | ratio |", "|---|---:|---:|---:|",
             f"| work s (after imports) | {s['ours_work_s']:.1f} | {s['floor_work_s']:.1f} | {s['ratio_work']:.2f} |",
             f"| process s (imports included) | {s['ours_process_s']:.1f} | {s['floor_process_s']:.1f} | "
             f"{s['ratio_process']:.2f} |",
             f"| work CPU s | {s['ours_work_cpu_s']:.1f} | {s['floor_work_cpu_s']:.1f} | {s['ratio_cpu']:.2f} |",
             f"| best work s | {s['ours_work_min_s']:.1f} | {s['floor_work_min_s']:.1f} | "
             f"{s['ours_work_min_s'] / s['floor_work_min_s']:.2f} |",
             f"| peak RSS MiB | {s['ours_peak_mib']:.0f} | {s['floor_peak_mib']:.0f} | |"]
    loads = [x for who in ("ours", "floor") for r in s[who] for x in r["load_1min"]]
    lines.append(f"\nOMP_NUM_THREADS: {OMP_THREADS or 'library default'}")
    lines.append(f"\nload average (1 min) around runs: {min(loads):.1f} to {max(loads):.1f}, {os.cpu_count()} cores")
    for who in ("ours", "floor"):
        if f"{who}_stages_s" in s:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in s[f"{who}_stages_s"].items())
            lines.append(f"\n{who} per step (s): {parts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--batches", type=int, default=10_000, help="(a) batches")
    parser.add_argument("--batch-rows", type=int, default=100, help="(a) rows per batch")
    parser.add_argument("--repeat", type=int, default=3, help="(a) runs (median reported)")
    parser.add_argument("--b-rows", type=int, default=1_000_000, help="(b) rows")
    parser.add_argument("--b-repeat", type=int, default=1, help="(b) runs")
    parser.add_argument("--omp-threads", help="OMP_NUM_THREADS for both sides (HistGradientBoosting's OpenMP "
                        "threads; on a busy 2-core machine 2 threads can fit 5-10x slower than 1)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    global OMP_THREADS
    OMP_THREADS = args.omp_threads
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgeloop-ingest-bulk-"))
    try:
        if args.part in ("a", "both"):
            devices = 100
            s = part("a", devices, args.batches * args.batch_rows, args.batch_rows, args.repeat, INGEST,
                     FLOOR_INGEST, work)
            (args.out / "ingest_bulk-a.json").write_text(json.dumps(s, indent=2))
            print(report("a", s), flush=True)
        if args.part in ("b", "both"):
            s = part("b", 20, args.b_rows, 5000, args.b_repeat, PIPELINE, FLOOR_PIPELINE, work)
            (args.out / "ingest_bulk-b.json").write_text(json.dumps(s, indent=2))
            print(report("b", s), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
