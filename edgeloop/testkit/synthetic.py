"""A schema-agnostic ground-truth generator for tests: any feature names, any classes.

Writes batches exactly as devices upload them (simulator.batches). The label is a noisy function of
the features so a model can learn it; ``flip_labels`` makes a worse-than-useless training set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.contracts.schema import DataSchema
from simulator.batches import write_batch


def make_rows(schema: DataSchema, device: str, rows: int, seed: int, start: str = "2026-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(schema.features)
    unit = rng.uniform(0, 1, size=(rows, n))
    signal = unit @ np.linspace(1.0, -0.5, n) + 0.05 * rng.normal(size=rows)
    classes = list(schema.label.classes)
    edges = np.quantile(signal, np.linspace(0, 1, len(classes) + 1)[1:-1])
    frame = pd.DataFrame(
        {f.name: (f.min or 0.0) + unit[:, i] * ((f.max or 1.0) - (f.min or 0.0)) for i, f in enumerate(schema.features)}
    )
    frame.iloc[rng.random(frame.shape) < 0.01] = np.nan  # sensor dropouts
    frame[schema.label.name] = [classes[i] for i in np.searchsorted(edges, signal)]
    frame[schema.event_id] = np.arange(rows, dtype=np.int64)
    frame[schema.device_id] = device
    frame[schema.event_time] = pd.date_range(start, periods=rows, freq="min", tz="UTC")
    return frame


def write_uploads(root: Path, schema: DataSchema, devices: int, rows: int, batch_rows: int, seed: int) -> list[Path]:
    written = []
    for d in range(devices):
        frame = make_rows(schema, f"site-{d}", rows, seed + d)
        for begin in range(0, rows, batch_rows):
            written.append(write_batch(root, f"site-{d}", frame.iloc[begin : begin + batch_rows]))
    return written


def second_schema() -> dict[str, Any]:
    """A schema unlike the simulator's: other names, 3 features, a string 3-class label."""
    return {
        "features": [
            {"name": "pressure_bar", "dtype": "float", "min": 0.0, "max": 16.0},
            {"name": "flow_lpm", "dtype": "float", "min": 0.0, "max": 400.0},
            {"name": "valve_pct", "dtype": "float", "min": 0.0, "max": 100.0, "nullable": True},
        ],
        "label": {"name": "state", "classes": ["ok", "warn", "fail"]},
        "event_id": "seq",
        "device_id": "pump",
        "event_time": "ts",
    }
