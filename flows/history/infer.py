"""Infer params.yaml's ``schema`` section from a historian export, for the user to review.

Every numeric column that is not a role column (label, event id, event time, device id) becomes a feature:
``int`` when every file holds it as integers, else ``float``; min/max are the observed range widened by
``margin`` of its span on each side (rounded outward, and said in a comment beside the feature);
``nullable`` when any value is empty (or NaN). The label's distinct values become the classes, sorted
(whole-number floats count as integers); a label with empty values, fewer than two classes or more than
``max_classes`` is refused. Columns that cannot be features are never dropped silently: text, dates and
true/false columns, columns missing from some files, columns without a finite value, the upload record
columns the runner adds (``prediction``, ...) and names the schema rules reject (empty, repeated) are
listed as skipped with the reason, in the YAML and by the caller on stderr. ``render`` returns the YAML
text; ``InferredSchema.data()`` the mapping, checked with the project's own parser before it is used.
Leaves out reading files (``flows.history.reader``) and writing params.yaml (``flows.history.params_file``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edge.contracts.record import RECORD_COLUMNS
from edge.contracts.schema import ClassValue, DataSchema, parse_schema
from flows.history.reader import HistoryError, Roles, Scan

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class _Column:
    """What the files say about one column so far."""

    kind: str = ""  # "int" | "float" | the Arrow type of a non-numeric column
    low: float = math.inf
    high: float = -math.inf
    nulls: int = 0
    non_finite: int = 0
    files: int = 0

    def add(self, column: pa.ChunkedArray) -> None:
        kind = _kind(column.type)
        self.kind = kind if not self.kind or self.kind == kind else _merge(self.kind, kind)
        self.nulls += column.null_count
        if kind not in ("int", "float"):
            return
        values = column.cast(pa.float64()) if kind == "int" else column
        if kind == "float":
            nan = pc.sum(pc.is_nan(values).cast(pa.int64())).as_py() or 0
            infinite = pc.sum(pc.is_inf(values).cast(pa.int64())).as_py() or 0
            self.nulls += nan
            self.non_finite += infinite
            if nan or infinite:
                values = pc.filter(values, pc.is_finite(values))
        span = pc.min_max(values).as_py()
        if span["min"] is not None:
            self.low, self.high = min(self.low, span["min"]), max(self.high, span["max"])


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    return "text" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else str(kind)


def _merge(old: str, new: str) -> str:
    numbers = {"int", "float"}
    if old in numbers and new in numbers:
        return "float"
    return old if old not in numbers else new


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    low: float
    high: float
    observed: tuple[float, float]
    nulls: int


@dataclass
class InferredSchema:
    """The inferred section: features, classes, what was skipped and why, and where it came from."""

    roles: Roles
    margin: float
    features: list[Feature] = field(default_factory=list)
    classes: list[ClassValue] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (column, reason)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    files: int = 0
    source: str = ""

    def data(self) -> dict[str, Any]:
        """The ``schema`` mapping as params.yaml holds it."""
        return {
            "features": [{"name": f.name, "dtype": f.dtype, "min": f.low, "max": f.high, "nullable": f.nulls > 0}
                         for f in self.features],
            "label": {"name": self.roles.label, "classes": list(self.classes)},
            "event_id": self.roles.event_id,
            "device_id": self.roles.device_id,
            "event_time": self.roles.event_time,
        }

    def parsed(self) -> DataSchema:
        """The section through the project's own schema parser (a bug here must never reach params.yaml)."""
        return parse_schema(self.data(), "schema")


# --- bounds ----------------------------------------------------------------------------------------------

def widen(low: float, high: float, margin: float) -> tuple[float, float]:
    """[low, high] widened by ``margin`` of its span on each side (of its size when the span is 0),
    rounded outward to four significant digits of the span."""
    span = high - low
    scale = span if span > 0 else max(abs(low), abs(high), 1.0)
    pad = margin * scale
    exponent = math.floor(math.log10(scale)) - 3
    step = 10.0**exponent
    digits = max(0, -exponent)
    out_low = round(math.floor((low - pad) / step) * step, digits)
    out_high = round(math.ceil((high + pad) / step) * step, digits)
    return min(out_low, low), max(out_high, high)


# --- inference -------------------------------------------------------------------------------------------

def _label_values(column: pa.ChunkedArray, name: str, path: Path) -> list[Any]:
    if column.null_count:
        raise HistoryError(f"label {name!r} has {column.null_count} empty values in {path}: every row needs a "
                           f"class; drop or fill those rows first")
    if pa.types.is_floating(column.type):
        if pc.sum(pc.is_nan(column).cast(pa.int64())).as_py():
            raise HistoryError(f"label {name!r} has empty (NaN) values in {path}: every row needs a class")
        whole = pc.all(pc.equal(column, pc.round(column))).as_py()
        if not whole:
            raise HistoryError(f"label {name!r} holds fractions in {path}: classes must be whole numbers or text")
        return [int(v) for v in pc.unique(column).to_pylist()]
    if pa.types.is_integer(column.type) or pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return list(pc.unique(column).to_pylist())
    raise HistoryError(f"label {name!r} is {column.type} in {path}: classes must be whole numbers or text")


def _classes(values: set[Any], name: str) -> list[ClassValue]:
    if len({type(v) for v in values}) > 1:  # ints in one file, text in another
        values = {str(v) for v in values}
    classes = sorted(values)
    if len(classes) < 2:
        raise HistoryError(f"label {name!r} has only one class ({classes}): a model needs at least two")
    return classes


