"""The TUF release repository, read-only: ``/releases/metadata/{path}`` and ``/releases/targets/{path}``.

These routes document the repository in the OpenAPI schema and answer through hub.static_releases.serve;
in a running hub the GETs never get here: hub.hot_paths answers them first, in plain
ASGI, without FastAPI's routing and dependency solving (a no-change poll is the hub's most frequent
request). What they answer (static files only, caching headers, strong ETags and 304s, 404 for anything
else, the ``required`` certificate rule): hub.static_releases. Leaves out HEAD, Range requests for small
files and compression.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.types import Receive, Scope, Send

from hub.static_releases import METADATA_ROUTE, TARGETS_ROUTE, serve

router = APIRouter(tags=["releases"])

FILE_RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "the file"}, 304: {"description": "not modified"}, 404: {},
    401: {"description": "client certificates are required and none valid came (nor the admin token)"},
}


class ReleaseFileResponse(Response):
    """Answers with hub.static_releases.serve when FastAPI sends it."""

    def __init__(self, kind: str, relative: str) -> None:
        super().__init__()
        self.kind, self.relative = kind, relative

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send, self.kind, self.relative)


@router.get(METADATA_ROUTE, response_class=Response, responses=FILE_RESPONSES)
async def release_metadata(path: str) -> Response:
    """TUF metadata: ``N.<role>.json`` (immutable), ``timestamp.json`` and ``root.json`` (no-cache)."""
    return ReleaseFileResponse("metadata", path)


@router.get(TARGETS_ROUTE, response_class=Response, responses=FILE_RESPONSES)
async def release_target(path: str) -> Response:
    """TUF targets; consistent-snapshot names ``<sha256>.<name>`` are immutable."""
    return ReleaseFileResponse("targets", path)
