"""The hub over mutual TLS vs plain HTTP, in the same run: no-change polls/s, uploads/s, and what a TLS
handshake costs the hub per device; each number beside its floor (a bare uvicorn app on the same settings).

Four servers, each its own process on 127.0.0.1, one after the other:

- ``hub http``: ``edgeloop hub serve`` as today (plain HTTP on loopback, devices send bearer tokens, the
  release repository open);
- ``hub mTLS``: the same hub with ``hub.tls`` (its certificate from the plant CA, ``client_certificates:
  required``): every device request, polls included, is authenticated by its client certificate (the TLS
  layer verifies it against the plant CA; the hub checks per request that it issued it and that it and
  its device are not revoked), uploads land as before;
- ``floor http`` / ``floor TLS``: a bare uvicorn app (uvloop, httptools; for TLS the hub's own context
  and protocol: hub.tls) that answers a poll with 404/304 and an upload by reading its body and saying
  201, with no work at all: what uvicorn and TLS themselves cost on this machine.

Load: wrk (Debian ``wrk``) in ``--clients`` single-threaded processes at once, ``--connections`` in all,
back to back (bench/hub_tls.lua); each process is one device (its token, or its client certificate, and
its upload path). Several processes rather than threads: OpenSSL 3 serialises a multi-threaded client on
its locks. wrk has no client-certificate option: ``bench/wrk_client_cert.c`` (built here with gcc,
loaded with LD_PRELOAD) presents the device's certificate and drops the TLS session on reconnect. A poll
is what a runner's TUF client does when nothing changed (as bench/hub.py counts it): GET the next root
version (404) + GET ``timestamp.json`` with If-None-Match (304). "keep-alive": connections stay open;
"cold": ``Connection: close`` on every second request, so each poll opens a new connection (a new TLS
handshake, a full one: no resumption). Uploads: distinct 1,000-row Parquet batches (each phase starts
from the registered database and an empty landing zone, so nothing is deduplicated). Connection cost:
K sequential new connections, each with one ``GET /healthz``, against K requests on one kept
connection; the difference of the server's CPU time (``/proc/<pid>/stat``) per connection is what a
connection costs the server (TCP, and the TLS handshake with the client certificate), and the wall
time per cold request is what a device waits. Every phase runs ``--repeat`` times; the table shows
medians.

    apt-get install wrk gcc libssl-dev
    .venv/bin/python bench/hub_tls.py --connections 50 --clients 5 --seconds 10 --repeat 3

A benchmark, not a test: it asserts nothing, and reports unexpected answers and socket errors beside each number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

import yaml  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from edge.contracts.release_layout import METADATA_PATH  # noqa: E402
from edge.contracts.tls import client_context  # noqa: E402
from edge.contracts.wire import IDEMPOTENCY_KEY, PARQUET_TYPES, device_path  # noqa: E402

SCRIPT = REPO / "bench" / "hub_tls.lua"
SHIM = REPO / "bench" / "wrk_client_cert.c"
UPLOADS_PER_S = 800  # more than the hub stores: enough distinct batches that no device sends one twice
HANDSHAKES = 300
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the floor: a bare uvicorn app

async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers like the hub, doing nothing: 404 for the next root, 304 for timestamp.json, 201 for uploads."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if scope["method"] == "POST":
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        status, body = 201, b'{"stored": true}'
    elif path.endswith("timestamp.json"):
        status, body = 304, b""
    elif path == "/healthz":
        status, body = 200, b'{"status": "ok"}'
    else:
        status, body = 404, b""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"etag", b'"floor"'),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_floor(port: int, cert: str | None, key: str | None, ca: str | None) -> None:
    import uvicorn

    from hub.tls.listen import ContextFactory
    from hub.tls.protocol import protocol_class

    options: dict[str, Any] = {}
    if cert and key:
        options = {"ssl_context_factory": ContextFactory(cert, key, ca), "http": protocol_class()}
    uvicorn.run(floor_app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **options)


# ---------------------------------------------------------------- the project

def make_project(work: Path, devices: int, seconds: float, clients: int) -> dict[str, Any]:
    """A project with a published release, ``devices`` devices with tokens and issued certificates, the PKI,
    and enough distinct batches that no device uploads one twice in a phase."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench.hub import make_batches, project, publish_release
    from edgeloop.testkit.pki import make_pki
    from hub.clock import SystemClock
    from hub.db import make_engine
    from hub.registry import add_device
    from hub.settings import HubSettings
    from hub.store.certificates import IssuedCertificate, insert_certificate

    paths = project(work / "p", 8700)
    publish_release(paths)
    pki = make_pki(work / "pki")
    settings = HubSettings.load(paths.root)
    engine = make_engine(settings.database_url)
    from hub.db import make_sessions

    sessions = make_sessions(engine)
    manifest, certs = [], []
    for i in range(devices):
        name = f"bench-{i:04d}"
        token = add_device(sessions, name, "canary")
        identity = pki.device(name, days=30)
        cert = identity.certificate
        with engine.begin() as connection:
            insert_certificate(connection, IssuedCertificate(
                name, identity.fingerprint, format(cert.serial_number, "x"), cert.not_valid_before_utc,
                cert.not_valid_after_utc), SystemClock().now())
        manifest.append(f"{device_path(name, 'uploads')}\t{token}\n")
        certs.append((str(identity.cert_file), str(identity.key_file)))
    engine.dispose()
    shutil.copy(Path(settings.database_url.removeprefix("sqlite:///")), work / "pristine.db")
    load = work / "load"
    (load / "batches").mkdir(parents=True)
    (load / "manifest.tsv").write_text("".join(manifest))
    from edge.contracts.record import batch_id

    for i, body in enumerate(make_batches(paths, max(60, int(UPLOADS_PER_S * seconds / clients) + 1))):
        (load / "batches" / f"{i}.parquet").write_bytes(body)
        (load / "batches" / f"{i}.key").write_text(batch_id(body) + "\n")
    return {"paths": paths, "pki": pki, "load": load, "certs": certs, "identity": pki.device("probe"),
            "database": Path(settings.database_url.removeprefix("sqlite:///")), "pristine": work / "pristine.db"}


