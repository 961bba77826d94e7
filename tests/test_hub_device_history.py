"""Each device's history in the hub (hub.store.device_history) and the health reason in the fleet document,
against a real hub (uvicorn on 127.0.0.1, real HTTP, SQLite) on a manual clock.

Covers: events a runner resends with every heartbeat are stored once, also when two hub apps share one
database and after a restart; a later event is added; samples at most one per sampling slot, with the
state's version, health, reason, accuracy, largest drift and backlog; samples older than 30 days are
pruned; ``/v1/fleet`` gives health_reason and health_since while online, "" for a runner that does not
say, and for an offline device only ``last_said``; a database at revision 0002 full of rows is upgraded
with every row kept and history recorded afterwards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from edge.contracts.wire import device_path
from edgeloop.testkit.hub import ManualClock, running_hub
from hub import migrations, tokens
from hub.db import Device, DeviceEvent, DeviceSample, make_engine
from hub.store.device_history import SAMPLE_EVERY_S, HistoryRecorder, read_history

START = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # on a sampling slot's start
ACTIVATED = {"kind": "activated", "version": "3", "at": "2026-11-27T01:00:00+00:00",
             "detail": "f1_macro 0.9100 on 400 labelled rows: passes the active model's 0.8800"}
REJECTED = {"kind": "rejected", "version": "4", "at": "2026-11-27T01:30:00+00:00",
            "detail": "shadow: f1_macro 0.7100 on 400 labelled rows: below the active model's 0.9100 - 0.02"}
ROLLED_BACK = {"kind": "rolled_back", "version": "3", "at": "2026-11-27T02:10:00+00:00",
               "detail": "now serving 2: accuracy 0.74 below floor 0.8"}


def beat(events=(), **over) -> dict:
    body = {"model_version": "3", "channel": "canary", "health": "degraded",
            "health_reason": "accuracy 0.778 below floor 0.8", "health_since": "2026-11-27T01:40:00Z",
            "drift": {"temperature": 0.31, "vibration": -0.42}, "rolling_accuracy": 0.778, "spool_backlog": 12,
            "counters": {"predictions": 5000}, "clock": "2026-11-27T02:00:00+00:00", "events": list(events)}
    body.update(over)
    return body


def register(hub, device_id: str) -> str:
    issued = tokens.issue()
    with hub.app.state.sessions() as session:
        session.add(Device(device_id=device_id, channel="canary", token_id=issued.token_id, token_salt=issued.salt,
                           token_digest=issued.digest, created_at=hub.clock.now()))
        session.commit()
    return issued.token


def send(hub, device_id: str, token: str, body: dict) -> None:
    response = httpx.post(f"{hub.url}{device_path(device_id, 'heartbeat')}", json=body,
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def stored_events(engine, device_id: str) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(
            select(DeviceEvent.kind, DeviceEvent.version, DeviceEvent.detail)
            .where(DeviceEvent.device_id == device_id).order_by(DeviceEvent.at))]


def sample_count(engine, device_id: str) -> int:
    with engine.connect() as connection:
        query = select(func.count(DeviceSample.id)).where(DeviceSample.device_id == device_id)
        return connection.execute(query).scalar()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("history") / "hub", clock=ManualClock(START)) as handle:
        yield handle


def test_resent_events_are_stored_once_and_new_ones_added(hub) -> None:
    token = register(hub, "press-01")
    for _ in range(3):  # the runner resends its newest events every time
        send(hub, "press-01", token, beat([ACTIVATED, REJECTED]))
        hub.clock.advance(60)
    send(hub, "press-01", token, beat([ACTIVATED, REJECTED, ROLLED_BACK]))
    send(hub, "press-01", token, beat([REJECTED, ROLLED_BACK]))  # the oldest fell out of the runner's window
    engine = hub.app.state.engine
    assert stored_events(engine, "press-01") == [
        ("activated", "3", ACTIVATED["detail"]), ("rejected", "4", REJECTED["detail"]),
        ("rolled_back", "3", ROLLED_BACK["detail"])]
    history = read_history(engine, "press-01", START - timedelta(days=1))
    assert [e.kind for e in history.events] == ["activated", "rejected", "rolled_back"]
    assert history.events[1].at == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
    assert history.events[0].received_at == START


def test_events_are_stored_once_across_two_hub_apps_on_one_database(hub) -> None:
    token = register(hub, "press-02")
    send(hub, "press-02", token, beat([ACTIVATED]))
    with running_hub(hub.root, clock=hub.clock) as other:  # a second process's app: its own, empty caches
        assert other.app.state.engine is not hub.app.state.engine
        send(other, "press-02", token, beat([ACTIVATED, REJECTED]))
        send(hub, "press-02", token, beat([ACTIVATED, REJECTED]))
        send(other, "press-02", token, beat([ACTIVATED, REJECTED]))
    assert [e[0] for e in stored_events(hub.app.state.engine, "press-02")] == ["activated", "rejected"]
    fresh = HistoryRecorder(hub.app.state.engine, hub.app.state.write_lock)  # as after a restart
    fresh.record("press-02", beat([ACTIVATED, REJECTED]), hub.clock.now())
    assert len(stored_events(hub.app.state.engine, "press-02")) == 2


def test_at_most_one_sample_per_interval_with_the_state_in_it(hub) -> None:
    token = register(hub, "press-03")
    start = hub.clock.now()
    beats = 20
    for i in range(beats):  # one a minute for 20 minutes
        send(hub, "press-03", token, beat(rolling_accuracy=0.9 - i / 100, spool_backlog=i))
        hub.clock.advance(60)
    slots = {int((start + timedelta(seconds=60 * i)).timestamp() // SAMPLE_EVERY_S) for i in range(beats)}
    assert len(slots) in (4, 5) and sample_count(hub.app.state.engine, "press-03") == len(slots)
    history = read_history(hub.app.state.engine, "press-03", start - timedelta(seconds=1))
    assert len(history.samples) == len(slots)
    first = history.samples[0]
    assert (first.at, first.model_version, first.health, first.health_reason) == (
        start, "3", "degraded", "accuracy 0.778 below floor 0.8")
    assert (first.rolling_accuracy, first.drift_feature, first.drift_psi, first.backlog) == (
        pytest.approx(0.9), "vibration", pytest.approx(-0.42), 0)
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(history.samples, history.samples[1:], strict=False)]
    assert all(gap >= 60 for gap in gaps) and sum(gaps) <= 20 * 60


def test_samples_older_than_30_days_are_pruned(hub) -> None:
    token = register(hub, "press-04")
    send(hub, "press-04", token, beat())
    engine = hub.app.state.engine
    assert sample_count(engine, "press-04") == 1
    hub.clock.advance(29 * 86400)
    send(hub, "press-04", token, beat())
    assert sample_count(engine, "press-04") == 2  # 29 days old: kept
    hub.clock.advance(2 * 86400)
    send(hub, "press-04", token, beat())
    history = read_history(engine, "press-04", hub.clock.now() - timedelta(days=365))
    assert [s.at for s in history.samples] == [hub.clock.now() - timedelta(days=2), hub.clock.now()]


def test_fleet_gives_the_health_reason_while_online_and_last_said_when_offline(hub) -> None:
    reasoned, older, quiet = register(hub, "line-01"), register(hub, "line-02"), register(hub, "line-03")
    send(hub, "line-03", quiet, beat())
    hub.clock.advance(3600)  # line-03 is offline from now on
    send(hub, "line-01", reasoned, beat())
    old_runner = beat(health="ok")
    del old_runner["health_reason"], old_runner["health_since"]
    send(hub, "line-02", older, old_runner)
    response = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"})
    assert response.status_code == 200
    devices = {d["device_id"]: d for d in response.json()["devices"]}
    online = devices["line-01"]
    assert (online["status"], online["health"], online["health_reason"], online["last_said"]) == (
        "online", "degraded", "accuracy 0.778 below floor 0.8", None)
    assert datetime.fromisoformat(online["health_since"]) == datetime(2026, 11, 27, 1, 40, tzinfo=UTC)
    assert (devices["line-02"]["health_reason"], devices["line-02"]["health_since"]) == ("", None)
    offline = devices["line-03"]
    assert (offline["status"], offline["health"], offline["health_reason"], offline["health_since"]) == (
        "offline", None, None, None)
    said_at = (hub.clock.now() - timedelta(seconds=3600)).strftime("%Y-%m-%d %H:%M UTC")
    assert offline["last_said"] == (
        f"last said degraded: accuracy 0.778 below floor 0.8 (since 2026-11-27 01:40 UTC) at {said_at}")


def test_a_database_at_0002_is_upgraded_keeping_its_rows_and_then_records_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    old = make_engine(url, migrate=False)
    migrations.upgrade(old, "0002")
    with old.begin() as connection:
        connection.execute(text(
            "INSERT INTO devices (device_id, channel, token_id, token_salt, token_digest, created_at, token_issued_at) "
            "VALUES ('press-09', 'stable', 'abcdef0123456789', :s, :g, :c, :c)"),
            {"s": "ab" * 16, "g": "cd" * 32, "c": START})
        connection.execute(text("INSERT INTO heartbeats (device_id, received_at, state) VALUES ('press-09', :at, :s)"),
                           {"at": START, "s": '{"model_version": "3", "health": "ok"}'})
        connection.execute(text(
            "INSERT INTO uploads (device_id, batch_id, path, bytes, rows, stored_at) "
            "VALUES ('press-09', :b, 'uploads/x.parquet', 1000, 100, :at)"), {"b": "0" * 64, "at": START})
    old.dispose()

    engine = make_engine(url)  # what the hub does at start
    try:
        with engine.connect() as connection:
            assert migrations.current_revision(connection) == "0003"
            assert connection.execute(text("SELECT device_id, channel FROM devices")).all() == [("press-09", "stable")]
            assert connection.execute(text("SELECT count(*) FROM heartbeats")).scalar() == 1
        from hub.db import write_lock

        HistoryRecorder(engine, write_lock(engine)).record("press-09", beat([ACTIVATED]), START + timedelta(hours=1))
        history = read_history(engine, "press-09", START - timedelta(days=1))
        assert [e.kind for e in history.events] == ["activated"] and len(history.samples) == 1
        assert [(u.rows, u.bytes) for u in history.uploads] == [(100, 1000)]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def engine(request, tmp_path: Path):
    from edgeloop.testkit.postgres import shared_postgres

    url = (f"sqlite:///{tmp_path / 'hub.db'}" if request.param == "sqlite"
           else shared_postgres().fresh_database("history"))
    made = make_engine(url)
    issued = tokens.issue()
    with made.begin() as connection:
        connection.execute(insert(Device), [{"device_id": "press-05", "channel": "canary", "token_id": issued.token_id,
                                            "token_salt": issued.salt, "token_digest": issued.digest,
                                            "created_at": START}])
    yield made
    made.dispose()


def test_the_page_reads_count_in_the_database_on_both(engine) -> None:
    from hub.db import Upload, write_lock
    from hub.store.device_history import read_events, read_trend, read_upload_buckets

    recorder, other = HistoryRecorder(engine, write_lock(engine)), HistoryRecorder(engine, write_lock(engine))
    for i in range(36):  # three hours of heartbeats every 5 minutes, from two "processes"
        (recorder if i % 2 else other).record(
            "press-05", beat([ACTIVATED, REJECTED], drift={"t": -0.1 * (i % 4)}, rolling_accuracy=0.9 - i / 100),
            START + timedelta(seconds=SAMPLE_EVERY_S * i))
    assert [e.kind for e in read_events(engine, "press-05")] == ["activated", "rejected"]
    points = read_trend(engine, "press-05", START, most_points=12)
    assert len(points) == 12 and [p.samples for p in points] == [3] * 12
    assert points[0].drift_psi == pytest.approx(0.2) and points[0].rolling_accuracy == pytest.approx(0.88)
    assert points[1].at == START + timedelta(seconds=3 * SAMPLE_EVERY_S)
    with engine.begin() as connection:
        connection.execute(insert(Upload), [
            {"device_id": "press-05", "batch_id": f"{n:064x}", "path": "u", "bytes": 10, "rows": 100 + n,
             "stored_at": START + timedelta(minutes=25 * n)} for n in range(6)])  # 02:00 ... 04:05
    unit, buckets = read_upload_buckets(engine, "press-05", START - timedelta(days=30), START + timedelta(hours=4))
    assert unit == "hour" and [(b.start.hour, b.rows, b.batches) for b in buckets] == [
        (2, 100 + 101 + 102, 3), (3, 103 + 104, 2), (4, 105, 1), (5, 0, 0), (6, 0, 0)]  # up to now, 06:00
    unit, buckets = read_upload_buckets(engine, "press-05", START - timedelta(days=30), START + timedelta(days=3))
    assert unit == "day" and [(b.start.day, b.rows, b.batches) for b in buckets] == [
        (27, 615, 6), (28, 0, 0), (29, 0, 0), (30, 0, 0)]
