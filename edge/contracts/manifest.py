"""The release manifest: what a device needs to know about a model before it runs it.

One JSON document (``manifest.json``) ships next to ``model.onnx`` in every release bundle. It names the
feature order and ranges the model expects, the class list in model output order, the binary decision
rule, per-feature reference statistics for on-device drift checks, the gate decision that let the model
out, the lineage it was built from, the oldest runner that may load it, and the model file's digest.

Binary decision rule: the device predicts ``positive_class`` when the model's probability for it, as a
float64, is ``>= decision_threshold``, otherwise the other class. For more than two classes ``positive_class`` is
``None`` and the device takes the most probable class (first on ties); ``decision_threshold`` has no
meaning there.

Reference statistics (``reference[feature]``): ``edges`` are the *inner* bin edges only, strictly
increasing and finite; a value ``x`` falls in bin ``numpy.searchsorted(edges, x, side="right")``, so
there are ``len(edges) + 1`` bins, the first open to -inf and the last to +inf, each closed on the left.
``proportions`` are the training shares of the non-missing values per bin (they sum to 1);
``missing_fraction`` is the training share of missing values. A feature with no non-missing training
value has empty ``edges`` and ``proportions`` and ``missing_fraction`` 1.0.

Validation is strict: every field is required except ``candidate``, ``policy`` and ``columns``, unknown
fields are rejected (a new field means a new ``format`` number), and every error is a ``ManifestError``
naming the field (``features[2].min``, ``policy.shadow_margin``).

``policy`` (``EdgePolicy``) is what the device applies around an update: the on-device shadow comparison
(``shadow_margin``, ``min_shadow_rows``) and the watch after activation (``accuracy_floor``,
``watch_window_s``, ``watch_min_feedback``, ``max_model_errors``); a manifest without one gets
``DEFAULT_POLICY``. ``columns`` (``RecordColumns``) names the event id, device id and event time columns
of the ground-truth records the device uploads. Both are absent from the JSON when ``None``.
``to_json`` is stable (sorted keys) and refuses to emit a manifest ``from_json`` would reject.

Deliberately left out: signing and transport (TUF does both), reading files, deciding versions, and
PSI itself (the device computes it from these statistics). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from re import Pattern
from typing import Any

from edge.contracts.names import RUNNER_VERSION_PATTERN, SHA256_PATTERN, VERSION_PATTERN
from edge.contracts.release_layout import MODEL_FILE
from edge.contracts.schema import DTYPES, ClassValue, FeatureSpec

__all__ = [
    "FORMAT",
    "DEFAULT_POLICY",
    "EdgePolicy",
    "GateRule",
    "GateResult",
    "Lineage",
    "Manifest",
    "ManifestError",
    "ModelFile",
    "RecordColumns",
    "ReferenceStats",
    "model_file",
    "verify_model",
]

FORMAT = 1  # the manifest format this module reads and writes
PROPORTION_TOLERANCE = 1e-6  # |sum(proportions) - 1| allowed for float rounding


class ManifestError(ValueError):
    """The manifest is not valid; the message starts with the offending field's path."""


