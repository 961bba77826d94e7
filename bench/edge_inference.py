"""Edge inference benchmark (issue 5, item 2): in-process single-row latency p50/p99 (one thread, after
warm-up) and batch throughput, for the default model (HistGradientBoosting with params.yaml's hgb
settings) trained on simulator data, exported with flows.stages.export and loaded by edge.inference from
a release folder. Timed side by side on the same rows in the same run: raw onnxruntime (the floor:
``session.run([probabilities], {input: x})`` on a session with the same options, ``x`` a prebuilt float32
row) and sklearn ``predict_proba`` (for the speed-up).

    .venv/bin/python bench/edge_inference.py

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # edgeloop.testkit.releases builds the manifest

from edge.telemetry import switch_off

switch_off()

import numpy as np  # noqa: E402

from bench.default_model import model_bytes, trained, write_release  # noqa: E402
from edge.inference import Predictor  # noqa: E402
from simulator.plant import SENSOR_COLUMNS  # noqa: E402

SINGLE_CALLS = 20_000
SKLEARN_CALLS = 2_000
BATCH_ROWS = 1_000
BATCH_REPEAT = 50
RUNS = 5


def percentile_us(samples: list[int], q: float) -> float:
    return float(np.percentile(np.array(samples, dtype=np.float64), q)) / 1000.0


def floor_session(model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def measure(predictor: Predictor, estimator: Any, session: Any, rows: list[list[float | None]], x: np.ndarray
            ) -> dict[str, float]:
    """One run: edge, raw onnxruntime and scikit-learn single-row latency side by side, then batch throughput."""
    clock = time.perf_counter_ns
    single = []
    for row in rows:
        t0 = clock()
        predictor.predict(row)
        single.append(clock() - t0)
    feed, outputs, run = session.get_inputs()[0].name, [session.get_outputs()[1].name], session.run
    floor = []
    for matrix in (np.array([row], dtype=np.float32) for row in x[:len(rows)]):
        t0 = clock()
        run(outputs, {feed: matrix})
        floor.append(clock() - t0)
    sklearn = []
    for i in range(SKLEARN_CALLS):
        one = x[i:i + 1]
        t0 = clock()
        estimator.predict_proba(one)
        sklearn.append(clock() - t0)
    batch = x[:BATCH_ROWS]
    predictor.predict_batch(batch)
    t1 = time.perf_counter()
    for _ in range(BATCH_REPEAT):
        predictor.predict_batch(batch)
    batch_rows_s = BATCH_ROWS * BATCH_REPEAT / (time.perf_counter() - t1)
    listed = rows[:BATCH_ROWS]
    t1 = time.perf_counter()
    for _ in range(BATCH_REPEAT // 5):
        predictor.predict_batch(listed)
    list_rows_s = BATCH_ROWS * (BATCH_REPEAT // 5) / (time.perf_counter() - t1)
    return {"p50": percentile_us(single, 50), "p99": percentile_us(single, 99), "floor50": percentile_us(floor, 50),
            "floor99": percentile_us(floor, 99), "sk50": percentile_us(sklearn, 50),
            "sk99": percentile_us(sklearn, 99), "batch_rows_s": batch_rows_s, "list_rows_s": list_rows_s}


def main() -> None:
    estimator, x, _ = trained()
    model = model_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_release(Path(scratch) / "release")
        started = time.perf_counter()
        predictor = Predictor.from_folder(folder)
        load_ms = (time.perf_counter() - started) * 1000

    rows = [[None if np.isnan(v) else float(v) for v in row] for row in x[:SINGLE_CALLS]]
    for row in rows[:1000]:  # warm the Python side as well
        predictor.predict(row)
    for _ in range(100):
        estimator.predict_proba(x[:1])
    session = floor_session(model)
    for row in x[:1000]:
        session.run([session.get_outputs()[1].name], {session.get_inputs()[0].name: np.array([row], dtype=np.float32)})
    runs = [measure(predictor, estimator, session, rows, x) for _ in range(RUNS)]
    m = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    p50, p99, sk50, sk99 = m["p50"], m["p99"], m["sk50"], m["sk99"]
    batch_rows_s, list_rows_s = m["batch_rows_s"], m["list_rows_s"]
    print("Command: `.venv/bin/python bench/edge_inference.py`")
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; "
          f"model: HGB {estimator.n_iter_} iterations (early stopping on), "
          f"{len(SENSOR_COLUMNS)} features, trained on {len(x):,} simulator rows; ONNX {len(model):,} bytes; "
          f"Predictor.from_folder (verify + load + warm-up) {load_ms:.0f} ms; medians of {RUNS} runs")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| edge predict, single row, p50 ({SINGLE_CALLS:,} calls, 1 thread) | {p50:.1f} µs "
          f"(raw onnxruntime {m['floor50']:.1f} µs) |")
    print(f"| edge predict, single row, p99 | {p99:.1f} µs (raw onnxruntime {m['floor99']:.1f} µs) |")
    print(f"| sklearn predict_proba, single row, p50 / p99 ({SKLEARN_CALLS:,} calls) | {sk50:.1f} / {sk99:.1f} µs |")
    print(f"| speed-up at p50 (sklearn / edge) | {sk50 / p50:.0f}× |")
    print(f"| predict_batch, {BATCH_ROWS:,}-row numpy array | {batch_rows_s:,.0f} rows/s |")
    print(f"| predict_batch, {BATCH_ROWS:,} rows as Python lists | {list_rows_s:,.0f} rows/s |")


if __name__ == "__main__":
    main()
