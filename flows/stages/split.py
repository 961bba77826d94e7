"""split: choose the holdout the candidate is judged on, by the strategy in ``params.split``.

Strategies (``split.strategy``), each deterministic for the same curated data and params:

- ``time`` (default): the newest ``holdout_fraction`` of rows by event time; rows sharing the cut-off
  timestamp all go to the holdout, so no training row is later than or simultaneous with a holdout row.
- ``time_per_device``: the same cut made within each device, so every device is in both sides.
- ``stratified_random``: a random ``holdout_fraction`` of each class (``split.seed``).
- ``group``: whole groups of ``split.group_column`` held out (groups drawn with ``split.seed`` until the
  holdout reaches ``holdout_fraction`` of rows); a group never straddles. The column is a curated
  column or ``batch`` (the uploaded file each row came from, read from the chunk ledgers).

Before writing anything, every schema class must have at least ``split.min_class_rows`` training rows;
else the stage stops with one line naming the classes, their counts, why, and a strategy to try (a
model that never saw a class cannot predict it, and training would only find out after minutes).
Classes absent from the holdout are a warning, recorded in ``split.json``. Before reading rows, every
curated file's column types are checked from its footer, so a file curated before ingest checked a
column is named in one line. Outputs and their row order (event time, device id, event id) are the
same whatever the strategy. Does not balance or resample classes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema
from flows.params import Params, SplitParams
from flows.stages import StageError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

BATCH_GROUP = "batch"  # split.group_column value meaning "the landing batch of each row"
NULL_GROUP = "<null>"


def _order(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    order = [schema.event_time, schema.device_id, schema.event_id]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _newest(times: pd.Series, holdout_fraction: float) -> np.ndarray:
    """Holdout mask of rows sorted by time: the newest fraction, plus every row sharing the cut-off time."""
    cut_index = len(times) - max(1, round(len(times) * holdout_fraction))
    result: np.ndarray = (times >= times.iloc[cut_index]).to_numpy()
    return result


def _parts(frame: pd.DataFrame, is_holdout: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[~is_holdout].reset_index(drop=True), frame[is_holdout].reset_index(drop=True)


def time_split(frame: pd.DataFrame, schema: DataSchema, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame sorted by event time into (train, holdout) at a time cut-off."""
    frame = _order(frame, schema)
    if len(frame) < 2:
        raise StageError(f"need at least 2 curated rows to split, have {len(frame)}")
    train, holdout = _parts(frame, _newest(frame[schema.event_time], holdout_fraction))
    if train.empty:
        raise StageError("every curated row shares the newest timestamp: nothing left to train on")
    return train, holdout


