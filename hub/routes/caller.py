"""The calling device of a device route (``/v1/devices/{device_id}/...``), without FastAPI's dependencies.

``device_caller(request, device_id)`` applies hub.auth's rule exactly as ``Depends(device_itself)`` does
(the credential first: 401; then the device id's pattern: 422; then caller == path: 403), as one call
instead of two solved dependencies, each a hop to a worker thread. Where the hub's database is local
(SQLite: ``certificates.cheap``, the same rule the release repository follows) the lookup is a local
read of well under a millisecond and runs on the event loop; on a database server it runs in a worker
thread so a slow round trip never stalls the loop. Leaves out the rule itself (hub.auth).
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from hub.auth import Caller, authenticated_device, device_itself

__all__ = ["device_caller"]


def _device_itself(request: Request, device_id: str) -> Caller:
    return device_itself(device_id, authenticated_device(request))


async def device_caller(request: Request, device_id: str) -> Caller:
    """The authenticated device making ``request``, when ``device_id`` is its own (else HTTPException)."""
    if request.app.state.certificates.cheap:
        return _device_itself(request, device_id)
    return await run_in_threadpool(_device_itself, request, device_id)
