"""Benchmark: your own 52-feature history to a passed gate with the user's commands, beside a plain-script floor.

Generates locally (no download) a Tennessee-Eastman-shaped export: 52 numeric sensor columns named as in
TE (``xmeas_1``..``xmeas_41``, ``xmv_1``..``xmv_11``) around TE-like operating values, autocorrelated
noise, runs of 21 simulated faults (each shifts, ramps or shakes its own few sensors) between runs of
normal operation (class 0), ``--rows`` rows (default 250,000), no id/time/device columns, one CSV.

Then, per repeat, in a fresh ``git clone`` of this repository (the user's project), the user's path as
real subprocesses, each timed (wall, and CPU of the process tree):

    edgeloop import export.csv --device te-plant --start 2025-01-01T00:00:00Z --period-s 180
    edgeloop schema infer data/uploads --label fault --write
    (review params.yaml: simulate.rows_per_device 0, ingest.sources [data/uploads], split.strategy
     stratified_random when this checkout has it, else the time split: every class has runs in the first half)
    dvc repro

and checks the gate passed and 0 batches were quarantined. Floor, in a fresh process on the same CSV and
the same inferred schema: read the CSV (pyarrow), add the id/time/device columns, ONE Great Expectations
validation with the same expectations, the same split, a fit with the same model params, the ONNX export,
and one Evidently drift report (the floor's drift line is shown apart: the brief's floor is without it).
``OMP_NUM_THREADS`` is the same on both sides (``--omp-threads``, default 1: a shared 2-core machine).
Medians over ``--repeat`` runs. A benchmark, not a test: never collected by pytest.

    OMP_NUM_THREADS=1 .venv/bin/python bench/own_data.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
START = "2025-01-01T00:00:00Z"
PERIOD_S = 180
CLASSES = 22  # normal (0) and faults 1..21

# TE-like operating values of the 22 continuous measurements and the 11 manipulated variables
XMEAS = [0.25, 3664.0, 4509.0, 9.35, 26.9, 42.3, 2705.0, 75.0, 120.4, 0.337, 80.1, 50.0, 2634.0, 25.2, 50.0,
         3102.0, 22.9, 65.7, 230.3, 341.4, 94.6, 77.3]
XMV = [63.1, 53.3, 26.3, 60.9, 22.2, 40.1, 38.1, 46.5, 47.4, 41.1, 18.1]


def te_export(rows: int, seed: int = 13) -> dict[str, np.ndarray]:
    """Columns of a TE-shaped export: 41 xmeas, 11 xmv, and ``fault`` (0 normal, 1..21 fault runs)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    analyzers = rng.uniform(0.5, 50.0, 19)  # xmeas_23..41: mole-% analyzer readings
    base = np.array([*XMEAS, *analyzers, *XMV])
    names = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
    sigma = 0.01 * np.abs(base) + 0.01
    noise = lfilter([1.0], [1.0, -0.8], rng.standard_normal((rows, len(base))), axis=0) * 0.6
    values = base + noise * sigma
    # the timeline: normal runs between fault runs; every fault gets runs in the first half of the history
    fault = np.zeros(rows, dtype=np.int64)
    position = 0
    order = list(rng.permutation(np.arange(1, CLASSES)))
    while position < rows:
        position += int(rng.integers(300, 900))  # normal operation
        if not order:
            order = list(rng.permutation(np.arange(1, CLASSES)))
        kind, length = int(order.pop()), int(rng.integers(150, 450))
        fault[position:position + length] = kind
        position += length
    for kind in range(1, CLASSES):
        signature = np.random.default_rng(kind)
        sensors = signature.choice(len(base), size=int(signature.integers(3, 7)), replace=False)
        rows_of = np.flatnonzero(fault == kind)
        if not len(rows_of):
            continue
        effect = ("step", "ramp", "shake")[kind % 3]
        for sensor in sensors:
            size = signature.choice([-1.0, 1.0]) * signature.uniform(3.0, 6.0) * sigma[sensor]
            if effect == "step":
                values[rows_of, sensor] += size
            elif effect == "ramp":  # grows within each run: starts at a third of the size
                start = np.r_[True, np.diff(rows_of) > 1]
                age = np.arange(len(rows_of)) - np.maximum.accumulate(np.where(start, np.arange(len(rows_of)), 0))
                values[rows_of, sensor] += size * (1 + 2 * np.minimum(age / 100, 1)) / 3
            else:
                values[rows_of, sensor] += noise[rows_of, sensor] * sigma[sensor] * 5
    columns = {name: np.round(values[:, i], 4) for i, name in enumerate(names)}
    columns["fault"] = fault
    return columns


