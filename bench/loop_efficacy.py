"""Loop efficacy (issue 15): static, nightly, edgeloop and oracle on the same simulated plants, side by side.

A plant-time simulation, not the full demo: the demo (real hub, Prefect, TUF, runner threads) takes about
6 minutes per run, and 4 policies x 3 seeds x 3 drift kinds is 36 runs. So each run drives edgeloop's real
decision code in-process, hour by plant hour (``bench/efficacy``): the simulator's machines (6: 2 canary,
4 stable, as the demo), v1 trained on ``--days-before`` plant days of fully labelled history (split,
fit, gate as the retrain flow), one more day served by v1, then the drift on every machine and
``--days-after`` plant days. Devices predict with the release they run (scikit-learn ``predict_proba`` and
the shipped decision rule; export's parity check holds ONNX to it within 1e-5), filter uploads with
``edge.upload_filter.select``, measure PSI with ``edge.drift``, check candidates with ``edge.shadow.compare``
and watch them with ``edge.health.WatchWindow``. The cloud side calls ``flows.stages.split.split_frame``,
``flows.stages.train.fit``, the gate's rules, ``flows.loop.triggers.decide``, ``flows.loop.promotion.decide``,
``flows.loop.estimates`` and ``flows.loop.collection.plan_collection``. Only transport is modelled: a release
or a runner policy reaches a device at the start of the next plant hour (runners poll every minute or so).
Measures: see ``bench/efficacy/measures.py``.

    .venv/bin/python bench/loop_efficacy.py [--seeds 1 2 3] [--drifts ...] [--policies ...] [--jobs 2]
        [--days-before 3] [--days-after 7] [--rules current|before] [--set loop.monitor.cooldown_s=3600]
        [--json PATH]

Per-run lines go to stderr; the markdown table of medians over seeds and the targets check to stdout.
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# One OpenMP thread per process (--jobs processes share the cores): set before scikit-learn loads libgomp,
# which reads it once; scikit-learn's per-call thread start-up dominates on the small hourly batches.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from edge.telemetry import switch_off  # noqa: E402

switch_off()

POLICIES = ("static", "nightly", "edgeloop", "oracle")
DRIFTS = ("sensor_offset", "new_regime", "relationship")


def load(overrides: list[str]) -> Any:
    """params.yaml with ``key=value`` overrides (value read as YAML); one clear line on a bad key."""
    import yaml

    from flows.params import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. loop.monitor.cooldown_s=3600")
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise SystemExit(f"--set {item!r}: params.yaml has no section {part!r}")
            node = node[part]
        node[last] = yaml.safe_load(text)
    return parse_params(raw)


def one(job: tuple[list[str], int, str, str, float, float, str]) -> dict[str, Any]:
    overrides, seed, drift, policy, before, after, rules = job
    from bench.efficacy.run import run_one

    return run_one(load(overrides), seed, drift, policy, before, after, rules)


def _median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def _recovery_median(values: list[Any], horizon_h: float) -> float | None:
    """Median hours to recover, counting a run that never recovered as beyond the horizon (inf)."""
    ranked = [float("inf") if v is None else float(v) for v in values]
    return statistics.median(ranked) if ranked else None


def summarise(results: list[dict[str, Any]], horizon_h: float) -> dict[tuple[str, str], dict[str, Any]]:
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for drift in dict.fromkeys(r["drift"] for r in results):
        for policy in dict.fromkeys(r["policy"] for r in results):
            runs = [r for r in results if r["drift"] == drift and r["policy"] == policy]
            if not runs:
                continue
            table[(drift, policy)] = {
                "runs": len(runs),
                "before": _median([r["before"] for r in runs]),
                "lowest": _median([r["lowest"] for r in runs]),
                "after_end": _median([r["after_end"] for r in runs]),
                "loss": _median([r["loss_point_hours"] for r in runs]),
                "recovered_h": _recovery_median([r["recovered_h"] for r in runs], horizon_h),
                "recovered_runs": sum(r["recovered_h"] is not None for r in runs),
                "bytes_ratio": _median([r["bytes_ratio"] for r in runs]),
                "releases": _median([r["releases"] for r in runs]),
                "bad_on_stable": sum(r["bad_on_stable"] for r in runs),
                "wall_s": _median([r["wall_s"] for r in runs]),
            }
    return table


def _h(value: float | None) -> str:
    if value is None:
        return "-"
    return "not recovered" if value == float("inf") else f"{value:.0f}"


def markdown(table: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    lines = ["| drift | policy | accuracy before | lowest (6 h) | at the end (6 h) | loss (point-h) | "
             "recovered after (h) | uploaded / raw | releases | bad on stable (all seeds) | wall s/run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (drift, policy), s in table.items():
        recovered = _h(s["recovered_h"]) + f" ({s['recovered_runs']}/{s['runs']})"
        lines.append(f"| {drift} | {policy} | {s['before']:.2%} | {s['lowest']:.2%} | {s['after_end']:.2%} | "
                     f"{s['loss']:.1f} | {recovered} | {s['bytes_ratio']:.2%} | {s['releases']:g} | "
                     f"{s['bad_on_stable']} | {s['wall_s']:.0f} |")
    return lines


def targets(table: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    lines = ["| drift | target | edgeloop | bound | result |", "|---|---|---|---|---|"]
    for drift in dict.fromkeys(d for d, _ in table):
        edge = table.get((drift, "edgeloop"))
        if edge is None:
            continue
        checks = []
        nightly, oracle, static = (table.get((drift, p)) for p in ("nightly", "oracle", "static"))
        if nightly is not None:
            half = nightly["loss"] / 2
            checks.append(("loss <= 1/2 nightly's", edge["loss"], half, edge["loss"] <= half))
        if oracle is not None:
            checks.append(("loss <= 2x oracle's", edge["loss"], 2 * oracle["loss"], edge["loss"] <= 2 * oracle["loss"]))
        checks.append(("recovery <= 48 h (median)", edge["recovered_h"], 48.0, edge["recovered_h"] <= 48))
        checks.append(("uploaded <= 5% of raw", edge["bytes_ratio"], 0.05, edge["bytes_ratio"] <= 0.05))
        checks.append(("0 bad releases on stable", edge["bad_on_stable"], 0, edge["bad_on_stable"] == 0))
        for name, value, bound, ok in checks:
            if "raw" in name:
                shown, limit = f"{value:.2%}", f"{bound:.0%}"
            elif "recovery" in name:
                shown, limit = _h(value), f"{bound:.0f}"
            else:
                shown, limit = f"{value:g}" if isinstance(value, int) else f"{value:.1f}", f"{bound:g}"
            gap = "" if ok else f" (gap {_gap(value, bound, name)})"
            lines.append(f"| {drift} | {name} | {shown} | {limit} | {'PASS' if ok else 'FAIL'}{gap} |")
        if static is not None:
            lines.append(f"| {drift} | scale: static's loss | {static['loss']:.1f} | - | - |")
    return lines


STEP_KINDS = ("superseded", "rollback", "gate_blocked", "device_blocked", "device_rolled_back")


def steps(results: list[dict[str, Any]]) -> list[str]:
    """Where edgeloop's time after the onset goes: medians over seeds of the hour (from the onset) of its first
    publish after the onset and of the first promotion of a release published after the onset, and counts
    (after the onset) of what set it back."""
    lines = ["| drift | first publish after onset (h) | first such release on stable (h) | "
             + " | ".join(STEP_KINDS) + " | raised devices |", "|---|---|---|" + "---|" * (len(STEP_KINDS) + 1)]
    for drift in dict.fromkeys(r["drift"] for r in results):
        runs = [r for r in results if r["drift"] == drift and r["policy"] == "edgeloop"]
        if not runs:
            continue

        def first(run: dict[str, Any], kind: str) -> float:
            fresh = {e["release"] for e in run["log"] if e["kind"] == "publish" and e["hour"] >= 0}
            hours = [e["hour"] for e in run["log"] if e["kind"] == kind and e["release"] in fresh]
            return float(min(hours)) if hours else float("inf")

        counts = [_median([_count(r["log"], k) for r in runs]) for k in STEP_KINDS]
        raised = _median([len({e["device"] for e in r["rates"] if e["rate"] > 0.02}) for r in runs])
        lines.append(f"| {drift} | {_never(statistics.median(first(r, 'publish') for r in runs))} | "
                     f"{_never(statistics.median(first(r, 'promote') for r in runs))} | "
                     + " | ".join(f"{c:g}" for c in counts) + f" | {raised:g} |")
    return lines


def _count(log: list[dict[str, Any]], kind: str) -> int:
    """Events of ``kind`` after the onset; ``superseded``: canary candidates replaced by a newer one before
    they were promoted or rolled back (read from the publish/promote/rollback order)."""
    if kind != "superseded":
        return sum(e["kind"] == kind and e["hour"] >= 0 for e in log)
    pending, count = False, 0
    for e in log:
        if e["kind"] == "publish" and e.get("to") == "canary":
            count += pending and e["hour"] >= 0
            pending = True
        elif e["kind"] in ("promote", "rollback"):
            pending = False
    return count


def _never(value: float) -> str:
    return "never" if value == float("inf") else f"{value:.0f}"


def _gap(value: float, bound: float, name: str) -> str:
    if value == float("inf"):
        return "never recovered in the horizon"
    if "raw" in name:
        return f"+{(value - bound) * 100:.2f} points"
    return f"+{value - bound:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--drifts", nargs="+", default=list(DRIFTS), choices=DRIFTS)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--days-before", type=float, default=3.0, help="plant days of history v1 trains on")
    parser.add_argument("--days-after", type=float, default=7.0, help="plant days after the drift onset")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--rules", choices=("current", "before"), default="current",
                        help="current: the loop as on main; before: issue 14's loop (fixed min_fresh_rows, "
                             "no adaptive collection)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml value for every run (repeatable)")
    parser.add_argument("--json", type=Path, help="write every run's result here")
    args = parser.parse_args(argv)
    if args.days_before < 1 or args.days_after < 1 or args.jobs < 1:
        parser.error("--days-before and --days-after must be at least 1, --jobs at least 1")
    load(args.overrides)  # a bad --set fails here, once, before any work
    if args.rules == "before":  # issue 14's loop: its fixed fresh-row number, no collection, no recency
        args.overrides = ["loop.collection.enabled=false", "loop.monitor.min_fresh_rows=2000",
                          "train.recency_half_life_h=null", *args.overrides]
    jobs = [(args.overrides, seed, drift, policy, args.days_before, args.days_after, args.rules)
            for drift in args.drifts for seed in args.seeds for policy in args.policies]
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(one, jobs):
            results.append(result)
            print(f"{result['drift']:13s} seed {result['seed']} {result['policy']:8s} before {result['before']:.2%} "
                  f"loss {result['loss_point_hours']:7.1f} point-h recovered {result['recovered_h']} h "
                  f"bytes {result['bytes_ratio']:.2%} releases {result['releases']} bad {result['bad_on_stable']} "
                  f"({result['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    table = summarise(results, args.days_after * 24)
    command = "   ".join(sys.argv) if argv is None else "bench/loop_efficacy.py " + " ".join(argv)
    print(f"Command: `.venv/bin/python {command.split('   ')[0] if argv is None else command}`"
          if argv is not None else f"Command: `.venv/bin/python {' '.join(sys.argv)}`")
    print(f"Rules: {args.rules}; overrides: {', '.join(args.overrides) or 'none'}; {len(results)} runs in "
          f"{wall:.0f} s wall with {args.jobs} processes on {os.cpu_count()} cores")
    print()
    print("\n".join(markdown(table)))
    print()
    print("\n".join(targets(table)))
    if "edgeloop" in args.policies:
        print()
        print("\n".join(steps(results)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
