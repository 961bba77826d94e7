"""A fleet of simulated machines as ground-truth frames and landed upload batches.

Turns ``simulator.plant`` runs into frames in the upload record format (sensor columns, label, event
id, device id, event time, upload reason ``labelled``, inclusion probability 1) and lands them as
content-addressed Parquet batches with ``simulator.batches.write_batch``. Device ``i`` always gets the
same random streams for the same seed (``SeedSequence(seed, spawn_key=(i,))``), however many devices
are simulated. Leaves out model columns (simulated rows had no model), params.yaml and the DVC stage
(``flows.stages.simulate``), and clearing old output (batches are idempotent by content).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from edge.contracts.record import INCLUSION_PROBABILITY, UPLOAD_REASON
from simulator.batches import write_batch
from simulator.plant import LABEL_COLUMN, SENSOR_COLUMNS, run_machine

EVENT_ID_COLUMN = "event_id"
DEVICE_ID_COLUMN = "device_id"
EVENT_TIME_COLUMN = "event_time"
COLUMNS: tuple[str, ...] = (
    *SENSOR_COLUMNS,
    LABEL_COLUMN,
    EVENT_ID_COLUMN,
    DEVICE_ID_COLUMN,
    EVENT_TIME_COLUMN,
    UPLOAD_REASON,
    INCLUSION_PROBABILITY,
)


def device_id(device_index: int) -> str:
    """Name of simulated device ``device_index``: ``dev-000``, ``dev-001``, ..."""
    if device_index < 0:
        raise ValueError(f"device_index must be >= 0, got {device_index}")
    return f"dev-{device_index:03d}"


def utc_timestamp(start: pd.Timestamp | str) -> pd.Timestamp:
    """``start`` as a UTC timestamp; a time without zone is taken as UTC."""
    ts = pd.Timestamp(start)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def simulate_device(
    device_index: int,
    rows: int,
    seed: int,
    start: pd.Timestamp | str,
    interval_s: float,
    drift: str = "none",
    drift_start: float = 0.75,
) -> pd.DataFrame:
    """``rows`` time-ordered ground-truth rows of one machine; same inputs give an identical frame."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    name = device_id(device_index)
    t0 = utc_timestamp(start)
    clock_s = float((t0 - t0.normalize()).total_seconds())
    seq = np.random.SeedSequence(seed, spawn_key=(device_index,))
    sensors, label = run_machine(seq, rows, float(interval_s), clock_s, drift, drift_start)
    offsets_ns = np.round(np.arange(rows, dtype=np.float64) * float(interval_s) * 1e9).astype(np.int64)
    frame = pd.DataFrame({c: sensors[c] for c in SENSOR_COLUMNS})
    frame[LABEL_COLUMN] = label
    event_time = t0 + pd.to_timedelta(offsets_ns, unit="ns")
    # Event ids are microseconds since the epoch, as a device's monotonic clock would give: unique per
    # device, and a later simulation of the same device (another --start) never collides with history.
    frame[EVENT_ID_COLUMN] = (event_time.asi8 // 1000).astype(np.int64)
    frame[DEVICE_ID_COLUMN] = np.full(rows, name, dtype=object)
    frame[EVENT_TIME_COLUMN] = event_time
    frame[UPLOAD_REASON] = np.full(rows, "labelled", dtype=object)
    frame[INCLUSION_PROBABILITY] = np.ones(rows, dtype=np.float64)
    return frame


def simulate_fleet(
    devices: int,
    rows_per_device: int,
    seed: int,
    start: pd.Timestamp | str,
    interval_s: float,
    drift: str = "none",
    drift_start: float = 0.75,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(device id, frame) for devices ``0 .. devices-1``, one at a time (memory: one device)."""
    for index in range(devices):
        yield device_id(index), simulate_device(index, rows_per_device, seed, start, interval_s, drift, drift_start)


def split_batches(frame: pd.DataFrame, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive slices of ``batch_rows`` rows (the last may be shorter), each with a fresh index."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    for first in range(0, len(frame), batch_rows):
        yield frame.iloc[first : first + batch_rows].reset_index(drop=True)


def write_fleet(
    root: Path,
    devices: int,
    rows_per_device: int,
    batch_rows: int,
    seed: int,
    start: pd.Timestamp | str,
    interval_s: float,
    drift: str = "none",
    drift_start: float = 0.75,
    on_batch: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Simulate the fleet and land each device's rows as batches under ``root/<device_id>/``.

    Returns the landed paths in write order; ``on_batch(path)`` is called after each one. Writing the
    same fleet again lands the same files (content-addressed) and changes nothing.
    """
    landed: list[Path] = []
    fleet = simulate_fleet(devices, rows_per_device, seed, start, interval_s, drift, drift_start)
    for name, frame in fleet:
        for batch in split_batches(frame, batch_rows):
            path = write_batch(Path(root), name, batch)
            landed.append(path)
            if on_batch is not None:
                on_batch(path)
    return landed
