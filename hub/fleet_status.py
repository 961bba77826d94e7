"""Whether a device is online: the staleness rule over the status words of edge.contracts.wire.

A device with no heartbeat is "never seen"; one silent longer than ``stale_after_s`` (params.yaml
``hub.poll_interval_s`` x ``hub.stale_after_polls``) is "offline"; otherwise "online". Pure functions
over datetimes: the caller passes "now" (from the hub's clock). Leaves out what is shown about a device
in each state (hub.fleet_document, hub.fleet_view).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from edge.contracts.wire import DEVICE_STATUSES
from hub.clock import as_utc

__all__ = ["NEVER_SEEN", "OFFLINE", "ONLINE", "STATUSES", "Status", "status_of"]

Status = Literal[DEVICE_STATUSES]  # type: ignore[valid-type]  # the words are the contract's
STATUSES: tuple[Status, ...] = get_args(Status)
NEVER_SEEN, ONLINE, OFFLINE = STATUSES


def status_of(received_at: datetime | None, now: datetime, stale_after_s: float) -> Status:
    """"never seen" without a heartbeat, "offline" when silent longer than ``stale_after_s``, else "online"."""
    if received_at is None:
        return NEVER_SEEN
    age = (as_utc(now) - as_utc(received_at)).total_seconds()
    return OFFLINE if age > stale_after_s else ONLINE