def _name_problem(name: str, names: Sequence[str]) -> str | None:
    """Why the project's schema rules reject ``name`` as a feature name (None: they accept it)."""
    if not name.strip():
        return "empty column name (schema rule: a column needs a non-empty name)"
    if names.count(name) > 1:
        return "column name used twice in the file (schema rule: every column name is unique)"
    if name in RECORD_COLUMNS:
        return (f"reserved for the runner's upload records (schema rule: features may not be named "
                f"{', '.join(RECORD_COLUMNS)})")
    return None


def infer(files: Sequence[Path], roles: Roles, margin: float = 0.1, max_classes: int = 100,
          on_bytes: Callable[[int], None] | None = None, source: str = "") -> InferredSchema:
    """Read every file once and infer the schema section (see the module docstring)."""
    columns: dict[str, _Column] = {}
    order: list[str] = []
    problems: dict[str, str] = {}
    labels: set[Any] = set()
    out = InferredSchema(roles, margin, files=len(files), source=source)
    for path in files:
        seen: set[str] = set()
        for chunk in Scan(path, on_bytes).chunks():
            names = chunk.column_names
            if roles.label not in names:
                raise HistoryError(f"{path}: no label column {roles.label!r} (columns: {', '.join(names[:8])}"
                                   f"{', ...' if len(names) > 8 else ''}); pass --label with the right name")
            out.rows += chunk.num_rows
            for index, name in enumerate(names):
                problem = _name_problem(name, names)
                if name not in columns:
                    columns[name] = _Column()
                    order.append(name)
                if problem and name in roles.names:
                    raise HistoryError(f"{path}: column {name!r}: {problem}")
                if problem:
                    problems.setdefault(name, problem)
                    continue
                if name == roles.label:
                    labels.update(_label_values(chunk.column(index), name, path))
                    if len(labels) > max_classes:
                        raise HistoryError(f"label {roles.label!r} has more than {max_classes} distinct values: "
                                           f"is it the right column? (raise --max-classes if it is)")
                elif name not in roles.names:
                    columns[name].add(chunk.column(index))
                seen.add(name)
        for name in seen:
            columns[name].files += 1
    if out.rows == 0:
        raise HistoryError(f"{source or files[0]}: no rows")
    out.classes = _classes(labels, roles.label)
    for role in roles.names[1:]:
        if role not in columns:
            out.notes.append(f"no {role!r} column in the data: `edgeloop import` adds it (or name yours with "
                             f"--{ {roles.event_id: 'id', roles.event_time: 'time'}.get(role, 'device') })")
    for name in order:
        if name in roles.names:
            continue
        column = columns[name]
        reason = problems.get(name) or _skip_reason(column, len(files))
        if reason:
            out.skipped.append((name, reason))
            continue
        low, high = widen(column.low, column.high, margin)
        out.features.append(Feature(name, column.kind, low, high, (column.low, column.high), column.nulls))
        if column.non_finite:
            out.notes.append(f"{name}: {column.non_finite} infinite values; ingest quarantines their batches")
    if not out.features:
        raise HistoryError(f"no numeric feature columns besides the roles {list(roles.names)}; "
                           f"skipped: {', '.join(n for n, _ in out.skipped) or 'none'}")
    out.parsed()
    return out


def _skip_reason(column: _Column, files: int) -> str | None:
    if column.kind not in ("int", "float"):
        return f"not numeric ({column.kind})"
    if column.files < files:
        return f"missing from {files - column.files} of {files} files"
    if column.low > column.high:
        return "no finite value in any row"
    return None


# --- YAML ------------------------------------------------------------------------------------------------

def _scalar(value: object) -> str:
    """A YAML scalar PyYAML reads back as the same value."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    text = str(value)
    return text if _PLAIN.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _shown(value: float) -> str:
    return f"{value:.6g}"


def render(schema: InferredSchema) -> str:
    """The ``schema:`` block as YAML text with review comments (parses to ``schema.data()``)."""
    percent = f"{schema.margin * 100:g}%"
    lines = [
        f"schema:  # inferred by `edgeloop schema infer` from {schema.source or 'the data'} "
        f"({schema.rows} rows, {schema.files} file{'s' if schema.files != 1 else ''}): review it",
        "  features:",
    ]
    for f in schema.features:
        empty = f", {f.nulls} empty" if f.nulls else ""
        lines.append(
            f"    - {{name: {_scalar(f.name)}, dtype: {f.dtype}, min: {_scalar(f.low)}, max: {_scalar(f.high)}, "
            f"nullable: {_scalar(f.nulls > 0)}}}  # observed [{_shown(f.observed[0])}, {_shown(f.observed[1])}]"
            f"{empty}, widened by {percent}"
        )
    if schema.skipped:
        lines.append("  # skipped (not features):")
        lines.extend(f"  #   {name}: {reason}" for name, reason in schema.skipped)
    classes = ", ".join(_scalar(c) for c in schema.classes)
    lines.append(f"  label: {{name: {_scalar(schema.roles.label)}, classes: [{classes}]}}")
    lines.append(f"  event_id: {_scalar(schema.roles.event_id)}")
    lines.append(f"  device_id: {_scalar(schema.roles.device_id)}")
    lines.append(f"  event_time: {_scalar(schema.roles.event_time)}")
    return "\n".join(lines) + "\n"
