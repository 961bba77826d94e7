"""``POST /v1/devices/{device_id}/heartbeat``: what a runner reports about itself, and the hub's answer.

``HeartbeatBody`` is strict (unknown fields refused) and bounded by edge.contracts.wire (map sizes, name
and event-kind patterns, version length, event count, integers JSON keeps exactly) and names
(``CHANNEL_PATTERN``); ``HEALTH_STATES`` and ``EVICTION_REASONS`` are the accepted words. A heartbeat
may carry the runner's recent events (model rejected, activated, rolled back; ``config_rejected`` for a
runner policy it refused), the version a rollback would return to, its spool's eviction counts per reason
and the runner policy version it applied (``config_version``). Leaves out storing it (hub.store.heartbeats).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from edge.contracts.names import CHANNEL_PATTERN
from edge.contracts.wire import (
    EVICTION_REASONS,
    HEALTH_REASON_MAX,
    HEALTH_STATES,
    HEARTBEAT_EVENT_DETAIL_MAX,
    HEARTBEAT_EVENT_KIND_PATTERN,
    HEARTBEAT_EVENTS_MAX,
    HEARTBEAT_MAP_MAX,
    HEARTBEAT_NAME_PATTERN,
    MAX_JSON_INT,
    VERSION_MAX_LENGTH,
)

__all__ = ["HeartbeatBody", "HeartbeatEvent", "HeartbeatRecorded"]

Name = Annotated[str, StringConstraints(pattern=HEARTBEAT_NAME_PATTERN)]
HEARTBEAT_EXAMPLE: dict[str, Any] = {
    "model_version": "7",
    "channel": "canary",
    "health": "degraded",
    "health_reason": "accuracy 0.778 below floor 0.8",
    "health_since": "2026-11-27T01:40:00Z",
    "drift": {"temperature": 0.04, "vibration": 0.11},
    "rolling_accuracy": 0.93,
    "spool_backlog": 0,
    "counters": {"predictions": 120000, "uploads": 118},
    "clock": "2026-11-27T02:00:00Z",
    "previous_version": "6",
    "events": [{"kind": "activated", "version": "7", "at": "2026-11-27T01:00:00Z", "detail": "shadow accuracy 0.94"}],
    "evictions": {"random": 12},
    "config_version": 3,
}
EvictionReason = Literal[EVICTION_REASONS]  # type: ignore[valid-type]  # a tuple of literals from the contract
Version = Annotated[str, StringConstraints(min_length=1, max_length=VERSION_MAX_LENGTH)]
Count = Annotated[int, Field(ge=0, le=MAX_JSON_INT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class HeartbeatEvent(BaseModel):
    """Something the runner did with a model: e.g. ``rejected``, ``activated``, ``rolled_back``."""

    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, StringConstraints(pattern=HEARTBEAT_EVENT_KIND_PATTERN)]
    version: Version | None = None
    at: AwareDatetime
    detail: Annotated[str, StringConstraints(max_length=HEARTBEAT_EVENT_DETAIL_MAX)] = ""


class HeartbeatBody(BaseModel):
    """What a runner reports about itself, every poll interval."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [HEARTBEAT_EXAMPLE]})

    model_version: Version | None = None
    previous_version: Version | None = None  # what a rollback would return to
    channel: Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN.pattern)]
    health: Literal[HEALTH_STATES]  # type: ignore[valid-type]
    # why health is not "ok", in words ("accuracy 0.778 below floor 0.8"), and since when (device clock)
    health_reason: Annotated[str, StringConstraints(max_length=HEALTH_REASON_MAX)] = ""
    health_since: AwareDatetime | None = None
    drift: dict[Name, Finite] = Field(default_factory=dict, max_length=HEARTBEAT_MAP_MAX)
    rolling_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    spool_backlog: Annotated[int, Field(ge=0, le=MAX_JSON_INT)] = 0
    counters: dict[Name, Count] = Field(default_factory=dict, max_length=HEARTBEAT_MAP_MAX)
    clock: AwareDatetime  # the device's own clock when it sent this (skew shows against received_at)
    events: list[HeartbeatEvent] = Field(default_factory=list, max_length=HEARTBEAT_EVENTS_MAX)  # newest last
    evictions: dict[EvictionReason, Annotated[int, Field(ge=0, le=MAX_JSON_INT)]] = Field(default_factory=dict)
    # the signed runner policy version it has applied for its channel (edge.contracts.runner_policy); null: none
    config_version: Annotated[StrictInt, Field(ge=1, le=MAX_JSON_INT)] | None = None


class HeartbeatRecorded(BaseModel):
    device_id: str
    received_at: datetime
    state: dict[str, Any]
