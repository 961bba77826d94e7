"""Stage ``simulate``: write the simulated plant's history (``params.simulate``) to ``data/simulated/``.

The DVC pipeline's first stage: default ground-truth history, laid out like the landing zone
(``<device_id>/<batch_id>.parquet``), so a fresh clone can train before any device uploads. Checks
that params.yaml's schema is the simulator's (else ``UserError``: set ``simulate.rows_per_device: 0``
and bring your own data). The folder is this stage's output and is regenerated whole: written to a
temporary sibling and swapped in by rename, so a crash never leaves a half-written history. Leaves
out ``data/uploads`` (never touched), validation (ingest's job) and the physics (``simulator``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

import simulator
from edge.atomic import fsync_dir
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.params import Params

_TEMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


def schema_mismatch(schema: DataSchema) -> str | None:
    """What differs between ``schema`` and the columns the simulator writes, or None when they match."""
    sim_features = list(simulator.SENSOR_COLUMNS)
    unknown = [n for n in schema.feature_names if n not in sim_features]
    if unknown:
        return f"feature {unknown[0]!r} is not a simulated sensor (it writes {', '.join(sim_features)})"
    missing = [n for n in sim_features if n not in schema.feature_names]
    if missing:
        return f"simulated sensor {missing[0]!r} is not among schema.features"
    not_float = [f.name for f in schema.features if f.dtype != "float"]
    if not_float:
        return f"feature {not_float[0]!r} has dtype int, the simulator writes float"
    expected = {
        "label.name": (schema.label.name, simulator.LABEL_COLUMN),
        "label.classes": (list(schema.label.classes), list(simulator.CLASSES)),
        "event_id": (schema.event_id, simulator.EVENT_ID_COLUMN),
        "device_id": (schema.device_id, simulator.DEVICE_ID_COLUMN),
        "event_time": (schema.event_time, simulator.EVENT_TIME_COLUMN),
    }
    for key, (ours, sims) in expected.items():
        if ours != sims:
            return f"schema.{key} is {ours!r}, the simulator writes {sims!r}"
    return None


def check_schema(schema: DataSchema) -> None:
    """Raise UserError (one line) when the simulator cannot fill ``schema``."""
    problem = schema_mismatch(schema)
    if problem:
        raise UserError(
            f"params.yaml schema does not match the simulator: {problem}; "
            "set simulate.rows_per_device: 0 to use your own data"
        )


def _clear_leftovers(target: Path) -> None:
    """Remove temporary folders a crashed earlier run of this stage left next to ``target``."""
    for mark in (_TEMP_MARK, _OLD_MARK):
        for leftover in target.parent.glob(f".{target.name}{mark}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(fresh: Path, target: Path) -> None:
    """Replace ``target`` with the complete folder ``fresh`` by renames; the old one is deleted after."""
    old = target.parent / f".{target.name}{_OLD_MARK}{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(fresh, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _check_start(start: str) -> None:
    try:
        pd.Timestamp(start)
    except ValueError:
        raise UserError(f"simulate.start: {start!r} is not a date-time (e.g. 2026-01-01T00:00:00Z)") from None


def main(params: Params, paths: Paths) -> dict[str, Any]:
    """Regenerate ``paths.simulated`` from ``params.simulate``; returns devices, rows, batches, path."""
    cfg = params.simulate
    target = paths.simulated
    target.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(target)
    devices = cfg.devices if cfg.rows_per_device > 0 else 0
    if devices:
        check_schema(params.schema)
        _check_start(cfg.start)
    fresh = target.parent / f".{target.name}{_TEMP_MARK}{os.getpid()}"
    fresh.mkdir()
    try:
        landed = simulator.write_fleet(
            fresh,
            devices=devices,
            rows_per_device=cfg.rows_per_device,
            batch_rows=cfg.batch_rows,
            seed=cfg.seed,
            start=cfg.start,
            interval_s=cfg.interval_s,
            drift=cfg.drift,
            drift_start=cfg.drift_start,
        )
        _swap_in(fresh, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return {
        "devices": devices,
        "rows": devices * cfg.rows_per_device,
        "batches": len(landed),
        "path": _relative(target, paths.root),
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