@dataclass(frozen=True)
class ReferenceStats:
    """Training distribution of one feature (see the module docstring for the bin rule)."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    missing_fraction: float


@dataclass(frozen=True)
class GateRule:
    """One release rule as the gate evaluated it."""

    name: str
    passed: bool
    threshold: float | None
    observed: float | None
    detail: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    metric: str  # the quality metric the gate compared (e.g. "f1_macro")
    metrics: Mapping[str, float]  # the candidate's quality metrics on the holdout
    rules: tuple[GateRule, ...]


@dataclass(frozen=True)
class Lineage:
    data_hash: str
    params_hash: str
    schema_hash: str
    dvc_lock_hash: str | None  # None when the run had no dvc.lock
    git_commit: str
    libraries: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFile:
    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class EdgePolicy:
    """What the device applies around an update (see the module docstring)."""

    shadow_margin: float = 0.02  # [0, 1]: reject a candidate scoring below current - margin on local labels
    min_shadow_rows: int = 200  # >= 1: fewer labelled rows than this and the cloud gate alone decides
    accuracy_floor: float = 0.8  # [0, 1]: watched accuracy below this after activation rolls back
    watch_window_s: float = 3600.0  # > 0 seconds: how long a new activation is watched
    watch_min_feedback: int = 50  # >= 1: labelled rows needed before the floor is judged
    max_model_errors: int = 5  # >= 0: model errors tolerated in the watch window


DEFAULT_POLICY = EdgePolicy()


@dataclass(frozen=True)
class RecordColumns:
    """Column names of the ground-truth records the device uploads (from params.yaml ``schema``)."""

    event_id: str
    device_id: str
    event_time: str


@dataclass(frozen=True)
class Manifest:
    version: str
    created: str  # ISO-8601, UTC
    features: tuple[FeatureSpec, ...]
    label: str  # the label column's name
    classes: tuple[ClassValue, ...]  # model output index order
    positive_class: ClassValue | None  # binary only
    decision_threshold: float
    reference: Mapping[str, ReferenceStats]
    gate: GateResult
    lineage: Lineage
    min_runner_version: str
    model: ModelFile
    format: int = FORMAT
    # The gate's deterministic candidate id, kept when publishing renames ``version`` to the release
    # number; optional (absent from the JSON when None) so candidate manifests stay unchanged.
    candidate: str | None = None
    policy: EdgePolicy | None = None  # None: DEFAULT_POLICY applies (see ``edge_policy``)
    columns: RecordColumns | None = None

    @property
    def edge_policy(self) -> EdgePolicy:
        """The manifest's policy, or ``DEFAULT_POLICY`` when it carries none."""
        return self.policy if self.policy is not None else DEFAULT_POLICY

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {} if self.candidate is None else {"candidate": self.candidate}
        if self.policy is not None:
            extra["policy"] = _policy_dict(self.policy)
        if self.columns is not None:
            extra["columns"] = _columns_dict(self.columns)
        return {
            **extra,
            "format": self.format,
            "version": self.version,
            "created": self.created,
            "features": [_feature_dict(f) for f in self.features],
            "label": self.label,
            "classes": list(self.classes),
            "positive_class": self.positive_class,
            "decision_threshold": self.decision_threshold,
            "reference": {name: _reference_dict(r) for name, r in self.reference.items()},
            "gate": _gate_dict(self.gate),
            "lineage": _lineage_dict(self.lineage),
            "min_runner_version": self.min_runner_version,
            "model": {"file": self.model.file, "sha256": self.model.sha256, "bytes": self.model.bytes},
        }

    def to_json(self) -> str:
        """Stable JSON (sorted keys, two-space indent, trailing newline); validates first."""
        try:
            text = json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"
        except ValueError as exc:  # NaN or infinity somewhere
            raise ManifestError(f"(manifest): {exc}") from None
        Manifest.from_json(text)
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            raw = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"(manifest): not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object) -> Manifest:
        top = _mapping(raw, "(manifest)", _TOP_KEYS, optional=_OPTIONAL_TOP_KEYS)
        fmt = _int(top["format"], "format")
        if fmt != FORMAT:
            raise ManifestError(f"format: unsupported format {fmt} (this runner reads {FORMAT})")
        features = _features(top["features"])
        classes = _classes(top["classes"])
        manifest = cls(
            format=fmt,
            version=_pattern(top["version"], "version", VERSION_PATTERN),
            created=_created(top["created"]),
            features=features,
            label=_label(top["label"]),
            classes=classes,
            positive_class=_positive_class(top["positive_class"], classes),
            decision_threshold=_threshold(top["decision_threshold"]),
            reference=_references(top["reference"], [f.name for f in features]),
            gate=_gate(top["gate"]),
            lineage=_lineage(top["lineage"]),
            min_runner_version=_pattern(top["min_runner_version"], "min_runner_version", RUNNER_VERSION_PATTERN),
            model=_model(top["model"]),
            candidate=_pattern(top["candidate"], "candidate", VERSION_PATTERN) if "candidate" in top else None,
            policy=_policy(top["policy"]) if "policy" in top else None,
            columns=_columns(top["columns"]) if "columns" in top else None,
        )
        return manifest


