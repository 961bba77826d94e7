"""Does recency weighting (train.recency_half_life_h) or a window (train.window_h) help a retrain after drift,
and does it hurt on a stable plant?

For each drift kind (none, sensor_offset, new_regime, relationship) and seed, a simulated fleet runs
``--history-h`` plant hours before the drift (fully labelled: the simulated history a project starts from),
then ``--fresh-h`` hours after it, of which only what an edge runner uploads is kept: every mistake and
uncertain row of the previous model (p = 1) and a random share of the rest (p = ``--rate``; the runner's
rule, edge.upload_filter). Every training configuration fits (flows.stages.train.fit, the pipeline's own
code) on the same history + uploads; each model is scored on all rows of the next ``--test-h`` hours of the
drifted plant (the simulator's truth). Floors in the same run: ``previous`` (no retrain: the model trained on
history alone) and ``oracle`` (history plus every fresh row labelled, unweighted). Prints one line per
(drift, rate, config) with the median accuracy over seeds and the spread, and a markdown table.

    .venv/bin/python -m bench.recency_training --seeds 3

Leaves out: the loop around training (when it retrains, the gate, the fleet): bench/loop_efficacy.py does that.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from edge.contracts.decision import decide_many, positive_index
from edge.contracts.record import INCLUSION_PROBABILITY
from edge.upload_filter import UploadPolicy, sample_unit
from edgeloop.testkit.project import override, repo_params_raw
from flows.params import Params, parse_params
from flows.stages.train import class_indices, features_matrix, fit
from simulator.fleet import simulate_device

DRIFTS = ("none", "sensor_offset", "new_regime", "relationship")
CONFIGS: dict[str, dict[str, float | None]] = {
    "plain": {},
    "half-life 24 h": {"recency_half_life_h": 24.0},
    "half-life 72 h": {"recency_half_life_h": 72.0},
    "window 48 h": {"window_h": 48.0},
}


def params_for(config: dict[str, float | None], raw: dict[str, Any]) -> Params:
    return parse_params(override(raw, {f"train.{k}": v for k, v in config.items()}))


def plant(drift: str, seed: int, devices: int, history_h: float, fresh_h: float, test_h: float
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history, fresh, test) rows of the fleet, one row a minute per device, drift from the end of history."""
    total = int(round((history_h + fresh_h + test_h) * 60))
    start = history_h / (history_h + fresh_h + test_h)
    frame = pd.concat([simulate_device(i, total, seed, "2026-01-01", 60, drift, start) for i in range(devices)])
    hours = (frame["event_time"] - frame["event_time"].min()).dt.total_seconds() / 3600
    cuts = (hours < history_h, (hours >= history_h) & (hours < history_h + fresh_h), hours >= history_h + fresh_h)
    history, fresh, test = (frame[c].sort_values(["event_time", "device_id"]).reset_index(drop=True) for c in cuts)
    return history, fresh, test


def uploads(fresh: pd.DataFrame, previous: Any, params: Params, rate: float) -> pd.DataFrame:
    """What an edge runner running ``previous`` uploads of ``fresh``: mistakes and uncertain rows (p = 1),
    and a random ``rate`` of the rest (p = rate), by the runner's own draw."""
    policy = UploadPolicy(random_rate=rate)
    truth = class_indices(fresh, params.schema)
    probs = previous.predict_proba(features_matrix(fresh, params.schema))
    pos = positive_index(params.schema.label.classes, params.schema.label.positive_class)
    threshold = params.gate.decision_threshold
    mistake = decide_many(probs, pos, threshold) != truth
    uncertain = ~mistake & (np.abs(probs[:, pos or 0] - threshold) < policy.uncertain_margin)
    draws = np.array([sample_unit(d, int(e)) for d, e in zip(fresh["device_id"], fresh["event_id"], strict=True)])
    sampled = ~mistake & ~uncertain & (draws < rate)
    out = fresh.copy()
    out[INCLUSION_PROBABILITY] = np.where(mistake | uncertain, 1.0, rate)
    return out[mistake | uncertain | sampled].reset_index(drop=True)


def accuracy(model: Any, test: pd.DataFrame, params: Params) -> float:
    probs = model.predict_proba(features_matrix(test, params.schema))
    pos = positive_index(params.schema.label.classes, params.schema.label.positive_class)
    predicted = decide_many(probs, pos, params.gate.decision_threshold)
    return float((predicted == class_indices(test, params.schema)).mean())


def run(seeds: int, rates: list[float], devices: int, history_h: float, fresh_h: float, test_h: float
        ) -> dict[tuple[str, float, str], list[float]]:
    raw = repo_params_raw()
    plain = params_for({}, raw)
    results: dict[tuple[str, float, str], list[float]] = {}
    started = time.perf_counter()
    for drift in DRIFTS:
        for seed in range(1, seeds + 1):
            history, fresh, test = plant(drift, seed, devices, history_h, fresh_h, test_h)
            previous = fit(history, plain)
            results.setdefault((drift, 0.0, "previous (no retrain)"), []).append(accuracy(previous, test, plain))
            oracle = fit(pd.concat([history, fresh], ignore_index=True), plain)
            results.setdefault((drift, 0.0, "oracle (all fresh rows labelled)"), []).append(
                accuracy(oracle, test, plain))
            for rate in rates:
                frame = pd.concat([history, uploads(fresh, previous, plain, rate)], ignore_index=True)
                for name, config in CONFIGS.items():
                    params = params_for(config, raw)
                    results.setdefault((drift, rate, name), []).append(accuracy(fit(frame, params), test, params))
            print(f"# {drift} seed {seed} done at {time.perf_counter() - started:.0f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.5])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--history-h", type=float, default=100.0)
    parser.add_argument("--fresh-h", type=float, default=24.0)
    parser.add_argument("--test-h", type=float, default=24.0)
    args = parser.parse_args()
    started = time.perf_counter()
    results = run(args.seeds, args.rates, args.devices, args.history_h, args.fresh_h, args.test_h)
    print(f"\n{args.seeds} seeds, {args.devices} devices, {args.history_h:g} h history, {args.fresh_h:g} h of "
          f"uploads after the drift, scored on the next {args.test_h:g} h; {time.perf_counter() - started:.0f} s")
    print("\n| drift | random rate | training | median accuracy | min-max |")
    print("|---|---|---|---|---|")
    for (drift, rate, name), values in results.items():
        shown = "-" if rate == 0.0 else f"{rate:g}"
        print(f"| {drift} | {shown} | {name} | {statistics.median(values):.4f} | "
              f"{min(values):.4f}-{max(values):.4f} |")


if __name__ == "__main__":
    main()