def fresh_state(setup: dict[str, Any]) -> None:
    """The hub's database as registered (devices, certificates; no uploads) and an empty landing zone, so
    that every phase uploads batches the hub has not seen (no deduplicated answers)."""
    database: Path = setup["database"]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(setup["pristine"], database)
    shutil.rmtree(setup["paths"].uploads, ignore_errors=True)


def set_tls(paths: Paths, tls: dict[str, Any] | None, port: int) -> None:
    raw = yaml.safe_load(paths.params.read_text())
    raw["hub"]["port"] = port
    raw["hub"].pop("tls", None)
    if tls is not None:
        raw["hub"]["tls"] = tls
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


# ---------------------------------------------------------------- servers and load

def wait_up(url: str, context: ssl.SSLContext | None, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(f"{url}/healthz", verify=context or False, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


@contextmanager
def server(command: list[str], url: str, context: ssl.SSLContext | None) -> Iterator[int]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url, context, process)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _parse(out: str) -> dict[str, Any]:
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match.group(1)) * unit[match.group(2)] if match else float("nan")

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50%"), "p99_ms": latency("99%"),
        "unexpected": int(re.search(r"UNEXPECTED (\d+)", out).group(1)),  # type: ignore[union-attr]
        "deduplicated": int(re.search(r"DEDUPLICATED (\d+)", out).group(1)),  # type: ignore[union-attr]
        "socket_errors": sum(int(x) for x in socket_errors.groups()) if socket_errors else 0,
    }


