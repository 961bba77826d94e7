"""``POST /v1/devices/{device_id}/heartbeat``: a runner reports its state; the hub keeps the latest one.

The body is ``hub.schemas.heartbeats.HeartbeatBody`` (422 when it does not validate); auth is hub.auth
(401/403, device id 422). The state replaces the device's previous heartbeat (hub.store.heartbeats),
stamped ``received_at`` by the hub's clock, and is echoed back. Then the device's history is kept
(hub.store.device_history: the events not stored yet, a sample when one is due; usually nothing to
write). Leaves out alerting.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from edge.contracts.wire import device_path
from hub.auth import Caller, device_itself
from hub.schemas.heartbeats import HeartbeatBody, HeartbeatRecorded
from hub.store.device_history import recorder_of
from hub.store.heartbeats import record_heartbeat

router = APIRouter(tags=["fleet"])


@router.post(device_path("{device_id}", "heartbeat"), response_model=HeartbeatRecorded)
def heartbeat(body: HeartbeatBody, request: Request, caller: Caller = Depends(device_itself)) -> HeartbeatRecorded:  # noqa: B008
    """Record the calling device's state (its token must be the path's device: else 403)."""
    hub = request.app.state
    reported = body.model_dump(mode="json")
    received = hub.clock.now()
    record_heartbeat(hub.sessions, hub.write_lock, caller.device_id, reported, received)
    recorder_of(hub).record(caller.device_id, reported, received)
    hub.metrics.heartbeats.inc()
    return HeartbeatRecorded(device_id=caller.device_id, received_at=received, state=reported)
