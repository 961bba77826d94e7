"""split: a time-ordered holdout, so the model is judged on the newest ground truth.

The newest ``split.holdout_fraction`` of curated rows by event time become the holdout; everything
older trains. Rows that share the cut-off timestamp all go to the holdout, so no training row is later
than or simultaneous with a holdout row (no leakage from the future). Does not shuffle, stratify or
balance classes.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.params import Params
from flows.stages import StageError


def time_split(frame: pd.DataFrame, schema: DataSchema, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame sorted by event time into (train, holdout) at a time cut-off."""
    order = [schema.event_time, schema.device_id, schema.event_id]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    if len(frame) < 2:
        raise StageError(f"need at least 2 curated rows to split, have {len(frame)}")
    cut_index = len(frame) - max(1, round(len(frame) * holdout_fraction))
    cutoff = frame[schema.event_time].iloc[cut_index]
    is_holdout = frame[schema.event_time] >= cutoff
    train, holdout = frame[~is_holdout], frame[is_holdout]
    if train.empty:
        raise StageError("every curated row shares the newest timestamp: nothing left to train on")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def main(params: Params, paths: Paths) -> dict[str, Any]:
    from flows.dataset import load_curated

    train, holdout = time_split(load_curated(paths, params.schema), params.schema, params.split.holdout_fraction)
    paths.split.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("holdout", holdout)):
        tmp = paths.split / f".{name}.parquet.tmp"
        part.to_parquet(tmp, index=False)
        tmp.replace(paths.split / f"{name}.parquet")
    time_col = params.schema.event_time
    summary = {
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "train_end": str(train[time_col].max()),
        "holdout_start": str(holdout[time_col].min()),
        "holdout_end": str(holdout[time_col].max()),
    }
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.metrics / "split.json", json.dumps(summary, indent=2, sort_keys=True))
    return summary
