"""The heartbeat a runner sends the hub: its state report in the shape ``POST .../heartbeat`` accepts.

``heartbeat_body(report, events)`` keeps the hub's fields (version, previous version, channel, health
with its reason and since when, drift, rolling accuracy, backlog, counters, evictions), turns state-dir
events into the hub's ``{kind, version, at, detail}`` and stamps the device clock, within the limits
``edge.contracts.wire`` gives both sides: at most ``HEARTBEAT_EVENTS_MAX`` events (the newest), kinds and details cut to
``HEARTBEAT_EVENT_KIND_MAX`` / ``HEARTBEAT_EVENT_DETAIL_MAX`` characters, drift and counters maps of at most
``HEARTBEAT_MAP_MAX`` entries whose names match ``HEARTBEAT_NAME_PATTERN`` (others are left out, so one
odd feature name cannot get every heartbeat refused), counts within ``MAX_JSON_INT``. ``config_version`` is
the signed runner policy version in force (edge.policy_updates); it is left out while none is (the hub
reads a missing one as null), so a runner without a policy speaks to a hub that predates the field.

Leaves out sending it (edge.hub_client) and gathering the report (edge.reporting).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edge.contracts.wire import (
    HEALTH_REASON_MAX,
    HEARTBEAT_EVENT_DETAIL_MAX,
    HEARTBEAT_EVENT_KIND_MAX,
    HEARTBEAT_EVENTS_MAX,
    HEARTBEAT_MAP_MAX,
    HEARTBEAT_NAME_PATTERN,
    MAX_JSON_INT,
)

__all__ = ["heartbeat_body", "utc_now"]

_NAME = re.compile(HEARTBEAT_NAME_PATTERN)


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def heartbeat_body(report: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counters = {k: min(int(v), MAX_JSON_INT) for k, v in report["counters"].items() if isinstance(v, int) and v >= 0}
    drift = {k: float(v) for k, v in report["drift"].items() if math.isfinite(v)}
    config_version = report.get("config_version")
    return ({} if config_version is None else {"config_version": int(config_version)}) | {
        "model_version": report["model_version"],
        "previous_version": report["previous_version"],
        "channel": report["channel"],
        "health": report["health"],
        "health_reason": str(report.get("health_reason") or "")[:HEALTH_REASON_MAX],
        "health_since": report.get("health_since"),
        "drift": _named(drift),
        "rolling_accuracy": report["rolling_accuracy"],
        "spool_backlog": report["spool_backlog"],
        "counters": _named(counters),
        "evictions": dict(report["evictions"]),
        "events": [
            {"kind": str(e.get("event", "event"))[:HEARTBEAT_EVENT_KIND_MAX], "version": e.get("version"),
             "at": _aware(str(e.get("at", ""))), "detail": str(e.get("detail", ""))[:HEARTBEAT_EVENT_DETAIL_MAX]}
            for e in events[-HEARTBEAT_EVENTS_MAX:]
        ],
        "clock": utc_now(),
    }


def _named(values: Mapping[str, Any]) -> dict[str, Any]:
    """The first ``HEARTBEAT_MAP_MAX`` entries whose names the hub accepts."""
    kept: dict[str, Any] = {}
    for name, value in values.items():
        if len(kept) == HEARTBEAT_MAP_MAX:
            break
        if _NAME.match(name):
            kept[name] = value
    return kept


def _aware(text: str) -> str:
    return text.replace("Z", "+00:00") if text else utc_now()
