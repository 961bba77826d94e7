"""Typed, frozen view of params.yaml: the one source of every knob.

Loads the file once into pydantic models with ``extra="forbid"``, so an unknown or mistyped key is an
error that names the key (``ParamsError``). Holds no defaults for the data schema: the schema is the
user's. Does not read paths or data; see ``edge.contracts.layout`` for the layout under ``data/``.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge.contracts.errors import UserError, yaml_error_line
from edge.contracts.hub_section import HubSection, HubSectionError, parse_hub_section
from edge.contracts.layout import PARAMS_FILE
from edge.contracts.names import CHANNEL_PATTERN
from edge.contracts.schema import DataSchema, SchemaError, parse_schema, sha256_json

Channel = Annotated[str, Field(pattern=CHANNEL_PATTERN.pattern)]


def _contract(parse: Any) -> Any:
    """A pydantic validator running a contract's own parser (its error becomes the field's message)."""
    def validate(raw: object) -> object:
        if isinstance(raw, DataSchema | HubSection):
            return raw
        try:
            return parse(raw)
        except (SchemaError, HubSectionError) as exc:
            raise ValueError(str(exc)) from None
    return validate


SchemaField = Annotated[DataSchema, BeforeValidator(_contract(lambda raw: parse_schema(raw, "schema"))),
                        PlainSerializer(lambda schema: schema.to_dict())]
HubField = Annotated[HubSection, BeforeValidator(_contract(parse_hub_section)),
                     PlainSerializer(lambda hub: asdict(hub))]


class ParamsError(UserError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    chunk_rows: int = Field(default=1_000_000, ge=1)  # rows per bulk validation (bounds memory)
    chunk_batches: int = Field(default=10_000, ge=1)  # batches per bulk validation
    max_future_s: float = Field(default=3600.0, ge=0)  # event times later than the run's clock + this: rejected
    min_event_time: str = "2000-01-01T00:00:00Z"  # event times earlier than this: rejected

    @field_validator("min_event_time")
    @classmethod
    def _aware_time(cls, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("iso_time", "'{value}' is not an ISO 8601 time", {"value": value}) from None
        if moment.tzinfo is None:
            raise PydanticCustomError(
                "aware_time", "'{value}' needs a time zone (e.g. 2000-01-01T00:00:00Z)", {"value": value}
            )
        return value

    def earliest_event_time(self) -> datetime:
        """``min_event_time`` as an aware UTC datetime."""
        return datetime.fromisoformat(self.min_event_time).astimezone(UTC)


SPLIT_STRATEGIES = ("time", "time_per_device", "stratified_random", "group")


class SplitParams(_Frozen):
    """How the holdout is chosen (``flows.stages.split``): the strategy, its size, and the class floor."""

    holdout_fraction: float = Field(gt=0.0, lt=1.0)
    strategy: Literal["time", "time_per_device", "stratified_random", "group"] = "time"
    group_column: str | None = Field(default=None, min_length=1)  # strategy group: a curated column, or "batch"
    seed: int = 0  # stratified_random and group: which rows / groups are held out
    min_class_rows: int = Field(default=5, ge=1)  # fewer training rows of any schema class: split stops

    @model_validator(mode="after")
    def _group_needs_column(self) -> SplitParams:
        if self.strategy == "group" and self.group_column is None:
            raise PydanticCustomError(
                "group_column", "strategy 'group' needs split.group_column (a curated column, or batch)"
            )
        return self


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
    # Recency (flows.stages.train): a row's weight halves every recency_half_life_h hours of age before the
    # newest training row; rows older than window_h hours before it are left out. None: off.
    recency_half_life_h: float | None = Field(default=None, gt=0)
    window_h: float | None = Field(default=None, gt=0)


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
    """What devices apply around an update; written into every manifest (``edge.contracts.manifest.EdgePolicy``)."""

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
    channel: Channel
    expiry_days: ExpiryDays
    edge_policy: EdgePolicyParams


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
    # accuracy_drop also fires when the estimate's whole 95% interval lies more than this below the current
    # release's holdout accuracy (a relative drop); None: the floor alone
    accuracy_margin: float | None = Field(default=None, ge=0.0, le=1.0)
    # Drift/accuracy triggers wait for this many fresh labelled rows: a number, or "auto" (derived from what
    # the gate needs to tell a candidate from the champion, flows.loop.fresh_rows), within the floor and cap.
    min_fresh_rows: int | Literal["auto"] = Field(default="auto", union_mode="left_to_right")
    fresh_rows_floor: int = Field(default=500, ge=0)
    fresh_rows_cap: int = Field(default=20000, ge=1)

    @field_validator("min_fresh_rows", mode="before")
    @classmethod
    def _fresh_rows(cls, value: object) -> object:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value == "auto" or (whole and value >= 0):  # type: ignore[operator]
            return value
        raise PydanticCustomError("fresh_rows", "expected auto or a whole number >= 0, not {value}",
                                  {"value": repr(value)})

    @model_validator(mode="after")
    def _floor_below_cap(self) -> MonitorParams:
        if self.fresh_rows_floor > self.fresh_rows_cap:
            raise PydanticCustomError("fresh_rows_bounds", "fresh_rows_floor is above fresh_rows_cap")
        return self


class PromotionParams(_Frozen):
    """When the promote flow moves a soaked release from one channel to the next (``loop.promotion``)."""

    from_channel: Channel
    to_channel: Channel
    interval_s: float = Field(ge=5)
    soak_s: float = Field(ge=0)
    min_devices: int = Field(ge=1)
    min_labelled_rows: int = Field(ge=0)
    accuracy_tolerance: float = Field(ge=0.0, le=1.0)


class CollectionParams(_Frozen):
    """Adaptive ground-truth collection (``loop.collection``, ``flows.loop.collection``): how much a device
    samples in normal times and while it drifts, within byte budgets per day."""

    enabled: bool
    base_rate: float = Field(ge=0.0, le=1.0)
    raised_rate: float = Field(ge=0.0, le=1.0)
    device_daily_bytes: int = Field(ge=0)
    fleet_daily_bytes: int = Field(ge=0)
    accuracy_margin: float = Field(default=0.03, ge=0.0, le=1.0)  # accuracy this far below its level before: raise
    drift_psi: float | None = Field(default=None, gt=0)  # raise also at this largest feature PSI; None: accuracy only
    rate_step: float = Field(default=0.25, ge=0.0)  # republish a raised rate when its cap grows past (1 + this) x it
    window_s: float = Field(default=86_400.0, gt=0)  # seconds of landed batches a device's rates are measured on


class LoopParams(_Frozen):
    log: str = Field(min_length=1)
    monitor: MonitorParams
    promotion: PromotionParams
    collection: CollectionParams


class StorageParams(_Frozen):
    """Object storage (docs/storage.md): where the hub lands uploads, where ingest quarantines, the S3 endpoint.

    Each location is a local path (the default) or ``s3://bucket/prefix``; credentials come from the AWS
    chain, never from here."""

    endpoint_url: str | None = None  # MinIO/Ceph: http(s)://host:port; None: AWS or $AWS_ENDPOINT_URL
    uploads: str | None = Field(default=None, pattern=r"^s3://[^/]+")  # the hub's landing bucket; None: data/uploads
    quarantine: str = Field(default="data/quarantine", min_length=1)
    releases_mirror: str | None = None  # s3://bucket/prefix devices fetch releases from (pushed after each commit)


class Params(_Frozen):
    schema_: Annotated[SchemaField, Field(alias="schema")]
    simulate: SimulateParams
    ingest: IngestParams
    split: SplitParams
    train: TrainParams
    export: ExportParams
    evaluate: EvaluateParams
    gate: GateParams
    release: ReleaseParams
    hub: HubField = HubSection()
    loop: LoopParams
    storage: StorageParams = StorageParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    @property
    def schema(self) -> DataSchema:  # type: ignore[override]
        return self.schema_

    def section_hash(self, *sections: str) -> str:
        """sha256 of the named sections (all when none): the params part of a release's lineage."""
        dumped = self.model_dump(mode="json", by_alias=True)
        chosen = {k: dumped[k] for k in (sections or tuple(dumped))}
        return sha256_json(chosen)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if first["type"] == "missing":
        return f"{key}: required key is missing"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "value_error" and key in ("schema", "hub"):  # a contract's parser named the key itself
        return str(first["msg"]).removeprefix("Value error, ") + more
    return f"{key}: {first['msg']}{more}"