def model_file(data: bytes, file: str = MODEL_FILE) -> ModelFile:
    """The ``model`` entry for a model file's bytes."""
    return ModelFile(file=file, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def verify_model(manifest: Manifest, data: bytes) -> None:
    """Raise ManifestError unless ``data`` is the model the manifest names (size, then sha256)."""
    if len(data) != manifest.model.bytes:
        raise ManifestError(f"model.bytes: manifest says {manifest.model.bytes}, file has {len(data)}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.model.sha256:
        raise ManifestError(f"model.sha256: manifest says {manifest.model.sha256}, file is {digest}")


# --- serialisation helpers --------------------------------------------------------------------------

def _feature_dict(f: FeatureSpec) -> dict[str, Any]:
    return {"name": f.name, "dtype": f.dtype, "min": f.min, "max": f.max, "unit": f.unit, "nullable": f.nullable}


def _reference_dict(r: ReferenceStats) -> dict[str, Any]:
    return {"edges": list(r.edges), "proportions": list(r.proportions), "missing_fraction": r.missing_fraction}


def _gate_dict(g: GateResult) -> dict[str, Any]:
    rules = [
        {"name": r.name, "passed": r.passed, "threshold": r.threshold, "observed": r.observed, "detail": r.detail}
        for r in g.rules
    ]
    return {"passed": g.passed, "metric": g.metric, "metrics": dict(g.metrics), "rules": rules}


def _policy_dict(p: EdgePolicy) -> dict[str, Any]:
    return {name: getattr(p, name) for name in _POLICY_KEYS}


def _columns_dict(c: RecordColumns) -> dict[str, Any]:
    return {"event_id": c.event_id, "device_id": c.device_id, "event_time": c.event_time}


def _lineage_dict(lin: Lineage) -> dict[str, Any]:
    return {
        "data_hash": lin.data_hash,
        "params_hash": lin.params_hash,
        "schema_hash": lin.schema_hash,
        "dvc_lock_hash": lin.dvc_lock_hash,
        "git_commit": lin.git_commit,
        "libraries": dict(lin.libraries),
    }


# --- validation helpers: each takes the raw value and its field path --------------------------------

_TOP_KEYS = (
    "format", "version", "created", "features", "label", "classes", "positive_class", "decision_threshold",
    "reference", "gate", "lineage", "min_runner_version", "model",
)
_OPTIONAL_TOP_KEYS = ("candidate", "policy", "columns")
_POLICY_KEYS = (
    "shadow_margin", "min_shadow_rows", "accuracy_floor", "watch_window_s", "watch_min_feedback", "max_model_errors",
)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(
    value: object, path: str, keys: tuple[str, ...] | None = None, optional: tuple[str, ...] = ()
) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: expected an object, got {_describe(value)}")
    if keys is not None:
        prefix = "" if path == "(manifest)" else f"{path}."
        for key in keys:
            if key not in value:
                raise ManifestError(f"{prefix}{key}: required field is missing")
        for key in value:
            if key not in keys and key not in optional:
                raise ManifestError(f"{prefix}{key}: unknown field")
    return {str(k): v for k, v in value.items()}


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ManifestError(f"{path}: expected a list, got {_describe(value)}")
    return value


def _str(value: object, path: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ManifestError(f"{path}: expected a non-empty string, got {_describe(value)}")
    return value


def _pattern(value: object, path: str, pattern: Pattern[str]) -> str:
    text = _str(value, path)
    if not pattern.match(text):
        raise ManifestError(f"{path}: {text!r} does not match {pattern.pattern}")
    return text


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(f"{path}: expected true or false, got {_describe(value)}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{path}: expected an integer, got {_describe(value)}")
    return value


def _float(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"{path}: expected a finite number, got {_describe(value)}")
    return float(value)


def _optional_float(value: object, path: str) -> float | None:
    return None if value is None else _float(value, path)


def _created(value: object) -> str:
    text = _str(value, "created")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError(f"created: {text!r} is not an ISO-8601 timestamp") from None
    if moment.utcoffset() != timedelta(0):
        raise ManifestError(f"created: {text!r} is not in UTC (end it with Z or +00:00)")
    return text


def _features(value: object) -> tuple[FeatureSpec, ...]:
    items = _list(value, "features")
    if not items:
        raise ManifestError("features: at least one feature is required")
    features = tuple(_feature(item, f"features[{i}]") for i, item in enumerate(items))
    names = [f.name for f in features]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ManifestError(f"features[{i}].name: {name!r} is used twice")
    return features


def _feature(value: object, path: str) -> FeatureSpec:
    raw = _mapping(value, path, ("name", "dtype", "min", "max", "unit", "nullable"))
    dtype = _str(raw["dtype"], f"{path}.dtype")
    if dtype not in DTYPES:
        raise ManifestError(f"{path}.dtype: {dtype!r} is not one of {list(DTYPES)}")
    low = _optional_float(raw["min"], f"{path}.min")
    high = _optional_float(raw["max"], f"{path}.max")
    if low is not None and high is not None and low > high:
        raise ManifestError(f"{path}.min: {low} is above max {high}")
    return FeatureSpec(
        name=_str(raw["name"], f"{path}.name"),
        dtype=dtype,
        min=low,
        max=high,
        unit=_str(raw["unit"], f"{path}.unit", allow_empty=True),
        nullable=_bool(raw["nullable"], f"{path}.nullable"),
    )


def _label(value: object) -> str:
    return _str(value, "label")


def _class_value(value: object, path: str) -> ClassValue:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ManifestError(f"{path}: expected an integer or a string, got {_describe(value)}")
    return value


def _classes(value: object) -> tuple[ClassValue, ...]:
    items = [_class_value(v, f"classes[{i}]") for i, v in enumerate(_list(value, "classes"))]
    if len(items) < 2:
        raise ManifestError("classes: at least two classes are required")
    if len({type(c) for c in items}) != 1:
        raise ManifestError("classes: mixes integers and strings")
    for i, c in enumerate(items):
        if items.index(c) != i:
            raise ManifestError(f"classes[{i}]: {c!r} is listed twice")
    return tuple(items)


def _positive_class(value: object, classes: tuple[ClassValue, ...]) -> ClassValue | None:
    if value is None:
        if len(classes) == 2:
            raise ManifestError("positive_class: required for a binary model")
        return None
    positive = _class_value(value, "positive_class")
    if positive not in classes or type(positive) is not type(classes[0]):
        raise ManifestError(f"positive_class: {positive!r} is not among classes {list(classes)}")
    if len(classes) != 2:
        raise ManifestError("positive_class: must be null for a model with more than two classes")
    return positive


def _threshold(value: object) -> float:
    threshold = _float(value, "decision_threshold")
    if not 0.0 < threshold < 1.0:
        raise ManifestError(f"decision_threshold: {threshold} is not between 0 and 1 (exclusive)")
    return threshold


def _references(value: object, names: list[str]) -> dict[str, ReferenceStats]:
    raw = _mapping(value, "reference", tuple(names))
    return {name: _reference(raw[name], f"reference.{name}") for name in names}


def _reference(value: object, path: str) -> ReferenceStats:
    raw = _mapping(value, path, ("edges", "proportions", "missing_fraction"))
    edges = tuple(_float(v, f"{path}.edges[{i}]") for i, v in enumerate(_list(raw["edges"], f"{path}.edges")))
    for i in range(1, len(edges)):
        if edges[i] <= edges[i - 1]:
            raise ManifestError(f"{path}.edges[{i}]: edges must be strictly increasing")
    props_raw = _list(raw["proportions"], f"{path}.proportions")
    proportions = tuple(_float(v, f"{path}.proportions[{i}]") for i, v in enumerate(props_raw))
    missing = _float(raw["missing_fraction"], f"{path}.missing_fraction")
    if not 0.0 <= missing <= 1.0:
        raise ManifestError(f"{path}.missing_fraction: {missing} is not between 0 and 1")
    if not proportions and not edges and missing == 1.0:
        return ReferenceStats(edges=(), proportions=(), missing_fraction=missing)
    if len(proportions) != len(edges) + 1:
        raise ManifestError(
            f"{path}.proportions: expected {len(edges) + 1} values (one per bin), got {len(proportions)}"
        )
    if any(p < 0.0 for p in proportions) or abs(math.fsum(proportions) - 1.0) > PROPORTION_TOLERANCE:
        raise ManifestError(f"{path}.proportions: must be non-negative and sum to 1")
    return ReferenceStats(edges=edges, proportions=proportions, missing_fraction=missing)


def _gate(value: object) -> GateResult:
    raw = _mapping(value, "gate", ("passed", "metric", "metrics", "rules"))
    metrics = _mapping(raw["metrics"], "gate.metrics")
    rules = _list(raw["rules"], "gate.rules")
    return GateResult(
        passed=_bool(raw["passed"], "gate.passed"),
        metric=_str(raw["metric"], "gate.metric"),
        metrics={k: _float(v, f"gate.metrics.{k}") for k, v in metrics.items()},
        rules=tuple(_rule(r, f"gate.rules[{i}]") for i, r in enumerate(rules)),
    )


def _rule(value: object, path: str) -> GateRule:
    raw = _mapping(value, path, ("name", "passed", "threshold", "observed", "detail"))
    return GateRule(
        name=_str(raw["name"], f"{path}.name"),
        passed=_bool(raw["passed"], f"{path}.passed"),
        threshold=_optional_float(raw["threshold"], f"{path}.threshold"),
        observed=_optional_float(raw["observed"], f"{path}.observed"),
        detail=_str(raw["detail"], f"{path}.detail", allow_empty=True),
    )


def _lineage(value: object) -> Lineage:
    keys = ("data_hash", "params_hash", "schema_hash", "dvc_lock_hash", "git_commit", "libraries")
    raw = _mapping(value, "lineage", keys)
    libraries = _mapping(raw["libraries"], "lineage.libraries")
    lock = raw["dvc_lock_hash"]
    return Lineage(
        data_hash=_str(raw["data_hash"], "lineage.data_hash"),
        params_hash=_str(raw["params_hash"], "lineage.params_hash"),
        schema_hash=_str(raw["schema_hash"], "lineage.schema_hash"),
        dvc_lock_hash=None if lock is None else _str(lock, "lineage.dvc_lock_hash"),
        git_commit=_str(raw["git_commit"], "lineage.git_commit"),
        libraries={k: _str(v, f"lineage.libraries.{k}") for k, v in libraries.items()},
    )


def _model(value: object) -> ModelFile:
    raw = _mapping(value, "model", ("file", "sha256", "bytes"))
    file = _str(raw["file"], "model.file")
    if "/" in file or "\\" in file or file in {".", ".."}:
        raise ManifestError(f"model.file: {file!r} must be a plain file name")
    size = _int(raw["bytes"], "model.bytes")
    if size <= 0:
        raise ManifestError(f"model.bytes: {size} is not a positive size")
    return ModelFile(file=file, sha256=_pattern(raw["sha256"], "model.sha256", SHA256_PATTERN), bytes=size)


def _fraction(value: object, path: str) -> float:
    number = _float(value, path)
    if not 0.0 <= number <= 1.0:
        raise ManifestError(f"{path}: {number} is not between 0 and 1")
    return number


def _at_least(value: object, path: str, low: int) -> int:
    number = _int(value, path)
    if number < low:
        raise ManifestError(f"{path}: {number} is below {low}")
    return number


def _policy(value: object) -> EdgePolicy:
    raw = _mapping(value, "policy", _POLICY_KEYS)
    window = _float(raw["watch_window_s"], "policy.watch_window_s")
    if window <= 0.0:
        raise ManifestError(f"policy.watch_window_s: {window} is not a positive number of seconds")
    return EdgePolicy(
        shadow_margin=_fraction(raw["shadow_margin"], "policy.shadow_margin"),
        min_shadow_rows=_at_least(raw["min_shadow_rows"], "policy.min_shadow_rows", 1),
        accuracy_floor=_fraction(raw["accuracy_floor"], "policy.accuracy_floor"),
        watch_window_s=window,
        watch_min_feedback=_at_least(raw["watch_min_feedback"], "policy.watch_min_feedback", 1),
        max_model_errors=_at_least(raw["max_model_errors"], "policy.max_model_errors", 0),
    )


def _columns(value: object) -> RecordColumns:
    raw = _mapping(value, "columns", ("event_id", "device_id", "event_time"))
    return RecordColumns(
        event_id=_str(raw["event_id"], "columns.event_id"),
        device_id=_str(raw["device_id"], "columns.device_id"),
        event_time=_str(raw["event_time"], "columns.event_time"),
    )
