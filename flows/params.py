"""Typed, frozen view of params.yaml: the one source of every knob.

Loads the file once into pydantic models with ``extra="forbid"``, so an unknown or mistyped key is an
error that names the key (``ParamsError``). Holds no defaults for the data schema: the schema is the
user's. Does not read paths or data; see ``flows.paths`` for the layout under ``data/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeloop.errors import UserError

PARAMS_FILE = "params.yaml"


class ParamsError(UserError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Frozen):
    name: str = Field(min_length=1)
    dtype: Literal["float", "int"] = "float"
    min: float | None = None
    max: float | None = None
    unit: str = ""
    nullable: bool = True  # missing sensor values are allowed (HGB handles NaN natively)

    @model_validator(mode="after")
    def _range_ordered(self) -> Feature:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is above max {self.max}")
        return self


ClassValue = int | str


class Label(_Frozen):
    name: str = Field(min_length=1)
    classes: tuple[ClassValue, ...] = Field(min_length=2)
    positive: ClassValue | None = None  # binary only; defaults to the last class

    @model_validator(mode="after")
    def _classes_valid(self) -> Label:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"label {self.name!r}: classes repeat: {list(self.classes)}")
        if len({type(c) for c in self.classes}) != 1:
            raise ValueError(f"label {self.name!r}: classes mix numbers and strings")
        if self.positive is not None and self.positive not in self.classes:
            raise ValueError(f"label {self.name!r}: positive {self.positive!r} is not among classes")
        return self

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive_class(self) -> ClassValue:
        return self.positive if self.positive is not None else self.classes[-1]


class Schema(_Frozen):
    features: tuple[Feature, ...] = Field(min_length=1)
    label: Label
    event_id: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    event_time: str = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> Schema:
        names = self.column_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column names used twice: {dupes}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def column_names(self) -> list[str]:
        """Every required column of a ground-truth batch, features first."""
        return [*self.feature_names, self.label.name, self.event_id, self.device_id, self.event_time]

    def fingerprint(self) -> str:
        """sha256 of the schema: changes whenever a column, dtype, range or class changes."""
        return _sha256_json(self.model_dump(mode="json"))


class SimulateParams(_Frozen):
    devices: int = Field(ge=1, le=10_000)
    rows_per_device: int = Field(ge=0)
    batch_rows: int = Field(ge=1)
    seed: int
    start: str
    interval_s: float = Field(gt=0)
    drift: Literal["none", "sensor_offset", "new_regime", "relationship"] = "none"
    drift_start: float = Field(ge=0.0, le=1.0)


class IngestParams(_Frozen):
    sources: tuple[str, ...] = Field(min_length=1)
    min_rows: int = Field(ge=1)
    max_rows: int = Field(ge=1)
    max_bytes: int = Field(ge=1)
    data_docs: bool = True


class SplitParams(_Frozen):
    holdout_fraction: float = Field(gt=0.0, lt=1.0)


class HGBParams(_Frozen):
    max_iter: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    max_leaf_nodes: int = Field(ge=2)
    l2_regularization: float = Field(ge=0)


class RFParams(_Frozen):
    n_estimators: int = Field(ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(ge=1)


class LogRegParams(_Frozen):
    C: float = Field(gt=0)
    max_iter: int = Field(ge=1)


class TrainParams(_Frozen):
    model: Literal["hgb", "rf", "logreg"]
    seed: int
    hgb: HGBParams
    rf: RFParams
    logreg: LogRegParams


class ExportParams(_Frozen):
    opset: int = Field(ge=9, le=21)
    parity_max_abs_diff: float = Field(gt=0)


class EvaluateParams(_Frozen):
    max_rows: int = Field(ge=100)
    drift_method: str
    drift_threshold: float = Field(gt=0)
    reference_bins: int = Field(ge=2, le=100)
    champion: str


class GateParams(_Frozen):
    metric: Literal["accuracy", "balanced_accuracy", "f1_macro"]
    min_quality: float = Field(ge=0.0, le=1.0)
    champion_tolerance: float = Field(ge=0.0, le=1.0)
    max_drift_share: float = Field(ge=0.0, le=1.0)
    max_quarantined_share: float = Field(ge=0.0, le=1.0)
    decision_threshold: float = Field(gt=0.0, lt=1.0)
    min_runner_version: str


class ExpiryDays(_Frozen):
    root: float = Field(gt=0)
    targets: float = Field(gt=0)
    snapshot: float = Field(gt=0)
    timestamp: float = Field(gt=0)

    @model_validator(mode="after")
    def _timestamp_shortest(self) -> ExpiryDays:
        if not self.timestamp <= self.snapshot <= self.root:
            raise ValueError("expected timestamp <= snapshot <= root expiry")
        return self


class EdgePolicyParams(_Frozen):
    """What devices apply around an update; written into every manifest (``edge.manifest.EdgePolicy``)."""

    shadow_margin: float = Field(ge=0.0, le=1.0)
    min_shadow_rows: int = Field(ge=1)
    accuracy_floor: float = Field(ge=0.0, le=1.0)
    watch_window_s: float = Field(gt=0)
    watch_min_feedback: int = Field(ge=1)
    max_model_errors: int = Field(ge=0)


class ReleaseParams(_Frozen):
    repository: str = Field(min_length=1)
    root_key: str = Field(min_length=1)
    online_keys: str = Field(min_length=1)
    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    expiry_days: ExpiryDays
    edge_policy: EdgePolicyParams


class HubParams(_Frozen):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    database: str = Field(min_length=1)
    admin_token_file: str = Field(min_length=1)
    max_upload_bytes: int = Field(ge=1)
    poll_interval_s: float = Field(gt=0)
    stale_after_polls: float = Field(gt=0)


class MonitorParams(_Frozen):
    """When the monitor flow runs ``retrain`` (see params.yaml ``loop.monitor``)."""

    interval_s: float = Field(ge=5)
    cooldown_s: float = Field(ge=0)
    nightly_cron: str = Field(min_length=9)
    min_new_rows: int = Field(ge=1)
    drift_psi: float = Field(gt=0)
    drift_device_share: float = Field(gt=0.0, le=1.0)
    accuracy_floor: float = Field(ge=0.0, le=1.0)
    min_rows_for_accuracy: int = Field(ge=1)
    min_fresh_rows: int = Field(ge=0)


class PromotionParams(_Frozen):
    """When the promote flow moves a soaked release from one channel to the next (``loop.promotion``)."""

    from_channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    to_channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    interval_s: float = Field(ge=5)
    soak_s: float = Field(ge=0)
    min_devices: int = Field(ge=1)
    min_labelled_rows: int = Field(ge=0)
    accuracy_tolerance: float = Field(ge=0.0, le=1.0)


class LoopParams(_Frozen):
    log: str = Field(min_length=1)
    monitor: MonitorParams
    promotion: PromotionParams


class Params(_Frozen):
    schema_: Annotated[Schema, Field(alias="schema")]
    simulate: SimulateParams
    ingest: IngestParams
    split: SplitParams
    train: TrainParams
    export: ExportParams
    evaluate: EvaluateParams
    gate: GateParams
    release: ReleaseParams
    hub: HubParams
    loop: LoopParams

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def schema(self) -> Schema:  # type: ignore[override]
        return self.schema_

    def section_hash(self, *sections: str) -> str:
        """sha256 of the named sections (all when none): the params part of a release's lineage."""
        dumped = self.model_dump(mode="json", by_alias=True)
        chosen = {k: dumped[k] for k in (sections or tuple(dumped))}
        return _sha256_json(chosen)


def _sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if first["type"] == "missing":
        return f"{key}: required key is missing"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{key}: {first['msg']}{more}"


def parse_params(raw: object, source: str = PARAMS_FILE) -> Params:
    """Validate an already-loaded mapping; raises ParamsError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {_describe(exc)}") from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; every failure is a ParamsError with one clear line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the project folder, or pass --root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    return parse_params(raw, str(path))
