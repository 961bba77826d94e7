"""Several hub processes on one PostgreSQL (pgserver, started by the suite) and one project folder, over real HTTP.

Hub A is ``edgeloop hub serve --workers 2`` on one port, hub B a separate ``edgeloop hub serve`` on another
(as a second host behind a load balancer would be: same database, same landing zone, same admin token
file). Covers: the same batch sent to both at once is stored once (one row, one file; both answers name
the same batch and time, one of them ``deduplicated``); heartbeats through either land in one table and
the fleet views of both agree; ``edgeloop devices revoke`` on the shared database is refused at once by
every process; ``--workers 2`` on SQLite is refused in one line. Fast lane: only the last test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from edge.contracts.layout import Paths
from edge.contracts.wire import FLEET_PATH, IDEMPOTENCY_KEY, device_path
from edgeloop.testkit.hub import free_port, hub_project
from edgeloop.testkit.postgres import postgres  # noqa: F401 - the session fixture
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.db import Heartbeat, Upload, make_engine, make_sessions
from hub.registry import add_device
from hub.settings import DATABASE_ENV as DATABASE_ENV_NAME
from simulator.batches import encode_batch

PARQUET = "application/vnd.apache.parquet"
EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
BEAT = {"model_version": "3", "channel": "canary", "health": "ok", "drift": {"temperature": 0.1},
        "rolling_accuracy": 0.9, "spool_backlog": 0, "counters": {"predictions": 10},
        "clock": "2026-11-27T02:00:00+00:00"}


@dataclass
class Fleet:
    root: Path
    url: str  # the database
    hubs: list[str]  # base URLs: A (two workers), B
    admin: str
    tokens: dict[str, str]


def _start(root: Path, port: int, env: dict[str, str], workers: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([EDGELOOP, "hub", "serve", "--root", str(root), "--port", str(port), "--workers",
                                 str(workers), "--grace", "5"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hub exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"hub at {url} did not start: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def fleet(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # noqa: F811
    root = hub_project(tmp_path_factory.mktemp("plant"))
    url = postgres.fresh_database("hubs")
    env = {**os.environ, DATABASE_ENV_NAME: url}
    engine = make_engine(url)  # migrated here once, as `edgeloop devices add` would
    tokens = {d: add_device(make_sessions(engine), d, "canary") for d in ("press-01", "press-02", "press-03")}
    engine.dispose()
    processes, hubs = [], []
    try:
        for workers in (2, 1):
            port = free_port()
            log = root / f"hub-{port}.log"
            process = _start(root, port, env, workers, log)
            processes.append(process)
            hubs.append(f"http://127.0.0.1:{port}")
            _wait(hubs[-1], process, log)
        admin = Paths.at(root).root.joinpath("keys", "hub-admin.token").read_text().strip()
        yield Fleet(root, url, hubs, admin, tokens)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_at_once(urls: list[str], body: bytes, headers: dict[str, str]) -> list[httpx.Response]:
    """POST ``body`` to every URL at the same moment (connections open first, then a barrier)."""
    barrier, answers = threading.Barrier(len(urls)), [None] * len(urls)

    def send(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            client.get(urls[i].split("/v1/")[0] + "/healthz")  # the connection is open before the race
            barrier.wait()
            answers[i] = client.post(urls[i], content=body, headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.slow
def test_the_same_batch_sent_to_two_processes_at_once_is_stored_once(fleet: Fleet) -> None:
    schema = load_params(fleet.root / "params.yaml").schema
    bodies = [encode_batch(make_rows(schema, "press-01", 40, seed)) for seed in range(8)]
    for body in bodies:
        key = hashlib.sha256(body).hexdigest()
        headers = {**bearer(fleet.tokens["press-01"]), IDEMPOTENCY_KEY: key, "Content-Type": PARQUET}
        answers = post_at_once([f"{hub}{device_path('press-01', 'uploads')}" for hub in fleet.hubs], body, headers)
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        first, second = (a.json() for a in answers)
        assert {first["deduplicated"], second["deduplicated"]} == {True, False}
        assert {k: v for k, v in first.items() if k != "deduplicated"} == {
            k: v for k, v in second.items() if k != "deduplicated"}
        assert first["batch_id"] == key
    engine = make_engine(fleet.url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Upload.batch_id).where(Upload.device_id == "press-01")).scalars().all()
    finally:
        engine.dispose()
    keys = sorted(hashlib.sha256(b).hexdigest() for b in bodies)
    assert sorted(rows) == keys  # one row per batch
    landed = Paths.at(fleet.root).uploads / "press-01"
    assert sorted(p.name for p in landed.iterdir()) == [f"{k}.parquet" for k in keys]  # one file each, no temp left
    assert all((landed / f"{hashlib.sha256(b).hexdigest()}.parquet").read_bytes() == b for b in bodies)


@pytest.mark.slow
def test_heartbeats_through_either_process_and_both_fleet_views_agree(fleet: Fleet) -> None:
    a, b = fleet.hubs
    for hub, device, version in ((a, "press-02", "4"), (b, "press-03", "5"), (b, "press-02", "6"),
                                 (a, "press-03", "7")):
        answer = httpx.post(f"{hub}{device_path(device, 'heartbeat')}", json={**BEAT, "model_version": version},
                            headers=bearer(fleet.tokens[device]))
        assert answer.status_code == 200, answer.text
    views = []
    for hub in (a, b, a, b):  # A has two workers: ask it twice
        answer = httpx.get(f"{hub}{FLEET_PATH}", headers=bearer(fleet.admin))
        assert answer.status_code == 200, answer.text
        devices = answer.json()["devices"]
        for device in devices:  # seconds since the heartbeat: moves between two requests
            (device["last_heartbeat"] or {}).pop("age_s", None)
        views.append({d["device_id"]: d for d in devices})
    assert all(view == views[0] for view in views[1:])
    assert views[0]["press-02"]["model_version"] == "6" and views[0]["press-03"]["model_version"] == "7"
    engine = make_engine(fleet.url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Heartbeat)) == 2
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_revocation_is_refused_at_once_by_every_process(fleet: Fleet) -> None:
    beat = device_path("press-02", "heartbeat")
    for hub in fleet.hubs * 2:
        assert httpx.post(f"{hub}{beat}", json=BEAT, headers=bearer(fleet.tokens["press-02"])).status_code == 200
    revoked = subprocess.run([EDGELOOP, "devices", "revoke", "press-02", "--root", str(fleet.root)],
                             env={**os.environ, DATABASE_ENV_NAME: fleet.url}, capture_output=True, text=True,
                             timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    for hub in fleet.hubs * 3:  # the very next requests, to every process and worker
        answer = httpx.post(f"{hub}{beat}", json=BEAT, headers=bearer(fleet.tokens["press-02"]))
        assert answer.status_code == 401, answer.text
    ok = httpx.post(f"{fleet.hubs[1]}{device_path('press-03', 'heartbeat')}", json=BEAT,
                    headers=bearer(fleet.tokens["press-03"]))
    assert ok.status_code == 200


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path) -> None:
    root = hub_project(tmp_path / "p")
    env = {k: v for k, v in os.environ.items() if k != DATABASE_ENV_NAME}
    result = subprocess.run([EDGELOOP, "hub", "serve", "--workers", "2", "--root", str(root)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --workers 2: the hub's database is SQLite, which takes one writer")
    assert result.stderr.count("\n") == 1 and not (root / "data" / "hub").exists()  # refused before anything
