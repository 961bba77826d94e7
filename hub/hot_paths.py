"""The hub's two most frequent requests answered in plain ASGI, before FastAPI's routing and dependencies.

``HotPaths`` is raw ASGI middleware (``create_app`` adds it inside hub.observe's, so every request is
still counted and timed under its route template):

- ``GET /releases/metadata/...`` and ``GET /releases/targets/...`` (a device's no-change poll is two of
  these): hub.static_releases.serve;
- ``POST /v1/devices/<device_id>/uploads``: hub.routes.uploads.receive_batch.

Everything else, other methods on these paths included, goes on to FastAPI, where the documented routes
(OpenAPI) answer through the same two functions: what a client sees does not depend on which way a
request took. A path FastAPI's routing would not match (an empty or slash-containing device id) is left
to it too. Leaves out the answers themselves and logging (hub.observe).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from edge.contracts.release_layout import METADATA_PATH, TARGETS_PATH
from hub.routes.uploads import UPLOAD_ROUTE, receive_batch
from hub.static_releases import METADATA_ROUTE, TARGETS_ROUTE, serve

__all__ = ["HotPaths"]

_DEVICES, _UPLOADS = UPLOAD_ROUTE.split("{device_id}")  # "/v1/devices/", "/uploads"


class _RouteLabel:
    """Stands in for the matched route in ``scope["route"]``: hub.observe labels metrics by its template."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_RELEASES = ((METADATA_PATH, "metadata", _RouteLabel(METADATA_ROUTE)),
             (TARGETS_PATH, "targets", _RouteLabel(TARGETS_ROUTE)))
_UPLOAD = _RouteLabel(UPLOAD_ROUTE)


class HotPaths:
    """Raw ASGI middleware: release GETs and uploads answered here, all else passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET":
                for prefix, kind, route in _RELEASES:
                    if path.startswith(prefix):
                        scope["route"] = route
                        await serve(scope, receive, send, kind, path[len(prefix):])
                        return
            elif method == "POST" and path.startswith(_DEVICES) and path.endswith(_UPLOADS):
                device_id = path[len(_DEVICES):-len(_UPLOADS)]
                if device_id and "/" not in device_id:
                    scope["route"] = _UPLOAD
                    scope["path_params"] = {"device_id": device_id}
                    await receive_batch(scope, receive, send, device_id)
                    return
        await self.app(scope, receive, send)
