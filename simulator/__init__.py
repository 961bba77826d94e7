"""A simulated plant: machines with sensors, failure physics, operating regimes and injectable drift.

Feeds the demo, the tests and the benchmarks with ground-truth batches in the upload format, so the
pipeline has history before any real device uploads. ``plant`` holds one machine's physics,
``fleet`` turns machines into frames and landed batches. This package knows its own columns
(``SENSOR_COLUMNS``, ``LABEL_COLUMN``, ``CLASSES``, the id/time column names) but not params.yaml:
comparing the two is the job of the ``simulate`` stage (``flows.stages.simulate``).
"""

from simulator.fleet import (
    COLUMNS,
    DEVICE_ID_COLUMN,
    EVENT_ID_COLUMN,
    EVENT_TIME_COLUMN,
    device_id,
    simulate_device,
    simulate_fleet,
    write_fleet,
)
from simulator.plant import (
    CLASSES,
    DRIFT_KINDS,
    LABEL_COLUMN,
    OFFSET_AMOUNT,
    OFFSET_SENSOR,
    SENSOR_COLUMNS,
    SENSOR_RANGES,
)

__all__ = [
    "CLASSES",
    "COLUMNS",
    "DEVICE_ID_COLUMN",
    "DRIFT_KINDS",
    "EVENT_ID_COLUMN",
    "EVENT_TIME_COLUMN",
    "LABEL_COLUMN",
    "OFFSET_AMOUNT",
    "OFFSET_SENSOR",
    "SENSOR_COLUMNS",
    "SENSOR_RANGES",
    "device_id",
    "simulate_device",
    "simulate_fleet",
    "write_fleet",
]
