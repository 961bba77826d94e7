"""Attribute the failures of one bulk validation back to the batches they came from.

Input: the failed expectation results of the bulk suite as plain dicts (GX COMPLETE format, so each
carries ``unexpected_index_list``: one entry per unexpected row, holding the row's batch key and the
checked values). Output: per batch, the failed results rewritten in the shape the per-batch suite
would have produced for that batch alone (its own unexpected count, its first examples in row order,
the folder's device id instead of the bulk suite's pair check, the event-id uniqueness without the
batch key), so ``flows.ingest.reasons`` words them exactly as it words a per-batch validation. A failed
result that names no rows (a column-level check, an expectation that raised) cannot be attributed: its
batches are returned as ``unattributed`` for the caller to check one by one. Pure: no GX, no I/O.
Leaves out: running the validation (``flows.ingest.validate``) and wording the reason (``reasons``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.contracts.schema import DataSchema
from flows.ingest.reasons import raised
from flows.ingest.suite import BATCH_KEY, FOLDER_DEVICE

Result = dict[str, Any]
EXAMPLES = 20  # as many examples per expectation as GX's SUMMARY format keeps
_PAIR = "expect_column_pair_values_to_be_equal"
_COMPOUND = "expect_compound_columns_to_be_unique"


@dataclass
class Attribution:
    failed: dict[int, list[Result]] = field(default_factory=dict)  # batch key -> per-batch shaped results
    unattributed: bool = False  # some failure named no rows: every batch needs checking on its own


def _config(result: Result) -> tuple[str, dict[str, Any]]:
    config = result.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
    return str(config.get("type", "")), kwargs


def _plain(value: Any) -> Any:
    """numpy scalars as python values (as in a serialised GX result), times as ISO text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _value(entry: Mapping[str, Any], kind: str, kwargs: Mapping[str, Any]) -> Any:
    """The example GX's per-batch result would show for this unexpected row."""
    if kind == _COMPOUND:
        return {c: _plain(entry.get(c)) for c in kwargs.get("column_list", []) if c != BATCH_KEY}
    if kind == _PAIR:
        return _plain(entry.get(kwargs.get("column_A")))
    return _plain(entry.get(kwargs.get("column")))


def _per_batch_config(kind: str, kwargs: dict[str, Any], folder: str, schema: DataSchema) -> dict[str, Any]:
    if kind == _PAIR and kwargs.get("column_B") == FOLDER_DEVICE:
        return {"type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": schema.device_id, "value_set": [folder]}}
    if kind == _COMPOUND:
        return {"type": kind, "kwargs": {**kwargs, "column_list": [c for c in kwargs["column_list"] if c != BATCH_KEY]}}
    return {"type": kind, "kwargs": kwargs}


def attribute(failed: list[Result], folders: Mapping[int, str], schema: DataSchema) -> Attribution:
    """Per batch key, its failed results in per-batch shape (in suite order); see the module docstring.

    ``folders`` maps each batch key of the chunk to its folder's device id.
    """
    out = Attribution()
    for result in failed:
        kind, kwargs = _config(result)
        entries = (result.get("result") or {}).get("unexpected_index_list")
        if not entries or raised(result) is not None:
            out.unattributed = True
            continue
        by_batch: dict[int, list[Any]] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get(BATCH_KEY) not in folders:
                out.unattributed = True
                break
            by_batch.setdefault(int(entry[BATCH_KEY]), []).append(_value(entry, kind, kwargs))
        for key, values in by_batch.items():
            shaped = {
                **_per_batch_config(kind, kwargs, folders[key], schema),
                "success": False,
                "result": {"unexpected_count": len(values), "partial_unexpected_list": values[:EXAMPLES]},
            }
            shaped["expectation_config"] = {"type": shaped.pop("type"), "kwargs": shaped.pop("kwargs")}
            out.failed.setdefault(key, []).append(shaped)
    return out
