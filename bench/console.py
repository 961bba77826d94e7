"""Time every console page in a world of 1,000 heartbeating devices and 100 published releases, beside a floor.

The world is edgeloop.testkit.console_world: a real hub with the console (SQLite, uvicorn on 127.0.0.1),
1,000 devices registered with the hub's registry and reporting through its heartbeat API (varied health
with reasons, drift, versions, offline, never seen, revoked), and 100 real signed TUF releases published
by flows.releases (built once into ``--cache``, default build/console-bench-cache, then copied). A client
logged in through the login form asks for each page ``--requests`` times over HTTP keep-alive (after 5
warm-up requests; the world is first frozen out of the garbage collector as ``edgeloop hub serve``
workers do after start-up, hub.serving.settle_gc); the floor, in the same run, is a bare FastAPI app on
uvicorn (same process, same client) answering a static HTML body of the same size as each page.
Prints p50/p99/max in ms per page as JSON, with the machine's load average. A benchmark, not a test.

    .venv/bin/python bench/console.py --requests 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.timing import timed  # noqa: E402
from edge.telemetry import switch_off  # noqa: E402

switch_off()

BUDGET_MS = 300.0


@contextmanager
def floor_server(bodies: dict[str, bytes]) -> Iterator[str]:
    """A bare FastAPI app on uvicorn answering each of ``bodies`` as static HTML at /<name>."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    from hub.embedded import free_port

    app = FastAPI()

    @app.get("/{name}")
    def static(name: str) -> Response:
        return Response(bodies[name], media_type="text/html; charset=utf-8")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--releases", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=2000, help="entries in the loop log (about a week of "
                                                                      "monitor passes and soak checks)")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "console-bench-cache",
                        help="where the release repository is built once and reused")
    args = parser.parse_args()
    import httpx

    from edgeloop.testkit.console_world import console_world, login

    load_at_start = [round(x, 1) for x in os.getloadavg()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeloop-console-bench-") as work, \
            console_world(Path(work) / "hub", devices=args.devices, releases=args.releases, cache=args.cache,
                          decisions=args.decisions) as world:
        built_s = time.perf_counter() - started
        from hub.serving import settle_gc

        settle_gc()  # as every `edgeloop hub serve` worker does after start-up (hub.serving)
        device = world.specs[len(world.specs) // 2].device_id
        pages = {"fleet": "/console/fleet", "fleet_filtered": "/console/fleet?channel=canary&health=ok",
                 "device": f"/console/devices/{device}", "releases": "/console/releases",
                 "release": f"/console/releases/{max(1, args.releases // 2)}", "loop": "/console/loop",
                 "reports": "/console/reports", "login_form": "/console/login"}
        with httpx.Client(base_url=world.url, timeout=60.0) as client:
            bodies = {"login_form": client.get(pages["login_form"]).content}
            login(client, world.hub.admin_token, "bench")
            for name, path in pages.items():
                answer = client.get(path) if name != "login_form" else None
                if answer is None:
                    continue
                if answer.status_code != 200:
                    raise SystemExit(f"{path} answered {answer.status_code}")
                bodies[name] = answer.content
            results: dict[str, object] = {}
            with floor_server(bodies) as floor_url, httpx.Client(base_url=floor_url, timeout=60.0) as floor:
                for name, path in pages.items():
                    if name == "login_form":
                        fresh = httpx.Client(base_url=world.url, timeout=60.0)
                        page = timed(lambda fresh=fresh, path=path: fresh.get(path), args.requests)
                        fresh.close()
                    else:
                        page = timed(lambda path=path: client.get(path), args.requests)
                    bare = timed(lambda name=name: floor.get(f"/{name}"), args.requests)
                    results[name] = {"page": page, "floor_same_size": bare, "bytes": len(bodies[name]),
                                     "within_budget": page["p99_ms"] <= BUDGET_MS}
    print(json.dumps({"devices": args.devices, "releases": args.releases, "requests": args.requests,
                      "world_built_s": round(built_s, 1), "load_average_at_start": load_at_start,
                      "load_average_at_end": [round(x, 1) for x in os.getloadavg()], "pages": results}, indent=1))


if __name__ == "__main__":
    main()
