"""The TUF release repository, read-only: ``/releases/metadata/{path}`` and ``/releases/targets/{path}``.

Serves ``settings.releases/metadata`` and ``settings.releases/targets`` as static files, nothing else:
no directory listing, and a path reaches only a regular file inside the folder (hub.store.
release_files.locate); anything else is an empty 404 that says nothing more. Consistent-snapshot files
(``N.<role>.json`` metadata and targets named ``<sha256>.<name>``) never change, so they are
``immutable`` for a year; ``timestamp.json``, ``root.json`` and any other name are ``no-cache``
(revalidate every time). Every file has a strong ETag (its sha256) and ``If-None-Match`` gets a 304
without a body. A no-change poll is cheap: small files and every ETag are cached by (inode, size,
mtime), so a poll costs one ``lstat`` per path segment; larger files are hashed once (in a worker
thread) and streamed from disk. Any static server can serve the same folder instead. Open to anyone,
except with ``hub.tls.client_certificates: required``: then only devices with a valid certificate and
the admin token read it (hub.auth.may_read_releases; else 401).
Leaves out: Range requests for metadata, HEAD, compression (TUF files are small or already compact).
"""

from __future__ import annotations

import re

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from edge.contracts.release_layout import HASHED_TARGET_PATTERN, METADATA_PATH, TARGETS_PATH
from edge.contracts.wire import JSON
from hub.auth import UNAUTHORIZED, may_read_releases
from hub.store.release_files import MEMORY_FILE_BYTES, FileCache, hash_large, locate, read_small, stat_key

router = APIRouter(tags=["releases"])

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
OCTET_STREAM = "application/octet-stream"  # TUF targets are opaque bytes to HTTP
_VERSIONED_METADATA = re.compile(r"^[1-9][0-9]*\.[A-Za-z0-9_-]+\.json$")
FILE_RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "the file"}, 304: {"description": "not modified"}, 404: {},
    401: {"description": "client certificates are required and none valid came (nor the admin token)"},
}


def cache_control(kind: str, name: str) -> str:
    """Immutable for consistent-snapshot names, no-cache for everything else (timestamp.json, root.json)."""
    pattern = _VERSIONED_METADATA if kind == "metadata" else HASHED_TARGET_PATTERN
    return IMMUTABLE if pattern.match(name) else NO_CACHE


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag equal under weak comparison."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def _not_found() -> Response:
    """An empty 404: nothing to leak, and a client that does not read error bodies (urllib3 with
    ``preload_content=False`` released early) finds no stray bytes on its next keep-alive request."""
    return Response(status_code=404)


async def serve(request: Request, kind: str, relative: str) -> Response:
    """The file ``relative`` of the repository's ``kind`` folder (metadata or targets), or 404."""
    hub = request.app.state
    if hub.auth_policy.certificate_only:  # on SQLite the check is cheap enough for the event loop
        allowed = may_read_releases(request) if hub.certificates.cheap else await run_in_threadpool(
            may_read_releases, request)
        if not allowed:
            raise UNAUTHORIZED
    cache: FileCache = request.app.state.release_files
    found = locate(cache.real_folder(str(request.app.state.settings.releases / kind)), relative)
    if found is None:
        return _not_found()
    path, result = found
    entry = cache.get(path, stat_key(result))
    if entry is None:
        try:
            entry = read_small(path) if result.st_size <= MEMORY_FILE_BYTES else await to_thread.run_sync(
                hash_large, path
            )
        except OSError:
            return _not_found()
        cache.put(path, entry)
    headers = {"ETag": entry.etag, "Cache-Control": cache_control(kind, relative.rsplit("/", 1)[-1])}
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    media = JSON if relative.endswith(".json") else OCTET_STREAM
    if entry.data is not None:
        return Response(entry.data, media_type=media, headers=headers)
    return FileResponse(path, media_type=media, headers=headers)


@router.get(METADATA_PATH + "{path:path}", response_class=Response, responses=FILE_RESPONSES)
async def release_metadata(path: str, request: Request) -> Response:
    """TUF metadata: ``N.<role>.json`` (immutable), ``timestamp.json`` and ``root.json`` (no-cache)."""
    return await serve(request, "metadata", path)


@router.get(TARGETS_PATH + "{path:path}", response_class=Response, responses=FILE_RESPONSES)
async def release_target(path: str, request: Request) -> Response:
    """TUF targets; consistent-snapshot names ``<sha256>.<name>`` are immutable."""
    return await serve(request, "targets", path)
