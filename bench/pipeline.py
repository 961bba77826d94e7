"""Benchmark the cloud pipeline: wall time and peak memory per stage, and Prefect's overhead.

For each size (ground-truth rows) and each repetition, a fresh project is made in a temporary folder
(the simulate stage writes the rows as upload batches; its time is reported but is not part of
ingest → gate), then:
  * stages mode: each stage runs as its own process (``python -m flows STAGE``, what dvc repro runs),
    so its wall time and peak RSS are its own;
  * flow mode: the Prefect ``retrain`` flow runs every stage in one process against an already started
    temporary server; overhead = (flow wall - sum of in-task stage times) / sum of stage times.
Medians over the repetitions are printed as a Markdown table and saved as JSON. This is a benchmark,
not a test: it asserts nothing and is never collected by pytest.

    .venv/bin/python bench/pipeline.py --rows 100000 1000000 --repeat 3
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
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("simulate", "ingest", "split", "train", "export", "evaluate", "gate")
DEVICES = 20
BATCH_ROWS = 5000


def make_project(rows: int, root: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["simulate"].update(devices=DEVICES, rows_per_device=rows // DEVICES, batch_rows=BATCH_ROWS)
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def run_child(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a process to completion and return its stdout; the wrappers below print their own numbers."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


PEAK_WRAPPER = """
import resource, runpy, sys, time, json
sys.argv = ["flows"] + sys.argv[1:]
t = time.perf_counter()
try:
    runpy.run_module("flows", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
wall = time.perf_counter() - t
print("BENCH " + json.dumps({"wall": wall, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FLOW_WRAPPER = """
import json, resource, sys, time
from edge.telemetry import switch_off
switch_off()
from flows.orchestration.retrain import retrain
from prefect import flow

@flow
def warm_up():
    return 1

warm_up()  # starts the temporary server outside the timed region
t = time.perf_counter()
state = retrain(root=sys.argv[1], requested_by="bench/pipeline.py", return_state=True)  # a manual retrain
wall = time.perf_counter() - t
result = state.result(raise_on_failure=False)
stages = {k: v["seconds"] for k, v in result["stages"].items()}
print("BENCH " + json.dumps({"wall": wall, "stages": stages, "passed": result["passed"],
      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_line(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("BENCH ")][-1]
    return json.loads(line[len("BENCH "):])


def stages_mode(rows: int, work: Path, env: dict[str, str]) -> dict[str, dict[str, float]]:
    root = make_project(rows, work / "stages")
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        stdout = run_child([sys.executable, "-c", PEAK_WRAPPER, stage], root, env)
        out[stage] = bench_line(stdout)
    return out


def flow_mode(rows: int, work: Path, env: dict[str, str]) -> dict:
    root = make_project(rows, work / "flow")
    flow_env = {**env, "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    flow_env.pop("PREFECT_API_URL", None)
    stdout = run_child([sys.executable, "-c", FLOW_WRAPPER, str(root)], root, flow_env)
    result = bench_line(stdout)
    in_scope = {k: v for k, v in result["stages"].items() if k != "simulate"}
    stage_sum = sum(result["stages"].values())
    result["overhead"] = (result["wall"] - stage_sum) / stage_sum
    result["ingest_to_gate"] = sum(in_scope.values())
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def summarise(rows: int, stage_runs: list[dict], flow_runs: list[dict]) -> dict:
    per_stage = {
        s: {
            "wall_s": median([r[s]["wall"] for r in stage_runs]),
            "peak_mib": median([r[s]["peak_mib"] for r in stage_runs]),
        }
        for s in STAGES
    }
    ingest_to_gate = [sum(r[s]["wall"] for s in STAGES if s != "simulate") for r in stage_runs]
    return {
        "rows": rows,
        "runs": len(stage_runs),
        "stages": per_stage,
        "ingest_to_gate_s": median(ingest_to_gate),
        "peak_mib_max": max(max(r[s]["peak_mib"] for s in STAGES) for r in stage_runs),
        "flow_wall_s": median([f["wall"] for f in flow_runs]),
        "flow_stage_sum_s": median([sum(f["stages"].values()) for f in flow_runs]),
        "flow_peak_mib": median([f["peak_mib"] for f in flow_runs]),
        "prefect_overhead": median([f["overhead"] for f in flow_runs]),
        "all_passed": all(f["passed"] for f in flow_runs),
    }


def markdown(summary: dict) -> str:
    lines = [f"**{summary['rows']:,} rows** (median of {summary['runs']} runs)", "",
             "| stage | wall s | peak RSS MiB |", "|---|---:|---:|"]
    for stage, v in summary["stages"].items():
        lines.append(f"| {stage} | {v['wall_s']:.1f} | {v['peak_mib']:.0f} |")
    lines += [
        "",
        f"- ingest → gate (separate processes): {summary['ingest_to_gate_s']:.1f} s; "
        f"highest stage peak RSS {summary['peak_mib_max']:.0f} MiB",
        f"- Prefect flow (one process): wall {summary['flow_wall_s']:.1f} s, sum of stage times "
        f"{summary['flow_stage_sum_s']:.1f} s, overhead {100 * summary['prefect_overhead']:.1f} %, "
        f"peak RSS {summary['flow_peak_mib']:.0f} MiB; gate passed in every run: {summary['all_passed']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="ground-truth rows")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per size (median is reported)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for JSON results")
    args = parser.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "ORT_DISABLE_TELEMETRY": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    args.out.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        stage_runs, flow_runs = [], []
        for i in range(args.repeat):
            work = Path(tempfile.mkdtemp(prefix=f"edgeloop-bench-{rows}-"))
            try:
                stage_runs.append(stages_mode(rows, work, env))
                flow_runs.append(flow_mode(rows, work, env))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(f"rows={rows} run {i + 1}/{args.repeat} done", file=sys.stderr, flush=True)
        summary = summarise(rows, stage_runs, flow_runs)
        (args.out / f"pipeline-{rows}.json").write_text(json.dumps(summary, indent=2))
        print(markdown(summary), flush=True)
        print(flush=True)


if __name__ == "__main__":
    main()
