"""The floor of bench/hub.py: a bare uvicorn app that does only what a poll or an upload cannot avoid.

Same uvicorn settings as ``edgeloop hub serve`` (one process, uvloop/httptools, log level warning, no
access log), plain ASGI, no framework:

- a no-change poll: ``GET .../2.root.json`` is an empty 404; ``GET .../timestamp.json`` with a matching
  ``If-None-Match`` is a 304 with its ETag and Cache-Control (a 200 with the cached bytes otherwise);
- an upload (``POST``): read the body, then in a worker thread (so the event loop keeps serving) hash it
  (sha256), and write it durably where the hub would (``<folder>/<device>/<sha256>.parquet``: temp file,
  fsync, rename, fsync of the folder: ``edge.atomic``), answer 201 with a small JSON body.

No authentication, no check of the key, the Parquet footer or the schema, no database: what is left of
the hub's cost once those are gone. ``python bench/hub_floor.py --port P --folder F --etag E``; bench/
hub.py starts it. A benchmark helper, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.atomic import write_bytes_atomic  # noqa: E402

FOLDER_ENV, ETAG_ENV = "EDGELOOP_BENCH_FLOOR_FOLDER", "EDGELOOP_BENCH_FLOOR_ETAG"


def make_app(folder: Path, etag: bytes, timestamp: bytes) -> Any:
    from anyio import to_thread

    def store(device: str, body: bytes) -> bytes:
        digest = hashlib.sha256(body).hexdigest()
        write_bytes_atomic(folder / device / f"{digest}.parquet", body, mode=0o444)
        return b'{"batch_id": "%s", "bytes": %d}' % (digest.encode(), len(body))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (message := await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = [(b"etag", etag), (b"cache-control", b"no-cache")]
        if scope["method"] == "POST":
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            device = path.split("/")[3]  # /v1/devices/<id>/uploads
            status, body = 201, await to_thread.run_sync(store, device, b"".join(chunks))
            headers = [(b"content-type", b"application/json")]
        elif path.endswith("/timestamp.json"):
            match = dict(scope["headers"]).get(b"if-none-match") == etag
            status, body = (304, b"") if match else (200, timestamp)
        elif path == "/healthz":
            status, body, headers = 200, b'{"status":"ok"}', [(b"content-type", b"application/json")]
        else:
            status, body, headers = 404, b"", []
        if status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def app_from_environment() -> Any:
    """The factory uvicorn's workers call (``--workers N``): folder and ETag from the environment."""
    return make_app(Path(os.environ[FOLDER_ENV]), os.environ[ETAG_ENV].encode(), b'{"signed": {}}')


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True, help="where uploads land")
    parser.add_argument("--etag", required=True, help="the ETag of timestamp.json, quotes included")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, as the hub's")
    args = parser.parse_args()
    os.environ[FOLDER_ENV], os.environ[ETAG_ENV] = str(args.folder), args.etag
    sys.path.insert(0, str(Path(__file__).parent))
    uvicorn.run("hub_floor:app_from_environment", factory=True, host="127.0.0.1", port=args.port,
                workers=args.workers, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
