"""Time the console's device page for a device with 30 days of history, beside its floors, in one run.

A real hub with the console (edgeloop.testkit.hub.running_hub, SQLite, uvicorn on 127.0.0.1), 1,000
registered devices, one of them with 30 days of samples (one per 300 s: 8,640), 8,640 uploads and 40
model events. A logged-in client asks for ``/console/devices/<id>`` ``--requests`` times (after warm-up);
beside it, in the same run: ``/healthz`` of the same hub (HTTP, routing and the app's middleware) and the
page's three SQL reads through sqlite3 alone (no SQLAlchemy, no rendering). Prints p50/p99 in ms as
JSON. A benchmark, not a test.

    .venv/bin/python bench/console_device.py --requests 50
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.timing import timed  # noqa: E402
from edge.telemetry import switch_off  # noqa: E402

switch_off()

DEVICE = "press-0001"
EVERY_S = 300
DAYS = 30


def fill(hub, now: datetime) -> None:
    from sqlalchemy import insert

    from hub import tokens
    from hub.db import Device, DeviceEvent, DeviceSample, Upload

    issued = tokens.issue()
    first = now - timedelta(days=DAYS)
    slots = DAYS * 86400 // EVERY_S
    slot0 = int(first.timestamp() // EVERY_S)
    with hub.app.state.engine.begin() as connection:
        connection.execute(insert(Device), [
            {"device_id": f"press-{i:04d}", "channel": "canary", "token_id": f"{i:016x}", "token_salt": issued.salt,
             "token_digest": issued.digest, "created_at": first} for i in range(1000)])
        connection.execute(insert(DeviceSample), [
            {"device_id": DEVICE, "slot": slot0 + i, "at": first + timedelta(seconds=EVERY_S * i),
             "model_version": str(1 + i // 1000), "health": "ok", "health_reason": "",
             "rolling_accuracy": 0.9 - (i % 50) / 1000, "drift_feature": "temperature",
             "drift_psi": (i % 100) / 400, "backlog": i % 7} for i in range(slots)])
        connection.execute(insert(Upload), [
            {"device_id": DEVICE, "batch_id": f"{i:064x}", "path": f"uploads/{i}", "bytes": 6000, "rows": 100,
             "stored_at": first + timedelta(seconds=EVERY_S * i)} for i in range(slots)])
        connection.execute(insert(DeviceEvent), [
            {"device_id": DEVICE, "kind": ("activated", "rejected")[i % 2], "version": str(i),
             "at": first + timedelta(hours=17 * i), "detail": f"shadow: f1_macro 0.{80 + i % 15} on 400 rows",
             "received_at": first + timedelta(hours=17 * i)} for i in range(40)])


def sql_floor(database: str, since: datetime) -> Callable[[], object]:
    connection = sqlite3.connect(database)
    text = since.strftime("%Y-%m-%d %H:%M:%S.%f")

    def reads() -> object:
        return (connection.execute("SELECT kind, version, at, detail, received_at FROM device_events "
                                   "WHERE device_id = ? ORDER BY at, id", (DEVICE,)).fetchall(),
                connection.execute("SELECT min(at), max(abs(drift_psi)), min(rolling_accuracy), count(*) FROM "
                                   "device_samples WHERE device_id = ? AND at >= ? GROUP BY slot / 12",
                                   (DEVICE, text)).fetchall(),
                connection.execute("SELECT substr(stored_at, 1, 10), sum(rows), count(*) FROM uploads WHERE "
                                   "device_id = ? AND stored_at >= ? GROUP BY 1", (DEVICE, text)).fetchall())
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests of each kind")
    args = parser.parse_args()
    import httpx

    from edgeloop.testkit.hub import ManualClock, running_hub

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="edgeloop-console-device-") as work, \
            running_hub(Path(work) / "hub", clock=ManualClock(now), console=True) as hub:
        fill(hub, now)
        client = httpx.Client(base_url=hub.url)
        form = client.get("/console/login").text
        value = re.search(r'name="login_csrf" value="([0-9a-f]{32})"', form)
        assert value is not None
        client.post("/console/login", data={"who": "bench", "token": hub.admin_token, "login_csrf": value.group(1),
                                             "next": ""})
        page = client.get(f"/console/devices/{DEVICE}")
        assert page.status_code == 200 and "8640 samples drawn as 720 points" in page.text, page.status_code
        database = str(hub.app.state.engine.url.database)
        result = {
            "device_page": timed(lambda: client.get(f"/console/devices/{DEVICE}"), args.requests, warmup=3),
            "floor_healthz": timed(lambda: client.get("/healthz"), args.requests, warmup=3),
            "floor_sql_only": timed(sql_floor(database, now - timedelta(days=DAYS)), args.requests, warmup=3),
            "page_bytes": len(page.content), "requests": args.requests,
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        }
        client.close()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