def wrk(url: str, connections: int, clients: int, seconds: float, shim: Path | None, certs: list[tuple[str, str]],
        mode: str, *args: str) -> dict[str, Any]:
    """``clients`` single-threaded wrk processes at once (OpenSSL 3 serialises a multi-threaded client on
    its locks), ``connections`` in all; process k is device k (its certificate with the shim, its token
    and upload path in the script). Requests/s summed; p50 the median and p99 the worst of the processes."""
    processes = []
    for k in range(clients):
        env = dict(os.environ)
        if shim is not None:
            env.update(LD_PRELOAD=str(shim), EDGELOOP_BENCH_CLIENT_CERT=certs[k][0],
                       EDGELOOP_BENCH_CLIENT_KEY=certs[k][1])
        share = connections // clients + (1 if k < connections % clients else 0)
        command = ["wrk", "-t1", f"-c{share}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s",
                   "-s", str(SCRIPT), url, "--", mode, *args, *((str(k),) if mode == "upload" else ())]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env))
    results = []
    for process in processes:
        out, err = process.communicate(timeout=seconds + 120)
        if process.returncode != 0:
            raise RuntimeError(f"wrk failed: {err.strip()}")
        results.append(_parse(out))
    return {
        "requests_per_s": sum(r["requests_per_s"] for r in results),
        "p50_ms": statistics.median(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        **{key: sum(r[key] for r in results) for key in ("unexpected", "deduplicated", "socket_errors")},
    }


def connection_cost(url: str, pid: int, context: ssl.SSLContext | None, count: int) -> dict[str, float]:
    """Server CPU and client wall time per new connection (+ one GET /healthz) minus per kept-alive request."""
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def receive(sock: socket.socket) -> bytes:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def read_response(sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += receive(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += receive(sock)

    def connect() -> socket.socket:
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return context.wrap_socket(raw, server_hostname=host) if context is not None else raw

    for _ in range(20):  # warm up
        with connect() as sock:
            sock.sendall(request)
            read_response(sock)
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    for _ in range(count):
        with connect() as sock:
            sock.sendall(request)
            read_response(sock)
    cold_cpu, cold_wall = (cpu_seconds(pid) - cpu) / count, (time.perf_counter() - wall) / count
    with connect() as sock:
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for _ in range(count):
            sock.sendall(request)
            read_response(sock)
        warm_cpu, warm_wall = (cpu_seconds(pid) - cpu) / count, (time.perf_counter() - wall) / count
    return {"cpu_ms": (cold_cpu - warm_cpu) * 1000, "wall_ms": (cold_wall - warm_wall) * 1000,
            "cold_request_ms": cold_wall * 1000}


# ---------------------------------------------------------------- the run

def build_shim(work: Path) -> Path:
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is needed to build bench/wrk_client_cert.c (apt-get install gcc libssl-dev)")
    out = work / "wrk_client_cert.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM), "-ldl", "-lssl"], check=True)
    return out


def run_once(setup: dict[str, Any], shim: Path, connections: int, clients: int, seconds: float,
             port: int) -> dict[str, Any]:
    import httpx

    paths, pki, load = setup["paths"], setup["pki"], setup["load"]
    identity = setup["identity"]
    edgeloop = str(Path(sys.executable).parent / "edgeloop")
    tls = {"cert_file": str(pki.hub_cert), "key_file": str(pki.hub_key), "ca_dir": str(pki.ca_dir),
           "client_certificates": "required"}
    trust = client_context(pki.ca_file)
    probe = client_context(pki.ca_file, identity.cert_file, identity.key_file)
    # the probe connects to the floor as a device; to the hub it needs a certificate the hub issued
    hub_probe = client_context(pki.ca_file, *setup["certs"][0])
    plans = [
        ("hub http", "http", None, [edgeloop, "hub", "serve", "--root", str(paths.root)], None),
        ("hub mTLS", "https", tls, [edgeloop, "hub", "serve", "--root", str(paths.root)], hub_probe),
        ("floor http", "http", None, [sys.executable, __file__, "--floor", str(port)], None),
        ("floor TLS", "https", None, [sys.executable, __file__, "--floor", str(port), "--tls", str(pki.hub_cert),
                                      str(pki.hub_key), str(pki.ca_file)], probe),
    ]
    results: dict[str, Any] = {}
    for label, scheme, tls_section, command, context in plans:
        set_tls(paths, tls_section, port)
        fresh_state(setup)
        url = f"{scheme}://127.0.0.1:{port}"
        secure = scheme == "https"
        with server(command, url, trust if secure else None) as pid:
            etag = '"floor"'
            if label.startswith("hub"):
                verify: Any = hub_probe if secure else False
                etag = httpx.get(f"{url}{METADATA_PATH}timestamp.json", verify=verify).headers["etag"]
            row: dict[str, Any] = {}
            for kind in ("keep", "close"):  # polls need no token: the repository is open unless mTLS is required
                polls = wrk(url, connections, clients, seconds, shim if secure else None, setup["certs"], "poll",
                            METADATA_PATH, etag, kind)
                polls["polls_per_s"] = polls["requests_per_s"] / 2
                row[f"polls_{kind}"] = polls
            row["uploads"] = wrk(url, connections, clients, seconds, shim if secure else None, setup["certs"],
                                 "upload", str(load), IDEMPOTENCY_KEY, PARQUET_TYPES[0], "cert" if secure else "token")
            row["connection"] = connection_cost(url, pid, context, HANDSHAKES)
        results[label] = row
    return results


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def walk(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {key: walk([v[key] for v in values]) for key in values[0]}
        if isinstance(values[0], int | float):
            return statistics.median(values) if not all(isinstance(v, int) for v in values) else max(values)
        return values[0]

    median: dict[str, Any] = walk(runs)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (devices)")
    parser.add_argument("--clients", type=int, default=5,
                        help="wrk processes the connections are spread over; each is one device identity")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load phase")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the table shows medians")
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        cert, key, ca = args.tls or (None, None, None)
        serve_floor(args.floor, cert, key, ca)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="edgeloop-hub-tls-"))
    try:
        shim = build_shim(work)
        setup = make_project(work, args.clients, args.seconds, args.clients)
        port = 18650
        runs = []
        for i in range(args.repeat):
            runs.append(run_once(setup, shim, args.connections, args.clients, args.seconds, port))
            print(json.dumps({"run": i + 1, **runs[-1]}), flush=True)
        print(json.dumps({"median": median_of(runs), "connections": args.connections, "clients": args.clients,
                          "seconds": args.seconds,
                          "repeat": args.repeat}, indent=2), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
