"""Bring a freshly read batch to the curated column types, without hiding bad values from validation.

Keeps only the schema's columns and the optional record columns (``edge.contracts.record.RECORD_COLUMNS``), in
a fixed order. Feature columns holding numbers become float64 (int-declared features become nullable
``Int64`` when every value is whole, so GX can check the declared type); numbers written as text are
parsed, and any value that is not a number is left in place as text so the GX type expectation fails
and names the column. Event ids get the same treatment as int features, without ever passing through
float64 (ids from a nanosecond clock exceed 2**53): whole numbers in the int64 range become ``Int64``
(an int64 column stays as it is), anything else stays in place for GX to reject. The label becomes
the classes' type when that is safe; the event time becomes ``datetime64[ns, UTC]`` (naive times are
taken as UTC) or the batch is ``Unreadable``, naming the column. A CSV's probabilities written as JSON
lists become lists of floats, as in Parquet. Does not judge ranges, nulls, classes or uniqueness: that
is the GX suite's job.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from edge.contracts.record import INCLUSION_PROBABILITY, PROBABILITIES, RECORD_COLUMNS
from edge.contracts.schema import DataSchema, FeatureSpec
from flows.ingest.reader import Unreadable


def normalise(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """A new frame with the kept columns in order (schema columns, then record columns) and fixed types."""
    columns: dict[str, pd.Series] = {}
    by_name = {f.name: f for f in schema.features}
    for name in [*schema.column_names, *RECORD_COLUMNS]:
        if name not in frame.columns:
            continue
        column = _plain(frame[name])
        if name in by_name:
            column = as_feature(column, by_name[name])
        elif name == schema.label.name:
            column = as_label(column, schema.label.classes)
        elif name == schema.device_id:
            column = _as_device_id(column)
        elif name == schema.event_id:
            column = as_event_id(column)
        elif name == schema.event_time:
            column = as_event_time(column, name)
        elif name == INCLUSION_PROBABILITY:
            column = as_numbers(column)
        elif name == PROBABILITIES:
            column = as_probability_lists(column)
        columns[name] = column
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def _plain(column: pd.Series) -> pd.Series:
    """Categoricals and pandas string dtypes become plain object columns; index reset."""
    column = column.reset_index(drop=True)
    special = isinstance(column.dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(column.dtype)
    if special and not ptypes.is_object_dtype(column.dtype):
        column = column.astype(object).where(column.notna(), None)
    return column


def as_numbers(column: pd.Series) -> pd.Series:
    """float64 when every value is a number; else an object column mixing numbers with the bad values."""
    if ptypes.is_bool_dtype(column.dtype) or ptypes.is_numeric_dtype(column.dtype):
        return column.astype("float64")
    if not ptypes.is_object_dtype(column.dtype):
        return column  # datetimes and the like: the GX type expectation reports them
    if column.isna().all():
        return pd.Series(np.nan, index=column.index, dtype="float64")
    try:
        parsed = pd.to_numeric(column, errors="coerce")
    except (TypeError, ValueError):
        return column
    bad = parsed.isna() & column.notna()
    if not bad.any():
        return parsed.astype("float64")
    return column.where(bad, parsed.astype(object))


def number_list(text: object) -> list[float] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def as_probability_lists(column: pd.Series) -> pd.Series:
    """JSON list text (a CSV's probabilities) becomes lists of floats, as in Parquet; else unchanged."""
    if not ptypes.is_object_dtype(column.dtype) or not column.map(type).eq(str).all():
        return column
    lists = column.map(number_list)
    return column if lists.isna().any() else lists


def _whole(values: pd.Series) -> bool:
    present = values.dropna().to_numpy(dtype="float64")
    return bool(np.all(np.isfinite(present)) and np.all(present == np.round(present)))


def as_feature(column: pd.Series, feature: FeatureSpec) -> pd.Series:
    numbers = as_numbers(column)
    if feature.dtype != "int":
        return numbers
    if numbers.dtype == "float64" and _whole(numbers):
        return numbers.astype("Int64")
    if ptypes.is_object_dtype(numbers.dtype):  # keep whole numbers as ints so only bad values fail
        return numbers.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    return numbers


def as_label(column: pd.Series, classes: tuple[int | str, ...]) -> pd.Series:
    """Cast to the classes' type when no value changes meaning; otherwise leave it for GX to reject."""
    numeric = ptypes.is_numeric_dtype(column.dtype) and not ptypes.is_bool_dtype(column.dtype)
    if isinstance(classes[0], str):
        if numeric and column.notna().all() and _whole(column):
            return column.astype("int64").astype(str).astype(object)
        return column
    numbers = as_numbers(column)
    if numbers.dtype == "float64" and numbers.notna().all() and _whole(numbers):
        return numbers.astype("int64")
    return numbers


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
EXACT_IN_FLOAT = 1 << (np.finfo(np.float64).nmant + 1)  # beyond this, float64 does not hold every integer


def _id_value(value: object) -> object:
    """A whole number in the int64 range as int; anything else unchanged (GX names it)."""
    if isinstance(value, bool | np.bool_):
        return value
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        if text[1:].isdigit() if text[:1] in "+-" else text.isdigit():
            number = int(text)
    elif isinstance(value, np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer() and abs(value) <= EXACT_IN_FLOAT
    ):
        number = int(value)
    if isinstance(number, int) and _INT64_MIN <= number <= _INT64_MAX:
        return number
    return value


def as_event_id(column: pd.Series) -> pd.Series:
    """Integer ids: an integer column is kept; whole floats (exact ones) and digit strings become ``Int64``."""
    if ptypes.is_bool_dtype(column.dtype) or ptypes.is_integer_dtype(column.dtype):
        return column  # bool fails the GX type expectation; ints (Int64 too) pass as they are
    if ptypes.is_float_dtype(column.dtype):
        present = column.dropna().to_numpy(dtype="float64")
        exact = np.all(np.isfinite(present)) and np.all(present == np.round(present))
        if exact and np.all(np.abs(present) <= EXACT_IN_FLOAT):
            return column.astype("Int64")
        return column
    if not ptypes.is_object_dtype(column.dtype):
        return column
    missing = column.isna().to_numpy()
    values = [None if gone else _id_value(v) for v, gone in zip(column.tolist(), missing, strict=True)]
    if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
        return pd.Series(pd.array(values, dtype="Int64"), index=column.index)
    return pd.Series(values, index=column.index, dtype=object)


def _as_device_id(column: pd.Series) -> pd.Series:
    if ptypes.is_integer_dtype(column.dtype):
        return column.astype(str).astype(object)
    return column


def as_event_time(column: pd.Series, name: str) -> pd.Series:
    """datetime64[ns, UTC]; naive times are UTC; text must be ISO 8601. Raises Unreadable naming ``name``."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC")
    elif ptypes.is_datetime64_dtype(column.dtype):
        column = column.dt.tz_localize("UTC")
    elif column.isna().all():
        return pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    elif not ptypes.is_object_dtype(column.dtype):
        raise Unreadable(f"{name}: {column.dtype} values are not timestamps (write ISO 8601 times)")
    else:
        column = _parse_times(column, name)
    try:
        return column.dt.as_unit("ns")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise Unreadable(f"{name}: times outside the years 1677-2262") from None


def _parse_times(column: pd.Series, name: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
    except (TypeError, ValueError, OverflowError) as exc:
        raise Unreadable(f"{name}: values are not timestamps ({exc})".splitlines()[0]) from None
    bad = parsed.isna() & column.notna()
    if bad.any():
        example = column[bad].iloc[0]
        count = int(bad.sum())
        noun = "value" if count == 1 else "values"
        raise Unreadable(f"{name}: {count} {noun} not ISO 8601 timestamps (e.g. {example!r})")
    return parsed
