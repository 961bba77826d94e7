"""Load-test the hub on loopback beside its floor, in the same run: uploads/s and no-change polls/s, the
hub's CPU per upload and per poll, and its longest garbage-collector pauses.

Two servers, each its own process, one after the other in every run:

- ``hub``: ``edgeloop hub serve`` (SQLite, one uvicorn worker unless ``--workers``), N registered
  devices with tokens, a published release repository;
- ``floor``: bench/hub_floor.py, a bare uvicorn app on the same settings that answers a poll with
  404/304 from memory and stores an upload by hashing it and writing it with fsync where the hub would,
  nothing else (no auth, no checks, no database).

Load: wrk (Debian package ``wrk``; one thread, N connections = N devices sending back to back, a closed
loop at saturation). Uploads: distinct 1,000-row Parquet batches (bench/hub_uploads.lua; each run starts
from the registered database and an empty landing zone, so nothing is deduplicated). A no-change poll
is what python-tuf does when nothing changed, and it is TWO requests: GET the next root version (404)
and GET ``timestamp.json`` with If-None-Match (304). bench/hub_polls.lua counts polls as completed
pairs; polls/s is polls per second, never requests per second. Latencies are wrk's, per request (a poll
is two of them back to back). Every measured phase follows a short warm-up of the same load.

Server CPU: utime + stime of the server's processes (``/proc/<pid>/stat``) over the measured phase,
divided by what it did (uploads stored, polls answered). GC pauses: bench/gc_probe/sitecustomize.py
times every collection in the server processes (gc.callbacks); the table shows the longest one during
the measured phases, and, after them, what a full collection costs the process (three forced by
SIGUSR1, the shortest). After each hub run the landing zone is checked against the hub's database: every
recorded batch is there exactly once, nothing else. Every phase runs ``--repeat`` times; the summary
shows medians (max pause: the median of the runs' maxima; counts: totals).

    apt-get install wrk
    .venv/bin/python bench/hub.py --devices 50 --seconds 15 --repeat 3

A benchmark, not a test: it asserts nothing, and reports unexpected answers and socket errors beside each
number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

from edge.contracts.layout import Paths  # noqa: E402
from edge.contracts.record import batch_id  # noqa: E402
from edge.contracts.release_layout import METADATA_PATH  # noqa: E402
from edge.contracts.wire import IDEMPOTENCY_KEY, PARQUET_TYPES, device_path  # noqa: E402
from edgeloop.testkit.synthetic import make_rows  # noqa: E402
from flows.params import load_params  # noqa: E402
from hub import tokens  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.db import Device, make_engine, make_sessions  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from simulator.batches import encode_batch  # noqa: E402

ROWS_PER_BATCH = 1000
BENCH = REPO / "bench"
UPLOADS_LUA, POLLS_LUA, FLOOR = BENCH / "hub_uploads.lua", BENCH / "hub_polls.lua", BENCH / "hub_floor.py"
GC_PROBE = BENCH / "gc_probe"
MAX_UPLOADS_PER_S = 2500  # more than either server stores: enough distinct pairs that none is sent twice
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the project (bench/hub_tls.py uses these)

def project(root: Path, port: int) -> Paths:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["hub"]["port"] = port
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return Paths.at(root)


def register(paths: Paths, devices: int) -> dict[str, str]:
    settings = HubSettings.load(paths.root)
    engine = make_engine(settings.database_url)
    issued = {}
    now = SystemClock().now()
    with make_sessions(engine)() as session:
        for i in range(devices):
            token = tokens.issue()
            name = f"bench-{i:04d}"
            session.add(Device(device_id=name, channel="canary", token_id=token.token_id,
                               token_salt=token.salt, token_digest=token.digest, created_at=now))
            issued[name] = token.token
        session.commit()
    engine.dispose()
    return issued


def make_batches(paths: Paths, count: int) -> list[bytes]:
    schema = load_params(paths.params).schema
    base = make_rows(schema, "x", ROWS_PER_BATCH, seed=1)
    out = []
    for i in range(count):
        frame = base.copy()
        frame[schema.event_id] = np.arange(ROWS_PER_BATCH, dtype=np.int64) + i * ROWS_PER_BATCH
        out.append(encode_batch(frame))
    return out


def publish_release(paths: Paths) -> None:
    from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
    from flows.releases import init_repository, publish

    config = release_config(paths.root)
    init_repository(config)
    publish(config, make_candidate(paths.root / "cand", tiny_onnx(seed=1), "cand-000000000001"), "canary")
    raw = yaml.safe_load(paths.params.read_text())
    raw["release"]["repository"] = str(config.repository)
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))


def write_load_files(folder: Path, issued: dict[str, str], batches: list[bytes]) -> None:
    """What bench/hub_uploads.lua reads: per device its upload path and token, and the batch bodies with keys."""
    (folder / "batches").mkdir(parents=True)
    (folder / "manifest.tsv").write_text("".join(f"{device_path(d, 'uploads')}\t{t}\n" for d, t in issued.items()))
    for i, body in enumerate(batches):
        (folder / "batches" / f"{i}.parquet").write_bytes(body)
        (folder / "batches" / f"{i}.key").write_text(batch_id(body) + "\n")


def check_landing(paths: Paths) -> dict[str, int]:
    """Files in the landing zone vs uploads the hub recorded: equal sets, nothing twice, nothing lost."""
    from sqlalchemy import select

    from hub.db import Upload

    settings = HubSettings.load(paths.root)
    engine = make_engine(settings.database_url)
    with make_sessions(engine)() as session:
        recorded = [f"{u.device_id}/{u.batch_id}.parquet" for u in session.scalars(select(Upload))]
    engine.dispose()
    files = {p.relative_to(paths.uploads).as_posix() for p in paths.uploads.rglob("*.parquet")}
    return {"files": len(files), "recorded": len(recorded), "lost": len(set(recorded) - files),
            "unrecorded": len(files - set(recorded)), "recorded_twice": len(recorded) - len(set(recorded))}


# ---------------------------------------------------------------- servers and measurements

def process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *(int(c) for c in children)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def peak_rss_mib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


@contextmanager
def server(command: list[str], port: int, gc_dir: Path) -> Iterator[list[int]]:
    """Start a server with the GC probe, wait for /healthz, yield its process ids, stop it (SIGTERM)."""
    gc_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EDGELOOP_BENCH_GC_DIR=str(gc_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(GC_PROBE), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[1]} exited with {process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[1]} did not start")
            time.sleep(0.1)
        time.sleep(0.5)  # workers, if any, are up
        yield process_tree(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)


def elapsed(out: str) -> float:
    """wrk's own duration of the run ("N requests in 15.00s" or "in 1.00m")."""
    value, unit = re.search(r"requests in ([\d.]+)(ms|s|m)\b", out).groups()  # type: ignore[union-attr]
    return float(value) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, connections: int, seconds: float, script: Path, *args: str) -> dict[str, Any]:
    """Run wrk (one thread) and read rates, latency percentiles, the script's counts and errors."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
           "-s", str(script), url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match.group(1)) * unit[match.group(2)] if match else float("nan")

    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    counts = {key.lower(): int(value) for key, value in re.findall(r"^([A-Z]+) (\d+)$", out, re.MULTILINE)}
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "seconds": elapsed(out),
        "p50_ms": latency("50%"), "p99_ms": latency("99%"),
        "socket_errors": sum(int(x) for x in socket.groups()) if socket else 0,
        **counts,
    }


FORCED = 3  # full collections forced in each server after the load (the table shows the shortest)


def forced_full_collection_ms(pids: list[int], gc_dir: Path) -> float:
    """What one full collection costs each server process now (bench/gc_probe on SIGUSR1): the shortest of
    ``FORCED`` (the others may include being descheduled), the largest over the processes."""
    since = time.time()
    for _ in range(FORCED):
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
    times: dict[str, list[float]] = {}
    for file in gc_dir.glob("*.jsonl"):
        for line in file.read_text().splitlines():
            entry = json.loads(line)
            if "forced_full_ms" in entry and entry["t"] >= since:
                times.setdefault(file.stem, []).append(entry["forced_full_ms"])
    return max((min(each) for each in times.values()), default=float("nan"))


def gc_pauses(gc_dir: Path, windows: list[tuple[float, float]]) -> dict[str, float]:
    """Longest pause (any generation, and full collections) and full-collection count inside ``windows``."""
    worst, worst_full, full, total_ms = 0.0, 0.0, 0, 0.0
    for file in gc_dir.glob("*.jsonl"):
        for line in file.read_text().splitlines():
            entry = json.loads(line)
            # a line covers the half second before its time stamp
            if not any(start <= entry["t"] - 0.25 <= end for start, end in windows):
                continue
            worst = max(worst, *entry["max_ms"])
            worst_full = max(worst_full, entry["max_ms"][2])
            full += entry["count"][2]
            total_ms += sum(entry["total_ms"])
    seconds = sum(end - start for start, end in windows)
    return {"max_pause_ms": worst, "max_full_pause_ms": worst_full, "full_collections": full,
            "gc_ms_per_s": total_ms / seconds if seconds else 0.0}


def measured(pids: list[int], run: Any) -> tuple[dict[str, Any], tuple[float, float], float]:
    """Run one measured load phase: (wrk's result, its wall-time window, server CPU seconds)."""
    cpu, started = cpu_seconds(pids), time.time()
    result = run()
    return result, (started, time.time()), cpu_seconds(pids) - cpu


def upload_phase(url: str, pids: list[int], gc_dir: Path, setup: dict[str, Any], seconds: float,
                 warmup: float) -> dict[str, Any]:
    devices, args = setup["devices"], (str(setup["load"]), IDEMPOTENCY_KEY, PARQUET_TYPES[0])
    wrk(url, devices, warmup, UPLOADS_LUA, *args, str(setup["warmup_offset"]))
    uploads, window, cpu = measured(pids, lambda: wrk(url, devices, seconds, UPLOADS_LUA, *args, "0"))
    stored = uploads["stored"]
    return {
        "uploads_per_s": stored / uploads["seconds"],
        "upload_p50_ms": uploads["p50_ms"], "upload_p99_ms": uploads["p99_ms"],
        "cpu_ms_per_upload": cpu * 1000 / stored if stored else float("nan"),
        "uploads_stored": stored, "uploads_deduplicated": uploads["deduplicated"],
        "upload_unexpected": uploads["unexpected"], "upload_socket_errors": uploads["socket_errors"],
        "gc_uploads": gc_pauses(gc_dir, [window]),
    }


def poll_phase(url: str, pids: list[int], gc_dir: Path, setup: dict[str, Any], seconds: float,
               warmup: float) -> dict[str, Any]:
    devices, args = setup["devices"], (METADATA_PATH, setup["etag"])
    wrk(url, devices, warmup, POLLS_LUA, *args)
    polls, window, cpu = measured(pids, lambda: wrk(url, devices, seconds, POLLS_LUA, *args))
    return {
        "polls_per_s": polls["polls"] / polls["seconds"],
        "poll_request_p50_ms": polls["p50_ms"], "poll_request_p99_ms": polls["p99_ms"],
        "cpu_us_per_poll": cpu * 1e6 / polls["polls"] if polls["polls"] else float("nan"),
        "poll_unexpected": polls["unexpected"], "poll_socket_errors": polls["socket_errors"],
        "gc_polls": gc_pauses(gc_dir, [window]),
    }


PHASES = {"uploads": upload_phase, "polls": poll_phase}


def fresh_state(setup: dict[str, Any]) -> None:
    """The hub's database as registered (devices, no uploads) and empty landing zones."""
    database: Path = setup["database"]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(setup["pristine"], database)
    shutil.rmtree(setup["paths"].uploads, ignore_errors=True)
    shutil.rmtree(setup["floor_folder"], ignore_errors=True)


def make_setup(work: Path, devices: int, seconds: float, warmup: float, port: int) -> dict[str, Any]:
    paths = project(work / "p", port)
    issued = register(paths, devices)
    publish_release(paths)
    measured_batches = math.ceil(seconds * MAX_UPLOADS_PER_S / devices)
    batches = measured_batches + math.ceil(warmup * MAX_UPLOADS_PER_S / devices)
    write_load_files(work / "load", issued, make_batches(paths, batches))
    settings = HubSettings.load(paths.root)
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    shutil.copy(database, work / "pristine.db")
    timestamp = (settings.releases / "metadata" / "timestamp.json").read_bytes()
    return {"paths": paths, "devices": devices, "load": work / "load", "database": database,
            "pristine": work / "pristine.db", "floor_folder": work / "floor-uploads",
            "warmup_offset": devices * measured_batches,  # warm-up pairs never repeat a measured one
            "etag": f'"{hashlib.sha256(timestamp).hexdigest()}"'}


def run_once(setup: dict[str, Any], work: Path, port: int, workers: int, seconds: float,
             warmup: float, index: int, servers: list[str], phases: list[str]) -> dict[str, Any]:
    url, paths = f"http://127.0.0.1:{port}", setup["paths"]
    edgeloop = str(Path(sys.executable).parent / "edgeloop")
    commands = {
        "hub": [edgeloop, "hub", "serve", "--root", str(paths.root), "--port", str(port), "--workers", str(workers)],
        "floor": [sys.executable, str(FLOOR), "--port", str(port), "--folder", str(setup["floor_folder"]),
                  "--etag", setup["etag"], "--workers", str(workers)],
    }
    row: dict[str, Any] = {}
    fresh_state(setup)
    for label in servers:
        gc_dir = work / f"gc-{label}-{index}"
        with server(commands[label], port, gc_dir) as pids:
            row[label] = {}
            for phase in phases:
                row[label] |= PHASES[phase](url, pids, gc_dir, setup, seconds, warmup)
            row[label]["peak_rss_mib"] = peak_rss_mib(pids)
            row[label]["forced_full_gc_ms"] = forced_full_collection_ms(pids, gc_dir)
    if "hub" in servers and "uploads" in phases:
        row["hub"]["landing"] = check_landing(paths)
    return row


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs' numbers (counts of errors and collections: totals)."""
    def walk(values: list[Any], key: str = "") -> Any:
        if isinstance(values[0], dict):
            return {k: walk([v[k] for v in values], k) for k in values[0]}
        if key.endswith(("unexpected", "socket_errors")) or key in (
                "full_collections", "uploads_deduplicated", "lost", "unrecorded", "recorded_twice"):
            return sum(values)
        return round(statistics.median(values), 3)

    result: dict[str, Any] = walk(runs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[50], help="concurrent devices (connections)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each measured phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up before each measured phase, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the summary shows medians")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the hub (and the floor)")
    parser.add_argument("--servers", nargs="+", choices=["hub", "floor"], default=["hub", "floor"])
    parser.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    for devices in args.devices:
        work = Path(tempfile.mkdtemp(prefix=f"edgeloop-hub-{devices}-"))
        try:
            port = 18700 + devices
            setup = make_setup(work, devices, args.seconds, args.warmup, port)
            runs = []
            for i in range(args.repeat):
                runs.append(run_once(setup, work, port, args.workers, args.seconds, args.warmup, i, args.servers,
                                     args.phases))
                print(json.dumps({"devices": devices, "run": i + 1, **runs[-1]}), flush=True)
            print(json.dumps({"devices": devices, "workers": args.workers, "seconds": args.seconds,
                              "repeat": args.repeat, "median": summarize(runs)}, indent=2), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
