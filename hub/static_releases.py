"""The TUF release repository, read-only, in plain ASGI: ``serve`` answers a GET of
``/releases/metadata/...`` or ``/releases/targets/...``.

hub.hot_paths calls it before FastAPI's routing and dependency solving (a device's no-change poll is
two of these requests); hub.routes.releases documents the same two routes (OpenAPI) and answers through
it too. What a client sees:

- ``settings.releases/metadata`` and ``/targets`` as static files, nothing else: a path reaches only a
  regular file inside the folder (hub.store.release_files.locate: strict segments, no symlink); anything
  else is an empty 404 that says nothing more. No listing.
- Consistent-snapshot files (``N.<role>.json`` metadata and targets named ``<sha256>.<name>``) never
  change, so they are ``immutable`` for a year; ``timestamp.json``, ``root.json`` and any other name are
  ``no-cache``. A strong ETag (the file's sha256); ``If-None-Match`` (``*``, a list, weak comparison) is
  a 304 without a body. JSON files are ``application/json``, targets ``application/octet-stream``.
- Small files (and every ETag) are cached by (inode, size, mtime) (hub.store.release_files.FileCache), so
  a no-change poll costs one ``lstat`` per path segment; larger files are hashed once in a worker thread
  and streamed from disk (Starlette's FileResponse).
- With ``hub.tls.client_certificates: required`` only a device with a valid certificate or the admin
  token reads the repository (hub.auth.may_read_releases, the same rule as every route; in a worker
  thread unless the certificate lookup is cheap); else 401 with hub.auth's body and header.

Leaves out HEAD (405 from FastAPI, as before), Range requests for small files, compression, and logging
(hub.observe).
"""

from __future__ import annotations

import re

from anyio import to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from edge.contracts.release_layout import HASHED_TARGET_PATTERN, METADATA_PATH, TARGETS_PATH
from edge.contracts.wire import JSON
from hub.auth import UNAUTHORIZED, may_read_releases
from hub.store.release_files import MEMORY_FILE_BYTES, CachedFile, FileCache, hash_large, locate, read_small, stat_key

__all__ = ["IMMUTABLE", "METADATA_ROUTE", "NO_CACHE", "TARGETS_ROUTE", "cache_control", "etag_matches", "serve"]

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
OCTET_STREAM = "application/octet-stream"  # TUF targets are opaque bytes to HTTP
METADATA_ROUTE, TARGETS_ROUTE = METADATA_PATH + "{path:path}", TARGETS_PATH + "{path:path}"  # route templates
_VERSIONED_METADATA = re.compile(r"^[1-9][0-9]*\.[A-Za-z0-9_-]+\.json$")
_NOT_FOUND = [(b"content-length", b"0")]  # an empty 404, as Starlette's Response(status_code=404) sends it
_UNAUTHORIZED_BODY = b'{"detail":"%s"}' % UNAUTHORIZED.detail.encode()
_UNAUTHORIZED = [*((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (UNAUTHORIZED.headers or {}).items()),
                 (b"content-length", str(len(_UNAUTHORIZED_BODY)).encode()), (b"content-type", JSON.encode())]


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


class _Headers:
    """The response headers of one version of one file (by its ETag), built once: for a 304 and a 200."""

    __slots__ = ("etag", "not_modified", "ok")

    def __init__(self, entry: CachedFile, kind: str, relative: str) -> None:
        self.etag = entry.etag
        self.not_modified = [(b"etag", entry.etag.encode("latin-1")),
                             (b"cache-control", cache_control(kind, relative.rsplit("/", 1)[-1]).encode("latin-1"))]
        media = JSON if relative.endswith(".json") else OCTET_STREAM
        length = str(len(entry.data)).encode() if entry.data is not None else b""
        self.ok = [*self.not_modified, (b"content-length", length), (b"content-type", media.encode("latin-1"))]


_headers: dict[str, _Headers] = {}  # by file path; small (no file contents), bounded by MAX_HEADERS
MAX_HEADERS = 4096


def _headers_of(path: str, entry: CachedFile, kind: str, relative: str) -> _Headers:
    headers = _headers.get(path)
    if headers is None or headers.etag != entry.etag:
        if len(_headers) >= MAX_HEADERS:
            _headers.clear()
        headers = _headers[path] = _Headers(entry, kind, relative)
    return headers


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return value.decode("latin-1")
    return None


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve(scope: Scope, receive: Receive, send: Send, kind: str, relative: str) -> None:
    """Answer a GET of the file ``relative`` in the repository's ``kind`` folder (metadata or targets)."""
    hub = scope["app"].state
    if hub.auth_policy.certificate_only:  # on SQLite the check is cheap enough for the event loop
        request = Request(scope)
        allowed = may_read_releases(request) if hub.certificates.cheap else await run_in_threadpool(
            may_read_releases, request)
        if not allowed:
            await _send(send, UNAUTHORIZED.status_code, _UNAUTHORIZED, _UNAUTHORIZED_BODY)
            return
    cache: FileCache = hub.release_files
    folder = cache.by_kind.get(kind)
    if folder is None:  # once per app: the real path of the configured folder
        folder = cache.by_kind[kind] = cache.real_folder(str(hub.settings.releases / kind))
    found = locate(folder, relative)
    if found is None:
        await _send(send, 404, _NOT_FOUND)
        return
    path, result = found
    entry = cache.get(path, stat_key(result))
    if entry is None:
        try:
            entry = read_small(path) if result.st_size <= MEMORY_FILE_BYTES else await to_thread.run_sync(
                hash_large, path)
        except OSError:
            await _send(send, 404, _NOT_FOUND)
            return
        cache.put(path, entry)
    headers = _headers_of(path, entry, kind, relative)
    if etag_matches(_if_none_match(scope), entry.etag):
        await _send(send, 304, headers.not_modified)
        return
    if entry.data is not None:
        await _send(send, 200, headers.ok, entry.data)
        return
    media = JSON if relative.endswith(".json") else OCTET_STREAM
    await FileResponse(path, media_type=media, headers={name.decode(): value.decode()
                                                        for name, value in headers.not_modified})(scope, receive, send)