def time_per_device_split(
    frame: pd.DataFrame, schema: DataSchema, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest fraction of each device's rows held out (a device with one row trains)."""
    frame = _order(frame, schema)
    is_holdout = np.zeros(len(frame), dtype=bool)
    for rows in frame.groupby(schema.device_id, sort=True).indices.values():
        if len(rows) >= 2:  # ``rows`` ascend, and the frame is in time order: these rows are too
            is_holdout[rows] = _newest(frame[schema.event_time].iloc[rows], holdout_fraction)
    train, holdout = _parts(frame, is_holdout)
    if train.empty or holdout.empty:
        raise StageError(f"time_per_device left {'nothing to train on' if train.empty else 'no holdout'}: "
                         "each device needs rows at two or more times")
    return train, holdout


def stratified_random_split(
    frame: pd.DataFrame, schema: DataSchema, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random ``holdout_fraction`` of each label value held out; a value with one row trains."""
    frame = _order(frame, schema)
    rng = np.random.default_rng(seed)
    is_holdout = np.zeros(len(frame), dtype=bool)
    labels = frame[schema.label.name].astype(str)
    for value in sorted(labels.unique()):  # a fixed order: the draws do not depend on row order
        rows = np.flatnonzero((labels == value).to_numpy())
        if len(rows) >= 2:
            take = min(len(rows) - 1, max(1, round(len(rows) * holdout_fraction)))
            is_holdout[rng.permutation(rows)[:take]] = True
    return _parts(frame, is_holdout)


def group_split(
    frame: pd.DataFrame, schema: DataSchema, holdout_fraction: float, column: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Whole groups of ``column`` held out: groups in a seeded random order until the holdout has
    ``holdout_fraction`` of the rows, always leaving one group to train."""
    frame = _order(frame, schema)
    keys = frame[column].astype("string").fillna(NULL_GROUP).to_numpy(dtype=object)
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise UserError(f"split.group_column {column!r} has {len(groups)} distinct value(s): a group split needs "
                        "at least 2 groups; choose another column or split.strategy")
    target = max(1, round(len(frame) * holdout_fraction))
    sizes = pd.Series(keys).value_counts()
    held: list[str] = []
    count = 0
    for index in np.random.default_rng(seed).permutation(len(groups)):
        if count >= target or len(held) == len(groups) - 1:
            break
        held.append(groups[index])
        count += int(sizes[groups[index]])
    train, holdout = _parts(frame, np.isin(keys, held))
    return train, holdout, {"groups": len(groups), "holdout_groups": len(held)}


def _group_column(frame: pd.DataFrame, settings: SplitParams) -> str:
    """The frame column the group split reads (``batch`` maps to the loaded batch column)."""
    from flows.dataset import BATCH_COLUMN

    wanted = settings.group_column or ""
    if wanted in frame.columns and wanted != BATCH_COLUMN:
        return wanted
    if wanted == BATCH_GROUP and BATCH_COLUMN in frame.columns:
        return BATCH_COLUMN
    columns = ", ".join(c for c in frame.columns if c != BATCH_COLUMN)
    raise UserError(f"split.group_column {wanted!r} is not a column of the curated data; use one of: {columns}, "
                    f"or {BATCH_GROUP} (the uploaded file each row came from)")


def split_frame(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(train, holdout, facts about the split) by ``params.split.strategy``."""
    schema, settings = params.schema, params.split
    fraction = settings.holdout_fraction
    info: dict[str, Any] = {}
    if len(frame) < 2:
        raise StageError(f"need at least 2 curated rows to split, have {len(frame)}")
    if settings.strategy == "time":
        train, holdout = time_split(frame, schema, fraction)
    elif settings.strategy == "time_per_device":
        train, holdout = time_per_device_split(frame, schema, fraction)
    elif settings.strategy == "stratified_random":
        train, holdout = stratified_random_split(frame, schema, fraction, settings.seed)
        info["seed"] = settings.seed
    else:
        column = _group_column(frame, settings)
        train, holdout, info = group_split(frame, schema, fraction, column, settings.seed)
        info = {"group_column": settings.group_column, **info, "seed": settings.seed}
    if holdout.empty:
        raise StageError(f"split.strategy={settings.strategy} left no holdout rows")
    return train, holdout, info


def class_rows(frame: pd.DataFrame, schema: DataSchema) -> dict[str, int]:
    """Rows per schema class (as text), in schema order."""
    counts = frame[schema.label.name].astype(str).value_counts()
    return {str(c): int(counts.get(str(c), 0)) for c in schema.label.classes}


def _suggestion(strategy: str) -> str:
    if strategy in ("time", "time_per_device"):
        return "try split.strategy: stratified_random or group"
    if strategy == "group":
        return "try another split.seed, or split.strategy: stratified_random"
    return "lower split.holdout_fraction, or add rows of these classes"


def _names(classes: list[str], counts: dict[str, int]) -> str:
    """'18, 19 have 0' when the counts agree, else '3 (2), 5 (4) have'."""
    values = {counts[c] for c in classes}
    if len(values) == 1:
        return f"{', '.join(classes)} {'has' if len(classes) == 1 else 'have'} {values.pop()}"
    return f"{', '.join(f'{c} ({counts[c]})' for c in classes)} have"


def class_problem(train: dict[str, int], total: dict[str, int], settings: SplitParams) -> str | None:
    """The one-line reason the split cannot train every class, or None when each has enough rows."""
    floor = settings.min_class_rows
    short = [c for c, n in train.items() if n < floor]
    if not short:
        return None
    rare = [c for c in short if total[c] < floor]  # no strategy gives these enough rows
    moved = [c for c in short if c not in rare]
    pct = f"{settings.holdout_fraction:.0%}"
    sentences = []
    if moved:
        word = "class" if len(moved) == 1 else "classes"
        where = {"time": f"the newest {pct} of rows", "time_per_device": f"the newest {pct} of each device's rows"}
        if settings.strategy in where and all(train[c] == 0 for c in moved):
            why = f"they occur only in {where[settings.strategy]}"
        else:
            why = ", ".join(f"{c}: {total[c] - train[c]} of {total[c]} rows held out" for c in moved)
        sentences.append(
            f"{word} {_names(moved, train)} training rows (split.min_class_rows: {floor}) with "
            f"split.strategy={settings.strategy} ({why}); {_suggestion(settings.strategy)}"
        )
    if rare:
        word = "class" if len(rare) == 1 else "classes"
        sentences.append(
            f"{word} {_names(rare, total)} rows in all the curated data, fewer than split.min_class_rows "
            f"({floor}): add rows of {'it' if len(rare) == 1 else 'them'}, lower split.min_class_rows, or remove "
            f"{'it' if len(rare) == 1 else 'them'} from schema.label.classes"
        )
    return "; ".join(sentences)


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
    from flows.dataset import BATCH_COLUMN, curated_part_files, load_curated
    from flows.storage import location

    schema, settings = params.schema, params.split
    check_curated_types(curated_part_files(paths), schema, paths.root)
    quarantine = location(params.storage.quarantine, paths.root, params.storage.endpoint_url)
    by_batch = settings.strategy == "group" and settings.group_column == BATCH_GROUP
    frame = load_curated(paths, schema, quarantine, with_batch=by_batch and BATCH_GROUP not in schema.column_names)
    train, holdout, info = split_frame(frame, params)
    train, holdout = (part.drop(columns=[BATCH_COLUMN], errors="ignore") for part in (train, holdout))
    train_rows, holdout_rows = class_rows(train, schema), class_rows(holdout, schema)
    total = {c: train_rows[c] + holdout_rows[c] for c in train_rows}
    problem = class_problem(train_rows, total, settings)
    if problem is not None:
        raise UserError(problem)
    missing = [c for c, n in holdout_rows.items() if n == 0]
    if missing:
        log.warning("the holdout has no rows of classes %s: the candidate is not judged on them", ", ".join(missing))
    paths.split.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("holdout", holdout)):
        tmp = paths.split / f".{name}.parquet.tmp"
        part.to_parquet(tmp, index=False)
        tmp.replace(paths.split / f"{name}.parquet")
    time_col = schema.event_time
    summary = {
        "strategy": settings.strategy,
        **info,
        "holdout_fraction": settings.holdout_fraction,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "train_end": str(train[time_col].max()),
        "holdout_start": str(holdout[time_col].min()),
        "holdout_end": str(holdout[time_col].max()),
        "train_class_rows": train_rows,
        "holdout_class_rows": holdout_rows,
        "holdout_missing_classes": missing,
    }
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.metrics / "split.json", json.dumps(summary, indent=2, sort_keys=True))
    return summary
