"""Load-test the hub on PostgreSQL with 1, 2 and 4 processes and a fleet of 1,000 devices, each beside its floor.

For each process count N: a fresh PostgreSQL database (pgserver, edgeloop.testkit.postgres) and project,
1,000 devices registered (each with its own token), a published release; ``edgeloop hub serve --workers N``
on loopback. Then, from wrk (Debian ``wrk``, one thread, C connections; bench/hub_fleet.lua: each request
from the next device, with its token):

- uploads/s of distinct 100-row and 1,000-row Parquet batches (every (device, batch) pair once);
- heartbeats/s (an upsert per request);
- no-change polls/s (a poll is two requests: the next root, 404, and timestamp.json with If-None-Match, 304);

each phase at saturation for ``--seconds``, ``--repeat`` times (medians reported), with p50/p99. Then the
open loop: every device polls and heartbeats every 60 s with jitter (about 17 polls/s and 17 heartbeats/s
for 1,000 devices) and uploads a 100-row batch every 300 s, for ``--open-seconds``, from a small asyncio
generator whose latencies are measured from each request's scheduled time (no coordinated omission).
Afterwards the database and landing zone are checked: every acknowledged batch has its row and its file,
no row or file twice or orphaned.

The floor beside each N, in the same run: a bare uvicorn app with N workers (plain ASGI, no framework,
no auth) that answers a poll with 404/304, stores an upload as the hub must at least (sha256, durable
write of the file: temp, fsync, rename, fsync folder; ``INSERT ... ON CONFLICT DO NOTHING`` of its row in
the same PostgreSQL) and upserts a heartbeat row. ``--profile`` records the hub's workers with py-spy
(``pip install py-spy``) during one 1,000-row upload phase and one poll phase and prints where the time goes.
``--lookups`` only measures what a request's authentication asks PostgreSQL (certificate and token
lookups) beside what a cache would have to ask instead (one "registry version" row). A benchmark, not a test.

    apt-get install wrk
    .venv/bin/python bench/hub_fleet.py --processes 1 2 4 --seconds 10 --repeat 3 --open-seconds 60 --profile
    .venv/bin/python bench/hub_fleet.py --lookups
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.contracts.wire import IDEMPOTENCY_KEY  # noqa: E402
from edge.telemetry import switch_off  # noqa: E402

switch_off()

LUA = REPO / "bench" / "hub_fleet.lua"
DEVICES = 1000
POOL = 48  # distinct bodies per batch size: DEVICES * POOL distinct (device, batch) pairs
HEARTBEAT = {"model_version": "1", "channel": "canary", "health": "ok", "drift": {"temperature": 0.05},
             "rolling_accuracy": 0.91, "spool_backlog": 0, "counters": {"predictions": 1200},
             "clock": "2026-12-01T00:00:00+00:00"}
FLOOR_ENV = "EDGELOOP_BENCH_FLEET_FLOOR"  # JSON: folder, etag, database (the floor workers read it)
FLOOR_THREADS = 10  # per worker, each with its own connection: as many as the hub's pool (hub.db.POOL_SIZE)


# ---------------------------------------------------------------- the floor: a bare uvicorn app
_floor: dict[str, Any] = {}


def _floor_connection() -> Any:
    import psycopg

    local = _floor.setdefault("local", threading.local())
    if not hasattr(local, "connection"):
        local.connection = psycopg.connect(_floor["conninfo"], autocommit=True)
    return local.connection


def _floor_upload(device: str, body: bytes) -> bytes:
    import hashlib

    from edge.atomic import write_bytes_atomic

    digest = hashlib.sha256(body).hexdigest()
    write_bytes_atomic(Path(_floor["folder"]) / device / f"{digest}.parquet", body, mode=0o444)
    _floor_connection().execute(
        "INSERT INTO floor_uploads (device_id, batch_id, bytes, stored_at) VALUES (%s, %s, %s, now()) "
        "ON CONFLICT DO NOTHING", (device, digest, len(body)))
    return b'{"batch_id": "%s", "bytes": %d}' % (digest.encode(), len(body))


def _floor_heartbeat(device: str, body: bytes) -> bytes:
    _floor_connection().execute(
        "INSERT INTO floor_heartbeats (device_id, received_at, state) VALUES (%s, now(), %s) ON CONFLICT "
        "(device_id) DO UPDATE SET received_at = excluded.received_at, state = excluded.state",
        (device, body.decode()))
    return b'{"ok": true}'


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                from anyio import CapacityLimiter

                _floor.update(json.loads(os.environ[FLOOR_ENV]))
                _floor["limiter"] = CapacityLimiter(FLOOR_THREADS)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    from anyio import to_thread

    path: str = scope["path"]
    if scope["method"] == "GET":
        if path == "/healthz":
            status, headers, body = 200, [(b"content-type", b"application/json")], b'{"status": "ok"}'
        elif path.endswith("timestamp.json"):
            status, headers, body = 304, [(b"etag", _floor["etag"].encode()), (b"cache-control", b"no-cache")], b""
        else:
            status, headers, body = 404, [(b"content-type", b"application/json")], b'{"detail": "not found"}'
    else:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        device = path.split("/")[3]
        work = _floor_upload if path.endswith("/uploads") else _floor_heartbeat
        body = await to_thread.run_sync(work, device, b"".join(chunks), limiter=_floor["limiter"])
        status, headers = (201 if work is _floor_upload else 200), [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_floor(port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run("bench.hub_fleet:floor_app", host="127.0.0.1", port=port, workers=workers, log_level="warning",
                access_log=False, lifespan="on")


# ---------------------------------------------------------------- the world
def project(root: Path, port: int) -> Any:
    import yaml

    from edge.contracts.layout import Paths

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["hub"]["port"] = port
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return Paths.at(root)


def register(database: str, count: int) -> dict[str, str]:
    from hub import tokens
    from hub.clock import SystemClock
    from hub.db import Device, make_engine, make_sessions

    engine = make_engine(database)
    issued, now = {}, SystemClock().now()
    with make_sessions(engine)() as session:
        for i in range(count):
            token = tokens.issue()
            name = f"gw-{i:04d}"
            session.add(Device(device_id=name, channel="canary", token_id=token.token_id, token_salt=token.salt,
                               token_digest=token.digest, created_at=now))
            issued[name] = token.token
        session.commit()
    engine.dispose()
    return issued


def publish_release(paths: Any) -> None:
    import yaml

    from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
    from flows.releases import init_repository, publish

    config = release_config(paths.root)
    init_repository(config)
    publish(config, make_candidate(paths.root / "cand", tiny_onnx(seed=1), "cand-000000000001"), "canary")
    raw = yaml.safe_load(paths.params.read_text())
    raw["release"]["repository"] = str(config.repository)
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def make_batches(paths: Any, rows: int, count: int, seed: int) -> list[bytes]:
    import numpy as np

    from edgeloop.testkit.synthetic import make_rows
    from flows.params import load_params
    from simulator.batches import encode_batch

    schema = load_params(paths.params).schema
    base = make_rows(schema, "x", rows, seed=seed)
    out = []
    for i in range(count):
        frame = base.copy()
        frame[schema.event_id] = np.arange(rows, dtype=np.int64) + (seed * 10_000 + i) * rows
        out.append(encode_batch(frame))
    return out


def write_load(folder: Path, issued: dict[str, str], batches: list[bytes]) -> Path:
    import hashlib

    (folder / "batches").mkdir(parents=True)
    (folder / "manifest.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in issued.items()))
    (folder / "heartbeat.json").write_text(json.dumps(HEARTBEAT))
    for i, body in enumerate(batches):
        (folder / "batches" / f"{i}.parquet").write_bytes(body)
        (folder / "batches" / f"{i}.key").write_text(hashlib.sha256(body).hexdigest() + "\n")
    return folder


def start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                time.sleep(1.0)  # every worker up, not only the first
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not start: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- load
def wrk(port: int, connections: int, seconds: float, *args: str) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s", "-s",
               str(LUA), f"http://127.0.0.1:{port}", "--", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match.group(1)) * unit[match.group(2)] if match else float("nan")

    counts = dict(re.findall(r"(\w+)=(\d+)", re.search(r"^COUNTS (.*)$", out, re.MULTILINE).group(1)))  # type: ignore[union-attr]
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    elapsed = float(re.search(r"requests in ([\d.]+)(s|m)", out).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": latency("50%"), "p99_ms": latency("99%"), "seconds": elapsed,
            **{k: int(v) for k, v in counts.items()},
            "socket_errors": sum(int(x) for x in socket.groups()) if socket else 0}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def _open_loop(port: int, issued: dict[str, str], seconds: float, etag: str, batches: list[bytes],
                     metadata: str) -> dict[str, Any]:
    import hashlib

    import httpx

    rng = random.Random(7)
    events: list[tuple[float, str, str, int]] = []  # (due, kind, device, batch)
    for i, device in enumerate(issued):
        t = rng.uniform(0, 60)
        while t < seconds:
            events += [(t, "poll", device, 0), (t + rng.uniform(0, 1), "heartbeat", device, 0)]
            t += 60 * rng.uniform(0.9, 1.1)
        t = rng.uniform(0, 300)
        while t < seconds:
            events.append((t, "upload", device, i))
            t += 300 * rng.uniform(0.9, 1.1)
    events.sort()
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    service: dict[str, list[float]] = collections.defaultdict(list)
    statuses: collections.Counter[str] = collections.Counter()
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        start = time.perf_counter()

        async def one(due: float, kind: str, device: str, batch: int) -> None:
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            auth = {"Authorization": f"Bearer {issued[device]}"}
            try:
                if kind == "poll":
                    root = await client.get(f"{metadata}2.root.json")
                    answer = await client.get(f"{metadata}timestamp.json", headers={"If-None-Match": etag})
                    good = root.status_code == 404 and answer.status_code == 304
                elif kind == "heartbeat":
                    answer = await client.post(f"/v1/devices/{device}/heartbeat", json=HEARTBEAT, headers=auth)
                    good = answer.status_code == 200
                else:
                    body = batches[batch % len(batches)]
                    answer = await client.post(f"/v1/devices/{device}/uploads", content=body, headers={
                        **auth, IDEMPOTENCY_KEY: hashlib.sha256(body).hexdigest(),
                        "Content-Type": "application/vnd.apache.parquet"})
                    good = answer.status_code in (200, 201)
                    statuses[f"upload_{answer.status_code}"] += 1
            except httpx.HTTPError:
                good = False
            done = time.perf_counter()
            latencies[kind].append((done - start - due) * 1000)  # from the scheduled time
            service[kind].append((done - sent) * 1000)  # from when it was sent (the client may lag)
            statuses["good" if good else "bad"] += 1

        await asyncio.gather(*(one(*event) for event in events))
        elapsed = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": round(elapsed, 1), "unexpected": statuses["bad"],
                           "uploads_created": statuses["upload_201"], "uploads_deduplicated": statuses["upload_200"]}
    for kind, values in latencies.items():
        out[kind] = {"per_s": round(len(values) / seconds, 1), "p50_ms": round(percentile(values, 50), 2),
                     "p99_ms": round(percentile(values, 99), 2),
                     "service_p50_ms": round(percentile(service[kind], 50), 2),
                     "service_p99_ms": round(percentile(service[kind], 99), 2)}
    return out


def open_loop(port: int, issued: dict[str, str], seconds: float, etag: str, batches: list[bytes],
              metadata: str) -> dict[str, Any]:
    return asyncio.run(_open_loop(port, issued, seconds, etag, batches, metadata))


def check_hub_store(database: str, landing: Path, acknowledged: int) -> dict[str, int]:
    """Rows in ``uploads`` vs files in the landing zone: equal sets, nothing twice, nothing lost."""
    from sqlalchemy import select

    from hub.db import Upload, make_engine

    engine = make_engine(database)
    with engine.connect() as connection:
        rows = [f"{d}/{b}.parquet" for d, b in connection.execute(select(Upload.device_id, Upload.batch_id))]
    engine.dispose()
    files = {p.relative_to(landing).as_posix() for p in landing.rglob("*.parquet")}
    return {"acknowledged_created": acknowledged, "rows": len(rows), "files": len(files),
            "lost": max(0, acknowledged - len(rows)) + len(set(rows) - files),
            "files_without_row": len(files - set(rows)), "rows_twice": len(rows) - len(set(rows))}


def floor_database(database: str) -> None:
    import psycopg

    conninfo = _conninfo(database)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("CREATE TABLE floor_uploads (id bigserial primary key, device_id varchar(64) NOT NULL, "
                           "batch_id varchar(64) NOT NULL, bytes bigint NOT NULL, stored_at timestamptz NOT NULL, "
                           "UNIQUE (device_id, batch_id))")
        connection.execute("CREATE TABLE floor_heartbeats (device_id varchar(64) primary key, "
                           "received_at timestamptz NOT NULL, state json NOT NULL)")


def _conninfo(database: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(database)
    return f"dbname={url.database} user={url.username} host={url.query['host']}"


def profile(pids: list[int], seconds: float, out: Path) -> dict[str, list[tuple[str, float]]]:
    """py-spy on ``pids`` for ``seconds`` (threads that are not idle): the functions most often running
    themselves (``self``, share of samples) and on the stack (``inclusive``, leaving out the frames under
    which nearly everything runs: the process, event loop and thread scaffolding)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    records = []
    for pid in pids:
        target = out.with_name(f"{out.stem}-{pid}.txt")
        records.append((subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200",
                                          "--format", "raw", "-o", str(target), "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), target))
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for process, target in records:
        process.wait()
        if not target.exists():
            continue
        for line in target.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [re.sub(r" \((?:.*/)?([^/]+?):\d+\)$", r" (\1)", f) for f in stack.split(";")[2:]]
            if not frames:
                continue
            total += int(count)
            leaf[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)

    def share(n: int) -> float:
        return round(100 * n / max(total, 1), 1)

    return {"samples": [("all", total)],  # type: ignore[dict-item]
            "self": [(name, share(n)) for name, n in leaf.most_common(15)],
            "inclusive": [(name, share(n)) for name, n in inclusive.most_common(80) if share(n) < 90][:30]}


# ---------------------------------------------------------------- what a per-request check costs
def lookup_costs(calls: int = 500, repeat: int = 15) -> dict[str, float]:
    """Microseconds per call on PostgreSQL (unix socket), medians of ``repeat``: the hub's certificate
    lookup (an indexed join), its token lookup, and what a cache would have to ask on every request
    instead to see another process's revocation at once: one "registry version" row."""
    from datetime import timedelta

    from sqlalchemy import create_engine, text

    from edgeloop.testkit.postgres import shared_postgres
    from hub import tokens
    from hub.clock import SystemClock
    from hub.db import make_engine, make_sessions, single_statements
    from hub.registry import add_device
    from hub.store.certificates import IssuedCertificate, certificate_credentials, insert_certificate
    from hub.store.devices import credentials

    engine = make_engine(shared_postgres().fresh_database("lookups"))
    now = SystemClock().now()
    token_ids = [tokens.parse(add_device(make_sessions(engine), f"gw-{i:03d}"))[0] for i in range(100)]  # type: ignore[index]
    with engine.begin() as connection:
        for i in range(100):
            insert_certificate(connection, IssuedCertificate(f"gw-{i:03d}", f"{i:064x}", "1", now,
                                                             now + timedelta(days=1)), now)
        connection.execute(text("CREATE TABLE registry_version (id int PRIMARY KEY, version bigint NOT NULL)"))
        connection.execute(text("INSERT INTO registry_version VALUES (1, 0)"))
    version = text("SELECT version FROM registry_version WHERE id = 1")

    def read_version(_: int) -> None:
        with single_statements(engine).connect() as connection:
            connection.execute(version).scalar()

    def in_transaction(_: int) -> None:  # how every lookup ran before: BEGIN ... ROLLBACK
        with engine.connect() as connection:
            connection.execute(version).scalar()

    unpinged = create_engine(engine.url, pool_pre_ping=False, connect_args={"options": "-c timezone=UTC"})
    variants: dict[str, Any] = {
        "certificate_lookup_us": lambda i: certificate_credentials(engine, f"{i % 100:064x}"),
        "token_lookup_us": lambda i: credentials(engine, token_ids[i % 100]),
        "token_lookup_without_pre_ping_us": lambda i: credentials(unpinged, token_ids[i % 100]),
        "registry_version_read_us": read_version,
        "registry_version_read_in_a_transaction_us": in_transaction,
    }
    runs: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(repeat):  # interleaved, so a busy moment of the machine falls on every variant alike
        for name, work in variants.items():
            started = time.perf_counter()
            for i in range(calls):
                work(i)
            runs[name].append((time.perf_counter() - started) / calls * 1e6)
    out = {name: round(statistics.median(values), 1) for name, values in runs.items()}
    unpinged.dispose()
    engine.dispose()
    return out


# ---------------------------------------------------------------- one process count
def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    out = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    out["runs"] = [round(r["requests_per_s"], 1) for r in runs]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` and their children (a server's workers, PostgreSQL's
    backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for each in [str(pid), *children]:
            try:
                fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measured(port: int, args: argparse.Namespace, servers: dict[str, list[int]], count: str, *load: str
             ) -> dict[str, Any]:
    """One wrk phase, with the CPU milliseconds each server (the app's processes, PostgreSQL) spent per
    counted operation (``count``: created uploads, heartbeats, polls)."""
    before = {name: cpu_seconds(pids) for name, pids in servers.items()}
    run = wrk(port, args.connections, args.seconds, *load)
    for name, pids in servers.items():
        run[f"{name}_cpu_ms_per_op"] = round(1000 * (cpu_seconds(pids) - before[name]) / max(run[count], 1), 3)
    run["per_s"] = run[count] / run["seconds"]
    return run


def phases(port: int, args: argparse.Namespace, loads: dict[str, Path], metadata: str, etag: str,
           offset: int, servers: dict[str, list[int]]) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for repeat in range(args.repeat):
        for size in ("100", "1000"):
            run = measured(port, args, servers, "created", "upload", str(loads[size]), IDEMPOTENCY_KEY,
                           "application/vnd.apache.parquet", str(offset + repeat * (DEVICES * POOL // args.repeat)))
            run["uploads_per_s"] = run["per_s"]
            results[f"uploads_{size}_rows"].append(run)
        run = measured(port, args, servers, "ok", "heartbeat", str(loads["100"]))
        run["heartbeats_per_s"] = run["per_s"]
        results["heartbeats"].append(run)
        run = measured(port, args, servers, "polls", "poll", metadata, etag)
        run["polls_per_s"] = run["per_s"]
        results["polls"].append(run)
    return {name: median_of(runs) for name, runs in results.items()} | {
        "acknowledged_created": sum(r["created"] for k, rs in results.items() if k.startswith("uploads") for r in rs),
        "deduplicated": sum(r["dedup"] for k, rs in results.items() if k.startswith("uploads") for r in rs)}


def bench(processes: int, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from edge.contracts.release_layout import METADATA_PATH
    from edgeloop.testkit.hub import free_port
    from edgeloop.testkit.postgres import shared_postgres

    work = Path(tempfile.mkdtemp(prefix=f"edgeloop-fleet-{processes}-"))
    server = shared_postgres()
    postmaster = int(server.handle.get_pid())
    try:
        hub_port, floor_port = free_port(), free_port()
        paths = project(work / "p", hub_port)
        database = server.fresh_database(f"fleet{processes}")
        issued = register(database, DEVICES)
        publish_release(paths)
        loads = {size: write_load(work / f"load{size}", issued, make_batches(paths, int(size), POOL, seed))
                 for size, seed in (("100", 1), ("1000", 2))}
        open_batches = make_batches(paths, 100, 64, seed=3)
        env = {**os.environ, "EDGELOOP_HUB_DATABASE": database}
        result: dict[str, Any] = {"processes": processes, "devices": DEVICES, "connections": args.connections,
                                  "seconds": args.seconds, "repeat": args.repeat,
                                  "load_average_at_start": [round(x, 1) for x in os.getloadavg()]}

        hub = start([str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--root", str(paths.root),
                     "--port", str(hub_port), "--workers", str(processes)], env, hub_port, work / "hub.log")
        try:
            etag = httpx.get(f"http://127.0.0.1:{hub_port}{METADATA_PATH}timestamp.json").headers["etag"]
            hub_result = phases(hub_port, args, loads, METADATA_PATH, etag, 0,
                                {"app": [hub.pid], "postgres": [postmaster]})
            hub_result["open_loop"] = open_loop(hub_port, issued, args.open_seconds, etag, open_batches, METADATA_PATH)
            if args.profile:
                workers = subprocess.run(["pgrep", "-P", str(hub.pid)], capture_output=True, text=True).stdout.split()
                pids = [int(p) for p in workers] or [hub.pid]

                found: dict[str, Any] = {}
                for phase, load in (("uploads_1000_rows", ("upload", str(loads["1000"]), IDEMPOTENCY_KEY,
                                                           "application/vnd.apache.parquet",
                                                           str(DEVICES * POOL // args.repeat // 2))),  # unused pairs
                                    ("polls", ("poll", METADATA_PATH, etag))):
                    runner = threading.Thread(target=lambda p=phase, a=load: found.__setitem__(
                        p, profile(pids, args.seconds - 2, work / f"profile-{p}")))
                    runner.start()
                    during = wrk(hub_port, args.connections, args.seconds, *load)
                    hub_result["acknowledged_created"] += during["created"]  # its uploads are checked too
                    runner.join()
                hub_result["profile"] = found
        finally:
            stop(hub)
        acknowledged = hub_result["acknowledged_created"] + hub_result["open_loop"]["uploads_created"]
        hub_result["store"] = check_hub_store(database, paths.uploads, acknowledged)
        result["hub"] = hub_result

        floor_database(database)
        floor_env = {**os.environ, FLOOR_ENV: json.dumps({"folder": str(work / "floor"), "etag": etag,
                                                          "conninfo": _conninfo(database)})}
        floor = start([sys.executable, __file__, "--floor", str(floor_port), "--floor-workers", str(processes)],
                      floor_env, floor_port, work / "floor.log")
        try:
            floor_result = phases(floor_port, args, loads, METADATA_PATH, etag, 0,
                                  {"app": [floor.pid], "postgres": [postmaster]})
            floor_result["open_loop"] = open_loop(floor_port, issued, args.open_seconds, etag, open_batches,
                                                  METADATA_PATH)
        finally:
            stop(floor)
        result["floor"] = floor_result
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="hub worker processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each saturation phase")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each saturation phase (median)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections at saturation")
    parser.add_argument("--open-seconds", type=float, default=60.0, help="duration of the open-loop phase")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub's workers (pip install py-spy)")
    parser.add_argument("--lookups", action="store_true", help="only measure the per-request database lookups")
    parser.add_argument("--heartbeat-events", type=int, default=0,
                        help="model events each heartbeat carries, the same each time (a runner resends its newest 20)")
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (hubs, floor, PostgreSQL) when stopped
    if args.floor:
        serve_floor(args.floor, args.floor_workers)
        return
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    if args.lookups:
        print(json.dumps({"lookups": lookup_costs(),
                          "load_average_at_start": [round(x, 1) for x in os.getloadavg()]}), flush=True)
        return
    HEARTBEAT["events"] = [{"kind": ("activated", "rejected")[i % 2], "version": str(i), "detail": "shadow: 0.91",
                            "at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00"}
                           for i in range(args.heartbeat_events)]
    for processes in args.processes:
        print(json.dumps(bench(processes, args), indent=1), flush=True)


if __name__ == "__main__":
    main()