def write_export(path: Path, rows: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = te_export(rows)
    pacsv.write_csv(pa.table(columns), path)
    counts = np.bincount(columns["fault"], minlength=CLASSES)
    return {"rows": rows, "bytes": path.stat().st_size, "classes": int((counts > 0).sum()),
            "normal_share": round(float(counts[0] / rows), 3), "min_class_rows": int(counts.min())}


# --- the user's path --------------------------------------------------------------------------------------

def env(omp: int) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "OMP_NUM_THREADS": str(omp), "PREFECT_LOGGING_LEVEL": "WARNING"}


def timed(cmd: list[str], cwd: Path, environment: dict[str, str]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": done.stdout, "stderr": done.stderr}


def review_params(project: Path, strategy: str) -> list[str]:
    """The edits a user makes while reviewing params.yaml (text edits, comments kept)."""
    path = project / "params.yaml"
    text = path.read_text()
    edits = [("rows_per_device: 6000", "rows_per_device: 0"),
             ("sources: [data/uploads, data/simulated]", "sources: [data/uploads]")]
    if strategy != "time":
        edits.append(("  strategy: time", f"  strategy: {strategy}"))
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"params.yaml of the clone has no {old!r}: update bench/own_data.py")
        text = text.replace(old, new, 1)
    path.write_text(text)
    return [new.strip() for _, new in edits]


def user_path(export: Path, work: Path, omp: int) -> dict[str, Any]:
    project = work / "project"
    subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
    strategy = "stratified_random" if "stratified_random" in (project / "flows/params.py").read_text() else "time"
    environment = env(omp)
    edgeloop = [sys.executable, "-m", "edgeloop.cli"]  # `edgeloop`, from the clone's code
    steps: list[tuple[str, list[str]]] = [
        (f"edgeloop import {export.name} --device te-plant --start {START} --period-s {PERIOD_S}",
         [*edgeloop, "import", str(export), "--device", "te-plant", "--start", START, "--period-s", str(PERIOD_S)]),
        ("edgeloop schema infer data/uploads --label fault --write",
         [*edgeloop, "schema", "infer", "data/uploads", "--label", "fault", "--write"]),
    ]
    out: dict[str, Any] = {"commands": {}, "strategy": strategy}
    out["params_edits"] = []
    for shown, cmd in [*steps, ("dvc repro", ["dvc", "repro"])]:
        if cmd[0] == "dvc":
            out["params_edits"] = review_params(project, strategy)
        result = timed(cmd, project, environment)
        out["commands"][shown] = {k: result[k] for k in ("wall_s", "cpu_s")}
        print(json.dumps({"command": shown, **out["commands"][shown]}), flush=True)
    ingest = json.loads((project / "data" / "metrics" / "ingest.json").read_text())
    decision = json.loads((project / "data" / "candidate" / "decision.json").read_text())
    out.update(quarantined=ingest["quarantined"], curated=ingest["curated"], rows=ingest["rows"],
               passed=bool(decision.get("passed")),
               quality={r["name"]: r["observed"] for r in decision.get("rules", []) if r["name"] == "quality_floor"})
    out["total_wall_s"] = sum(c["wall_s"] for c in out["commands"].values())
    out["params"] = str(project / "params.yaml")
    return out


