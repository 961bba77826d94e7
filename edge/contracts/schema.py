"""The data schema: what a ground-truth row looks like (params.yaml ``schema:``, the manifest's features).

``FeatureSpec`` is one model input column (name, dtype, physical range, unit, nullable), in model input
order; ``LabelSpec`` the label column with its classes; ``DataSchema`` the whole row: features, label,
and the event id, device id and event time columns. The pipeline reads it from params.yaml, the gate
writes its features into every release manifest, the hub checks upload headers against it, and the
runner checks every input row against the manifest's copy. ``parse_schema(raw)`` validates a mapping
strictly (unknown keys, wrong types, ranges, repeated names) and names the offending key by feature
name: ``features.torque_nm.dtype: expected 'float' or 'int', got 'double'``.

Leaves out: reading YAML (the caller does) and anything about the model (classes order is the model's
output order once a manifest carries it). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.contracts.errors import UserError

__all__ = [
    "DTYPES",
    "ClassValue",
    "DataSchema",
    "FeatureSpec",
    "LabelSpec",
    "SchemaError",
    "parse_feature",
    "parse_schema",
    "sha256_json",
]

ClassValue = int | str
DTYPES: tuple[str, ...] = ("float", "int")
ID_COLUMNS: tuple[str, ...] = ("event_id", "device_id", "event_time")


class SchemaError(UserError, ValueError):
    """The schema is not valid; the message starts with the offending key's path."""


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column, in model input order."""

    name: str
    dtype: str = "float"  # "float" | "int"
    min: float | None = None
    max: float | None = None
    unit: str = ""
    nullable: bool = True  # missing values (None/NaN) allowed; they reach the model as NaN

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "min": self.min, "max": self.max, "unit": self.unit,
                "nullable": self.nullable}


@dataclass(frozen=True)
class LabelSpec:
    name: str
    classes: tuple[ClassValue, ...]
    positive: ClassValue | None = None  # binary only; defaults to the last class

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive_class(self) -> ClassValue:
        return self.positive if self.positive is not None else self.classes[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "positive": self.positive}


@dataclass(frozen=True)
class DataSchema:
    features: tuple[FeatureSpec, ...]
    label: LabelSpec
    event_id: str
    device_id: str
    event_time: str

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def column_names(self) -> list[str]:
        """Every required column of a ground-truth batch, features first."""
        return [*self.feature_names, self.label.name, self.event_id, self.device_id, self.event_time]

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features], "label": self.label.to_dict(),
                "event_id": self.event_id, "device_id": self.device_id, "event_time": self.event_time}

    def fingerprint(self) -> str:
        """sha256 of the schema: changes whenever a column, dtype, range or class changes."""
        return sha256_json(self.to_dict())


def sha256_json(obj: object) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- validation ----------------------------------------------------------------------------------------

def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(value: object, path: str, keys: tuple[str, ...], required: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(f"{path}: expected a mapping, got {_shown(value)}")
    for key in value:
        if key not in keys:
            raise SchemaError(f"{path}.{key}: unknown key (expected one of {list(keys)})")
    for key in required:
        if key not in value:
            raise SchemaError(f"{path}.{key}: required key is missing")
    return value


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(f"{path}: expected a non-empty column name, got {_shown(value)}")
    return value


def _bound(value: object, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(f"{path}: expected a finite number or null, got {_shown(value)}")
    return float(value)


def _class_value(value: object, path: str) -> ClassValue:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SchemaError(f"{path}: expected an integer or a string, got {_shown(value)}")
    return value


def parse_feature(raw: object, path: str, require_all: bool = False) -> FeatureSpec:
    """One feature; ``require_all`` (the manifest's rule) makes every key required."""
    keys = ("name", "dtype", "min", "max", "unit", "nullable")
    top = _mapping(raw, path, keys, keys if require_all else ("name",))
    name = _name(top["name"], f"{path}.name")
    where = f"{path.rsplit('[', 1)[0]}.{name}" if path.endswith("]") and "." not in name else path
    dtype = top.get("dtype", "float")
    if dtype not in DTYPES:
        raise SchemaError(f"{where}.dtype: expected 'float' or 'int', got {_shown(dtype)}")
    low, high = _bound(top.get("min"), f"{where}.min"), _bound(top.get("max"), f"{where}.max")
    if low is not None and high is not None and low > high:
        raise SchemaError(f"{where}.min: feature {name!r}: min {low} is above max {high}")
    unit = top.get("unit", "")
    if not isinstance(unit, str):
        raise SchemaError(f"{where}.unit: expected text, got {_shown(unit)}")
    nullable = top.get("nullable", True)
    if not isinstance(nullable, bool):
        raise SchemaError(f"{where}.nullable: expected true or false, got {_shown(nullable)}")
    return FeatureSpec(name, str(dtype), low, high, unit, nullable)


def parse_classes(raw: object, path: str) -> tuple[ClassValue, ...]:
    """At least two distinct classes, all integers or all strings, in model output order."""
    if not isinstance(raw, list | tuple):
        raise SchemaError(f"{path}: expected a list of classes, got {_shown(raw)}")
    classes = tuple(_class_value(v, f"{path}[{i}]") for i, v in enumerate(raw))
    if len(classes) < 2:
        raise SchemaError(f"{path}: at least two classes are required")
    if len({type(c) for c in classes}) != 1:
        raise SchemaError(f"{path}: classes mix numbers and strings: {list(classes)}")
    if len(set(classes)) != len(classes):
        raise SchemaError(f"{path}: classes repeat: {list(classes)}")
    return classes


def _label(raw: object, path: str) -> LabelSpec:
    top = _mapping(raw, path, ("name", "classes", "positive"), ("name", "classes"))
    name = _name(top["name"], f"{path}.name")
    classes = parse_classes(top["classes"], f"{path}.classes")
    positive = top.get("positive")
    if positive is not None:
        positive = _class_value(positive, f"{path}.positive")
        if positive not in classes or type(positive) is not type(classes[0]):
            raise SchemaError(f"{path}.positive: label {name!r}: positive {positive!r} is not among classes "
                              f"{list(classes)}")
    return LabelSpec(name, classes, positive)


def parse_schema(raw: object, path: str = "schema") -> DataSchema:
    """A validated DataSchema from a params.yaml-style mapping; SchemaError naming the key otherwise."""
    top = _mapping(raw, path, ("features", "label", *ID_COLUMNS), ("features", "label", *ID_COLUMNS))
    items = top["features"]
    if not isinstance(items, list | tuple) or not items:
        raise SchemaError(f"{path}.features: expected a non-empty list of features, got {_shown(items)}")
    features = tuple(parse_feature(item, f"{path}.features[{i}]") for i, item in enumerate(items))
    label = _label(top["label"], f"{path}.label")
    roles = {role: _name(top[role], f"{path}.{role}") for role in ID_COLUMNS}
    schema = DataSchema(features, label, roles["event_id"], roles["device_id"], roles["event_time"])
    names = schema.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(f"{path}: column names used twice: {repeated}")
    return schema
