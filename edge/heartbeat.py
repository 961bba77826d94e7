"""The heartbeat a runner sends the hub: its state report in the shape ``POST .../heartbeat`` accepts.

``heartbeat_body(report, events)`` keeps the hub's fields (version, previous version, channel, health,
drift, rolling accuracy, backlog, counters, evictions), turns state-dir events into the hub's
``{kind, version, at, detail}`` and stamps the device clock. Leaves out sending it (edge.hub_client) and
gathering the report (edge.runner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edge.contracts.wire import HEARTBEAT_EVENT_DETAIL_MAX, HEARTBEAT_EVENT_KIND_MAX

__all__ = ["heartbeat_body", "utc_now"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def heartbeat_body(report: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counters = {k: int(v) for k, v in report["counters"].items() if isinstance(v, int) and v >= 0}
    return {
        "model_version": report["model_version"],
        "previous_version": report["previous_version"],
        "channel": report["channel"],
        "health": report["health"],
        "drift": report["drift"],
        "rolling_accuracy": report["rolling_accuracy"],
        "spool_backlog": report["spool_backlog"],
        "counters": counters,
        "evictions": dict(report["evictions"]),
        "events": [
            {"kind": str(e.get("event", "event"))[:HEARTBEAT_EVENT_KIND_MAX], "version": e.get("version"),
             "at": _aware(str(e.get("at", ""))), "detail": str(e.get("detail", ""))[:HEARTBEAT_EVENT_DETAIL_MAX]}
            for e in events
        ],
        "clock": utc_now(),
    }


def _aware(text: str) -> str:
    return text.replace("Z", "+00:00") if text else utc_now()
