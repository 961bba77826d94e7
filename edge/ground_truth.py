"""The uploaded ground-truth row, with privacy applied, and its deterministic CSV encoding.

``build_row`` turns what the runner knows at feedback time (manifest, prediction, features in
manifest order, label, event time, device id, context fields, the filter's selection) into one row:
the features, the label, the event id / device id / event time columns (names passed in, as
params.yaml names them), then ``edge.contracts.record.RECORD_COLUMNS`` (model version, prediction,
probabilities as JSON list text in class order, upload reason, inclusion probability), then the
context fields in the order given.

Privacy happens here, before anything is written for upload: a ``local_only`` context field is
dropped entirely; a ``local_only`` feature keeps its column (the hub's schema check needs it) but its
value is always empty. Names of the label, id, time and record columns cannot be local-only, and a
context field may not shadow any row column (ValueError).

``encode_csv`` writes UTF-8 CSV with a header row, ``\\n`` line ends and minimal quoting: empty for
None/NaN, ``repr`` for floats (shortest round-trip text), ``str`` otherwise; the same rows and columns
always give the same bytes (the upload's idempotency key is their sha256). ``encode_rows`` uses the
union of the rows' columns in first-seen order. Leaves out choosing rows (edge.upload_filter),
storing them (edge.spool) and Parquet (the device has no pyarrow). Standard library only.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edge.contracts.manifest import Manifest
from edge.contracts.record import (
    INCLUSION_PROBABILITY,
    MODEL_VERSION,
    PREDICTION,
    PROBABILITIES,
    RECORD_COLUMNS,
    UPLOAD_REASON,
)
from edge.contracts.schema import ClassValue
from edge.inference import Prediction
from edge.upload_filter import Selection

__all__ = [
    "CellValue",
    "ColumnNames",
    "UploadColumns",
    "build_row",
    "encode_csv",
    "encode_rows",
    "event_time_text",
]

CellValue = str | float | int | None  # what a row may hold (JSON-serialisable, CSV-writable)


class ColumnNames(Protocol):
    """Names of the id and time columns (params.yaml ``schema``); edge.contracts.manifest's record columns fit."""

    @property
    def event_id(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def event_time(self) -> str: ...


@dataclass(frozen=True)
class UploadColumns:
    event_id: str = "event_id"
    device_id: str = "device_id"
    event_time: str = "event_time"


def event_time_text(moment: datetime | str) -> str:
    """ISO-8601 UTC text for an aware datetime or ISO text; ValueError for naive or non-UTC-convertible."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(f"event_time: {moment!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("event_time: a timezone-aware time is required (naive times are ambiguous)")
    return moment.astimezone(UTC).isoformat()


def _feature_value(value: float | int | None, integer: bool) -> CellValue:
    if value is None:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    if not math.isfinite(number):
        raise ValueError(f"feature value {value!r} is not finite")
    return int(number) if integer and number.is_integer() else number


def build_row(
    manifest: Manifest,
    prediction: Prediction,
    features: Sequence[float | int | None],
    label: ClassValue,
    event_time: datetime | str,
    device_id: str,
    context: Mapping[str, CellValue],
    selection: Selection,
    columns: ColumnNames,
    local_only: Sequence[str] = (),
) -> dict[str, CellValue]:
    """One upload row (see the module docstring); nothing named in ``local_only`` keeps a value."""
    if len(features) != len(manifest.features):
        raise ValueError(f"features: expected {len(manifest.features)} values in manifest order, got {len(features)}")
    hidden = frozenset(local_only)
    fixed = (manifest.label, columns.event_id, columns.device_id, columns.event_time, *RECORD_COLUMNS)
    for name in fixed:
        if name in hidden:
            raise ValueError(f"local_only: {name!r} is a required upload column and cannot be local-only")
    row: dict[str, CellValue] = {}
    for spec, value in zip(manifest.features, features, strict=True):
        row[spec.name] = None if spec.name in hidden else _feature_value(value, spec.dtype == "int")
    probabilities = [float(prediction.probabilities[c]) for c in manifest.classes]
    row |= {
        manifest.label: label,
        columns.event_id: int(prediction.event_id),
        columns.device_id: device_id,
        columns.event_time: event_time_text(event_time),
        MODEL_VERSION: prediction.model_version,
        PREDICTION: prediction.label,
        PROBABILITIES: json.dumps(probabilities, allow_nan=False),
        UPLOAD_REASON: selection.reason,
        INCLUSION_PROBABILITY: float(selection.inclusion_probability),
    }
    for name, extra in context.items():
        if name in hidden:
            continue
        if name in row:
            raise ValueError(f"context: {name!r} would overwrite the upload column of the same name")
        if extra is not None and (isinstance(extra, bool) or not isinstance(extra, str | int | float)):
            raise ValueError(f"context: {name!r} must be text, a number or None, got {type(extra).__name__}")
        if isinstance(extra, float) and not math.isfinite(extra):
            if not math.isnan(extra):
                raise ValueError(f"context: {name!r} is {extra!r}, not a finite number")
            extra = None
        row[name] = extra
    return row


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if not math.isfinite(value):
            raise ValueError(f"cannot encode {value!r} in an upload")
        return repr(value)
    return str(value)


def encode_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> bytes:
    """UTF-8 CSV with a header; a row's missing keys are empty cells. Same input, same bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return buffer.getvalue().encode("utf-8")


def encode_rows(rows: Sequence[Mapping[str, object]]) -> bytes:
    """``encode_csv`` over the union of the rows' columns, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        for name in row:
            columns.setdefault(name, None)
    return encode_csv(rows, list(columns))
