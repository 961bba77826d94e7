"""Turn GX per-expectation results into one line a person can act on.

Input is ``result.to_json_dict()["results"]`` (plain dicts), so this is pure and testable without GX.
Failures are listed in suite order, joined by "; ", e.g. ``torque_nm: 12 values outside [0, 200];
failure: 3 values not in classes [0, 1] (e.g. 2)``; event times outside their bounds say which bound,
e.g. ``event_time: 40 values in the future (later than 2026-12-02T11:00:00Z: the ingest clock plus
ingest.max_future_s) (e.g. 2099-01-01T00:00:00Z)``. A missing column is reported once (its other
expectations could not run); so is a column of the wrong type (its range check could not run).
Leaves out: deciding whether a batch passes (the caller reads the overall ``success``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from edge.contracts.schema import DataSchema

Result = dict[str, Any]
_TYPE_CHECK = "expect_column_values_to_be_in_type_list"
_COLUMNS_CHECK = "expect_table_columns_to_match_set"


def _kwargs(result: Result) -> dict[str, Any]:
    return dict(result.get("expectation_config", {}).get("kwargs", {}))


def _kind(result: Result) -> str:
    return str(result.get("expectation_config", {}).get("type", "expectation"))


def _target(result: Result) -> str:
    kwargs = _kwargs(result)
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_list" in kwargs:
        return "+".join(map(str, kwargs["column_list"]))
    return "table"


def raised(result: Result) -> str | None:
    """The exception message if GX could not evaluate the expectation, else None."""
    info = result.get("exception_info") or {}
    entries = info.values() if "raised_exception" not in info else [info]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "error").splitlines()[0][:160]
    return None


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _example(res: dict[str, Any]) -> str:
    sample = res.get("partial_unexpected_list") or []
    if not sample:
        return ""
    shown = repr(sample[0])
    return f" (e.g. {shown[:40]}{'...' if len(shown) > 40 else ''})"


def _count(res: dict[str, Any], noun: str = "value") -> str:
    """Count with its noun: 1 value, 12 values, some values."""
    count = res.get("unexpected_count")
    return f"{count} {noun}" if count == 1 else f"{'some' if count is None else count} {noun}s"


def _interval(kwargs: dict[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    left = "(" if kwargs.get("strict_min") or low is None else "["
    right = ")" if kwargs.get("strict_max") or high is None else "]"
    low_s = "-inf" if low is None else _number(low)
    high_s = "inf" if high is None else _number(high)
    return f"{left}{low_s}, {high_s}{right}"


def _type_failure(column: str, kwargs: dict[str, Any], res: dict[str, Any]) -> str:
    wanted = "numbers" if "float" in kwargs.get("type_list", []) else "whole numbers"
    if "observed_value" in res:
        return f"{column}: column type {res['observed_value']}, expected {wanted}"
    return f"{column}: {_count(res)} of the wrong type, expected {wanted}{_example(res)}"


def _moment(value: Any) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _shown_time(value: Any) -> str:
    moment = _moment(value)
    return str(value) if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _time_failure(column: str, kwargs: dict[str, Any], res: dict[str, Any]) -> str:
    """Event times outside [ingest.min_event_time, run clock + ingest.max_future_s], said plainly."""
    low, high = _moment(kwargs.get("min_value")), _moment(kwargs.get("max_value"))
    sample = [m for m in map(_moment, res.get("partial_unexpected_list") or []) if m is not None]
    example = f" (e.g. {_shown_time(sample[0])})" if sample else ""
    if sample and high is not None and all(m > high for m in sample):
        return (f"{column}: {_count(res)} in the future (later than {_shown_time(high)}: the ingest clock plus "
                f"ingest.max_future_s){example}")
    if sample and low is not None and all(m < low for m in sample):
        return f"{column}: {_count(res)} before ingest.min_event_time ({_shown_time(low)}){example}"
    low_s, high_s = _shown_time(kwargs.get("min_value")), _shown_time(kwargs.get("max_value"))
    return f"{column}: {_count(res)} outside [{low_s}, {high_s}] (ingest.min_event_time, clock + max_future_s){example}"


def _in_set_failure(column: str, kwargs: dict[str, Any], res: dict[str, Any], schema: DataSchema) -> str:
    values = list(kwargs.get("value_set") or [])
    if column == schema.label.name:
        return f"{column}: {_count(res)} not in classes {values}{_example(res)}"
    if column == schema.device_id:
        folder = values[0] if len(values) == 1 else values
        return f"{column}: {_count(res, 'row')} from another device than the folder {folder!r}{_example(res)}"
    return f"{column}: {_count(res)} not in {values}{_example(res)}"


def describe_one(result: Result, schema: DataSchema) -> str:
    """Plain words for one failed expectation result."""
    kind, column, kwargs = _kind(result), _target(result), _kwargs(result)
    res = result.get("result") or {}
    error = raised(result)
    if error is not None:
        return f"{column}: could not be checked ({error})"
    if kind == _TYPE_CHECK:
        return _type_failure(column, kwargs, res)
    if kind == "expect_column_values_to_be_between" and column == schema.event_time:
        return _time_failure(column, kwargs, res)
    if kind == "expect_column_values_to_be_between":
        return f"{column}: {_count(res)} outside {_interval(kwargs)}{_example(res)}"
    if kind == "expect_column_values_to_not_be_null":
        return f"{column}: {_count(res)} missing"
    if kind == "expect_column_values_to_be_in_set":
        return _in_set_failure(column, kwargs, res, schema)
    if kind == "expect_compound_columns_to_be_unique":
        return f"{column}: {_count(res, 'row')} with a repeated event id{_example(res)}"
    if kind == "expect_table_row_count_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        return f"{res.get('observed_value', '?')} rows, expected between {low} and {high}"
    return f"{column}: {kind.removeprefix('expect_').replace('_', ' ')} failed"


def _missing_columns(failed: Sequence[Result]) -> list[str]:
    missing: list[str] = []
    for result in failed:
        if _kind(result) == _COLUMNS_CHECK:
            details = (result.get("result") or {}).get("details") or {}
            missing.extend(map(str, (details.get("mismatched") or {}).get("missing") or []))
        elif _kind(result) == "expect_column_to_exist":
            missing.append(_target(result))
    return missing


def describe_failures(results: Sequence[Result], schema: DataSchema) -> str:
    """One line naming every failed expectation; "" when all passed."""
    failed = [r for r in results if not r.get("success")]
    missing = _missing_columns(failed)
    mistyped = {_target(r) for r in failed if _kind(r) == _TYPE_CHECK and raised(r) is None}
    parts = [f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"] if missing else []
    for result in failed:
        column = _target(result)
        if _kind(result) in (_COLUMNS_CHECK, "expect_column_to_exist") and missing:
            continue
        if any(c in missing for c in column.split("+")):
            continue
        if column in mistyped and _kind(result) != _TYPE_CHECK and raised(result) is not None:
            continue
        parts.append(describe_one(result, schema))
    return "; ".join(parts)
