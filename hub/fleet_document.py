"""The fleet document (``GET /v1/fleet``) from stored rows, the loop's estimates and the time now.

Pure: ``build_fleet(rows, now, stale_after_s, estimates)`` decides each device's status
(hub.fleet_status), withholds the reported health of a device that is not online (never shown
healthy), takes its model version, largest drift, backlog and estimated accuracy from its last
heartbeat and the estimates (hub.fleet_loop), and adds the fleet summary and who runs which release.
Leaves out querying (hub.store.fleet), reading the estimates file (hub.store.estimates) and rendering
(hub.fleet_view).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hub.fleet_loop import device_estimate, fleet_estimates, max_drift, releases
from hub.fleet_status import ONLINE, status_of
from hub.schemas.fleet import Fleet, FleetDevice, LastHeartbeat, UploadTotals
from hub.store.fleet import FleetRow

__all__ = ["build_fleet"]


def _device(row: FleetRow, now: datetime, stale_after_s: float, estimates: dict[str, Any] | None) -> FleetDevice:
    received = row.received_at
    status = status_of(received, now, stale_after_s)
    last = None
    reported: dict[str, Any] = row.state if isinstance(row.state, dict) else {}
    if received is not None:
        last = LastHeartbeat(received_at=received, age_s=max(0.0, (now - received).total_seconds()),
                             state=row.state if row.state is not None else {})
    health = str(reported.get("health")) if received is not None and status == ONLINE else None
    version = reported.get("model_version")
    version = None if version is None else str(version)
    backlog = reported.get("spool_backlog")
    return FleetDevice(
        device_id=row.device_id, channel=row.channel, revoked=row.revoked, status=status, health=health,
        last_heartbeat=last, uploads=UploadTotals(count=row.uploads, bytes=row.upload_bytes), last_seen=received,
        model_version=version, max_drift=max_drift(reported.get("drift")),
        backlog=backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None,
        estimated_accuracy=device_estimate(estimates, row.device_id, version),
        certificate_not_after=row.certificate_not_after,
    )


def build_fleet(rows: Sequence[FleetRow], now: datetime, stale_after_s: float,
                estimates: dict[str, Any] | None = None) -> Fleet:
    """Every device of ``rows`` as the fleet shows it at ``now``, with ``estimates`` (the loop's document)."""
    devices = [_device(row, now, stale_after_s, estimates) for row in rows]
    return Fleet(generated_at=now, stale_after_s=stale_after_s, devices=devices, estimates=fleet_estimates(estimates),
                 releases=releases(devices, estimates))
