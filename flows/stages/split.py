"""split: a time-ordered holdout, so the model is judged on the newest ground truth.

The newest ``split.holdout_fraction`` of curated rows by event time become the holdout; everything
older trains. Rows that share the cut-off timestamp all go to the holdout, so no training row is later
than or simultaneous with a holdout row (no leakage from the future). Before reading the rows, every
curated file's column types are checked from its footer, so a file curated before ingest checked a
column (event ids as text, say) is named in one line instead of failing deep inside pyarrow. Does not
shuffle, stratify or balance classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.params import Params
from flows.stages import StageError

if TYPE_CHECKING:
    import pyarrow as pa


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


def _column_types(schema: DataSchema) -> dict[str, tuple[str, Any]]:
    """Column -> (what it must hold, the check on its Arrow type)."""
    import pyarrow as pa

    def text(t: pa.DataType) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                    or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)))

    def number(t: pa.DataType) -> bool:
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t))

    label = ("text", text) if isinstance(schema.label.classes[0], str) else ("integers", pa.types.is_integer)
    return {
        **{name: ("numbers", number) for name in schema.feature_names},
        schema.label.name: label,
        schema.event_id: ("integer ids", pa.types.is_integer),
        schema.device_id: ("text", text),
        schema.event_time: ("timestamps", pa.types.is_timestamp),
    }


def check_curated_types(files: list[Path], schema: DataSchema, root: Path) -> None:
    """UserError naming the first curated file whose footer shows a schema column of the wrong type."""
    import pyarrow.parquet as pq

    wanted = _column_types(schema)
    bad: list[str] = []
    for path in files:
        arrow = pq.read_schema(path)
        for name, (words, ok) in wanted.items():
            index = arrow.get_field_index(name)
            if index >= 0 and not ok(arrow.field(index).type):
                shown = path.relative_to(root) if path.is_relative_to(root) else path
                bad.append(f"{shown}: {name} holds {arrow.field(index).type}, expected {words}")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(
            f"curated data of the wrong type: {bad[0]}{more}. It was curated before ingest checked this column: "
            "move the file out of data/curated (keep a copy) and run ingest again, which checks its batch anew "
            "and quarantines it, then split"
        )


def main(params: Params, paths: Paths) -> dict[str, Any]:
    from flows.dataset import curated_part_files, load_curated

    check_curated_types(curated_part_files(paths), params.schema, paths.root)
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