_FEATURE_INDEX = re.compile(r"\bschema\.features\[(\d+)\]")


def _by_feature_name(message: str, raw: dict[Any, Any]) -> str:
    """``schema.features[51].x`` as ``schema.features.xmv_11.x`` (``['a.b']`` for a name with a dot)."""
    schema = raw.get("schema")
    features = schema.get("features") if isinstance(schema, dict) else None

    def named(found: re.Match[str]) -> str:
        index = int(found.group(1))
        item = features[index] if isinstance(features, list) and index < len(features) else None
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            return found.group(0)
        return f"schema.features.{name}" if "." not in name and " " not in name else f"schema.features[{name!r}]"

    return _FEATURE_INDEX.sub(named, message)


def parse_params(raw: object, source: str = PARAMS_FILE) -> Params:
    """Validate an already-loaded mapping; raises ParamsError naming the first bad key (a feature by name)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {_by_feature_name(_describe(exc), raw)}") from None


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
        raise ParamsError(yaml_error(path, exc)) from None
    return parse_params(raw, str(path))


def check_yaml(path: Path | str) -> None:
    """ParamsError (line and column) when the file at ``path`` is not valid YAML; nothing else is checked (a
    missing or unreadable file is left to whoever reads it next)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(yaml_error(path, exc)) from None


def yaml_error(path: Path | str, exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error, keeping its line and column (edge.contracts.errors.yaml_error_line)."""
    return yaml_error_line(path, exc)
