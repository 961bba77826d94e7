"""The default model every edge benchmark measures, built one way.

params.yaml's estimator (HistGradientBoosting with the ``train.hgb`` settings) fitted on 4 simulated
machines x 10,000 rows, exported by the pipeline's own ``to_onnx_bytes``; its release folder carries a
manifest made by the gate's ``build_manifest`` from params.yaml, with reference statistics of the training
rows (so drift and anomaly rules see what a real release gives them). Needs the cloud extras.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

DEVICES = 4
ROWS_PER_DEVICE = 10_000


@functools.lru_cache(maxsize=1)
def trained() -> tuple[Any, np.ndarray, np.ndarray]:
    """(fitted estimator, features in schema order with NaN for dropouts, labels)."""
    import pandas as pd

    from edgeloop.testkit.runner_world import params
    from flows.stages.train import build_estimator
    from simulator.fleet import simulate_fleet

    schema = params().schema
    frame = pd.concat(frame for _, frame in simulate_fleet(DEVICES, ROWS_PER_DEVICE, 0, "2026-01-01", 60.0))
    x = frame[schema.feature_names].to_numpy(dtype=np.float64)
    y = frame[schema.label.name].to_numpy(dtype=np.int64)
    return build_estimator(params().train).fit(x, y), x, y


@functools.lru_cache(maxsize=1)
def model_bytes() -> bytes:
    from edgeloop.testkit.runner_world import params
    from flows.stages.export import to_onnx_bytes

    estimator, x, _ = trained()
    return to_onnx_bytes(estimator, x.shape[1], params().export.opset, {})


def write_release(folder: Path, seed: int = 0) -> Path:
    """A release folder (model.onnx, manifest.json and the gate's other files) of the default model."""
    from edgeloop.testkit.runner_world import write_candidate

    return write_candidate(folder, seed, model=model_bytes(), reference_rows=trained()[1])


def describe() -> str:
    estimator, x, _ = trained()
    return (f"default model: HGB {estimator.n_iter_} iterations, {x.shape[1]} features, trained on "
            f"{len(x):,} simulator rows, ONNX {len(model_bytes()):,} bytes")