# --- the floor --------------------------------------------------------------------------------------------

FLOOR = """
import datetime as dt, json, sys, time
started = time.perf_counter()
from edge.telemetry import switch_off
switch_off()
import logging
logging.disable(logging.WARNING)
import numpy as np, pyarrow as pa, pyarrow.csv as pacsv
import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
from sklearn.model_selection import train_test_split
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from flows.ingest.suite import DEVICE_PARAMETER, MAX_TIME_PARAMETER, MIN_TIME_PARAMETER, build_expectations
from flows.params import load_params
from flows.stages.train import build_estimator
imported = time.perf_counter()
csv, params_file, strategy, out = sys.argv[1:5]
params = load_params(params_file)
schema = params.schema
seconds = {}
t = time.perf_counter()
table = pacsv.read_csv(csv)
n = table.num_rows
frame = table.to_pandas()
frame[schema.event_id] = np.arange(n, dtype=np.int64)
frame[schema.event_time] = np.datetime64("2025-01-01T00:00:00", "ns") + np.arange(n) * np.timedelta64(180, "s")
frame[schema.event_time] = frame[schema.event_time].dt.tz_localize("UTC")
frame[schema.device_id] = "te-plant"
seconds["read"] = time.perf_counter() - t
t = time.perf_counter()
context = gx.get_context(mode="ephemeral")
context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
batch = context.data_sources.add_pandas("h").add_dataframe_asset("b").add_batch_definition_whole_dataframe("w")
suite = context.suites.add(gx.ExpectationSuite(name="floor"))
for expectation in build_expectations(schema, params.ingest, []):
    suite.add_expectation(expectation)
definition = context.validation_definitions.add(gx.ValidationDefinition(name="floor", data=batch, suite=suite))
result = definition.run(batch_parameters={"dataframe": frame[schema.column_names]}, result_format="SUMMARY",
                        expectation_parameters={DEVICE_PARAMETER: ["te-plant"],
                                                MIN_TIME_PARAMETER: params.ingest.earliest_event_time(),
                                                MAX_TIME_PARAMETER: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)})
seconds["validate"] = time.perf_counter() - t
t = time.perf_counter()
classes = {c: i for i, c in enumerate(schema.label.classes)}
y_all = frame[schema.label.name].map(classes).to_numpy()
if strategy == "time":
    cut = n - round(n * params.split.holdout_fraction)
    train, holdout = frame.iloc[:cut], frame.iloc[cut:]
else:
    train, holdout = train_test_split(frame, test_size=params.split.holdout_fraction, stratify=y_all,
                                      random_state=params.split.seed)
x = train[schema.feature_names].to_numpy(dtype=np.float32)
y = train[schema.label.name].map(classes).to_numpy()
model = build_estimator(params.train).fit(x, y)
seconds["fit"] = time.perf_counter() - t
t = time.perf_counter()
onnx_model = to_onnx(model, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                     options={"zipmap": False}, target_opset=params.export.opset)
open(out + "/model.onnx", "wb").write(onnx_model.SerializeToString())
seconds["export"] = time.perf_counter() - t
from sklearn.metrics import f1_score
f1 = f1_score(holdout[schema.label.name].map(classes).to_numpy(),
              model.predict(holdout[schema.feature_names].to_numpy(dtype=np.float32)), average="macro")
t = time.perf_counter()
cap = params.evaluate.max_rows
reference = train.sample(min(cap, len(train)), random_state=0)[schema.feature_names].reset_index(drop=True)
current = holdout.sample(min(cap, len(holdout)), random_state=0)[schema.feature_names].reset_index(drop=True)
dd = DataDefinition(numerical_columns=schema.feature_names)
report = Report([DataDriftPreset(columns=schema.feature_names, method=params.evaluate.drift_method,
                                 threshold=params.evaluate.drift_threshold)])
snapshot = report.run(current_data=Dataset.from_pandas(current, data_definition=dd),
                      reference_data=Dataset.from_pandas(reference, data_definition=dd))
open(out + "/drift.html", "w").write(snapshot.get_html_str(as_iframe=False))
seconds["drift"] = time.perf_counter() - t
end = time.perf_counter()
print("BENCH " + json.dumps({"import_s": imported - started, "stages": seconds, "success": bool(result.success),
                             "f1_macro": f1, "rows": n, "process_s": end - started}))
"""


