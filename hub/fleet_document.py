"""The fleet document (``GET /v1/fleet``) from stored rows, the loop's estimates and the time now.

Pure: ``build_fleet(rows, now, stale_after_s, estimates)`` decides each device's status
(hub.fleet_status), withholds the reported health, reason and since-when of a device that is not online
(never shown healthy; ``last_said`` tells what it said last, and when), takes its model version, largest
drift, backlog and estimated accuracy from its last heartbeat and the estimates (hub.fleet_loop), and
adds the fleet summary and who runs which release. Leaves out querying (hub.store.fleet), reading the
estimates file (hub.store.estimates) and rendering (hub.fleet_view).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hub.fleet_loop import device_estimate, fleet_estimates, max_drift, releases
from hub.fleet_status import ONLINE, status_of
from hub.schemas.fleet import Fleet, FleetDevice, LastHeartbeat, UploadTotals
from hub.store.fleet import FleetRow

__all__ = ["build_fleet", "last_said"]


def _moment(value: object) -> datetime | None:
    """An ISO 8601 time from a stored heartbeat, aware (UTC when it had no zone); None when absent or odd."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def last_said(health: object, reason: str, since: datetime | None, received: datetime) -> str:
    """What an offline device last reported, worded as past: "last said degraded: <reason> (since ...) at ..."."""
    words = f"last said {health}" + (f": {reason}" if reason else "")
    if since is not None:
        words += f" (since {_shown(since)})"
    return f"{words} at {_shown(received)}"


def _config_version(reported: dict[str, Any]) -> int | None:
    version = reported.get("config_version")
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= 1 else None


def _device(row: FleetRow, now: datetime, stale_after_s: float, estimates: dict[str, Any] | None) -> FleetDevice:
    received = row.received_at
    status = status_of(received, now, stale_after_s)
    last = None
    reported: dict[str, Any] = row.state if isinstance(row.state, dict) else {}
    if received is not None:
        last = LastHeartbeat(received_at=received, age_s=max(0.0, (now - received).total_seconds()),
                             state=row.state if row.state is not None else {})
    online = received is not None and status == ONLINE
    health = str(reported.get("health")) if online else None
    reason = reported.get("health_reason")
    reason = reason if isinstance(reason, str) else ""
    since = _moment(reported.get("health_since"))
    said = last_said(reported.get("health"), reason, since, received) if received is not None and not online else None
    version = reported.get("model_version")
    version = None if version is None else str(version)
    backlog = reported.get("spool_backlog")
    return FleetDevice(
        device_id=row.device_id, channel=row.channel, revoked=row.revoked, status=status, health=health,
        health_reason=reason if online else None, health_since=since if online else None, last_said=said,
        last_heartbeat=last, uploads=UploadTotals(count=row.uploads, bytes=row.upload_bytes), last_seen=received,
        model_version=version, max_drift=max_drift(reported.get("drift")),
        backlog=backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None,
        estimated_accuracy=device_estimate(estimates, row.device_id, version),
        certificate_not_after=row.certificate_not_after, config_version=_config_version(reported),
    )


def build_fleet(rows: Sequence[FleetRow], now: datetime, stale_after_s: float,
                estimates: dict[str, Any] | None = None) -> Fleet:
    """Every device of ``rows`` as the fleet shows it at ``now``, with ``estimates`` (the loop's document)."""
    devices = [_device(row, now, stale_after_s, estimates) for row in rows]
    return Fleet(generated_at=now, stale_after_s=stale_after_s, devices=devices, estimates=fleet_estimates(estimates),
                 releases=releases(devices, estimates))