def floor(export: Path, params: str, strategy: str, work: Path, omp: int) -> dict[str, Any]:
    out = work / "floor"
    out.mkdir()
    result = timed([sys.executable, "-c", FLOOR, str(export), params, strategy, str(out)], REPO, env(omp))
    line = next(x for x in result["stdout"].splitlines() if x.startswith("BENCH "))
    return {**json.loads(line[6:]), "wall_s": result["wall_s"], "cpu_s": result["cpu_s"]}


# --- report -----------------------------------------------------------------------------------------------

def med(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def summarise(data: dict[str, Any], ours: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    commands = list(ours[0]["commands"])
    return {
        "export": data,
        "strategy": ours[0]["strategy"],
        "params_edits": ours[0]["params_edits"],
        "repeats": len(ours),
        "commands": {c: {"wall_s": med([r["commands"][c]["wall_s"] for r in ours]),
                         "cpu_s": med([r["commands"][c]["cpu_s"] for r in ours])} for c in commands},
        "total_wall_s": med([r["total_wall_s"] for r in ours]),
        "quarantined": [r["quarantined"] for r in ours],
        "passed": [r["passed"] for r in ours],
        "curated_rows": ours[0]["rows"],
        "gate_quality": ours[0]["quality"],
        "floor": {
            "wall_s": med([f["wall_s"] for f in floors]),
            "cpu_s": med([f["cpu_s"] for f in floors]),
            "import_s": med([f["import_s"] for f in floors]),
            "stages": {k: med([f["stages"][k] for f in floors]) for k in floors[0]["stages"]},
            "wall_without_drift_s": med([f["wall_s"] - f["stages"]["drift"] for f in floors]),
            "f1_macro": round(floors[0]["f1_macro"], 4),
            "validation_success": [f["success"] for f in floors],
        },
    }


def markdown(s: dict[str, Any]) -> str:
    lines = ["| command | wall s (median) | CPU s |", "|---|---:|---:|"]
    for command, value in s["commands"].items():
        lines.append(f"| `{command}` | {value['wall_s']} | {value['cpu_s']} |")
    lines.append(f"| **user's path, total** | **{s['total_wall_s']}** | |")
    f = s["floor"]
    lines.append(f"| floor: plain script (read CSV, one GX validation, split, fit, ONNX export) | "
                 f"{f['wall_without_drift_s']} | |")
    lines.append(f"| floor + one Evidently drift report | {f['wall_s']} | {f['cpu_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--omp-threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (print its path)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="own-data-"))
    export = work / "export.csv"
    data = write_export(export, args.rows)
    print(json.dumps({"export": data}), flush=True)
    ours, floors = [], []
    for index in range(args.repeat):
        run_dir = work / f"run{index}"
        run_dir.mkdir()
        ours.append(user_path(export, run_dir, args.omp_threads))
        print(json.dumps({"run": index, **{k: v for k, v in ours[-1].items() if k != "params"}}), flush=True)
        floors.append(floor(export, ours[-1]["params"], ours[-1]["strategy"], run_dir, args.omp_threads))
        print(json.dumps({"floor": index, **floors[-1]}), flush=True)
    summary = summarise(data, ours, floors)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "own_data.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(markdown(summary))
    if args.keep:
        print(f"work folder: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
