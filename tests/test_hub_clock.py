"""The hub's clock (hub.clock) and what depends on it without HTTP: staleness (hub.fleet_status) and the
fleet document built from stored rows at a given "now" (hub.fleet_document)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.clock import ManualClock, SystemClock, as_utc
from hub.fleet_document import build_fleet
from hub.fleet_status import NEVER_SEEN, OFFLINE, ONLINE, STATUSES, status_of
from hub.schemas.fleet import FleetDevice
from hub.store.fleet import FleetRow

START = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def test_the_system_clock_is_utc_aware_and_current() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock(START)
    assert clock.now() == clock.now() == START
    assert clock.advance(1.5) == START + timedelta(seconds=1.5) == clock.now()
    assert clock.advance(0) == clock.now()
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))  # naive: which zone?
    plus_two = ManualClock(datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert plus_two.now() == datetime(2026, 1, 1, 12, 0, tzinfo=UTC) and plus_two.now().tzinfo == UTC
    assert ManualClock().now().tzinfo == UTC


def test_concurrent_advances_all_count() -> None:
    clock = ManualClock(START)
    threads = [threading.Thread(target=lambda: [clock.advance(0.001) for _ in range(500)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == START + timedelta(seconds=2)


def test_as_utc_takes_naive_times_as_utc() -> None:
    assert as_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))).hour == 17


def test_status_words_and_the_staleness_boundary() -> None:
    assert STATUSES == (NEVER_SEEN, ONLINE, OFFLINE) == ("never seen", "online", "offline")
    assert list(FleetDevice.model_json_schema()["properties"]["status"]["enum"]) == list(STATUSES)
    clock = ManualClock(START)
    heard = clock.now()
    assert status_of(heard, clock.advance(30), 30) == ONLINE  # exactly stale_after_s: still online
    assert status_of(heard, clock.advance(0.000001), 30) == OFFLINE
    assert status_of(None, clock.now(), 30) == NEVER_SEEN


def row(device_id: str, received_at: datetime | None, **state) -> FleetRow:
    return FleetRow(device_id, state.pop("channel", "canary"), False, received_at, state if received_at else None, 0, 0)


def test_the_fleet_document_at_a_given_now() -> None:
    clock = ManualClock(START)
    rows = [
        row("quiet", None),
        row("silent", clock.now(), health="ok", model_version="7", spool_backlog=True, drift={"a": -0.5, "b": 0.2}),
        row("fresh", clock.advance(100), health="degraded", model_version="7", spool_backlog=4, channel="stable"),
        row("newer", clock.now(), health="ok", model_version="10"),
    ]
    now = clock.advance(20)
    fleet = build_fleet(rows, now, 60.0)
    by_id = {d.device_id: d for d in fleet.devices}
    assert fleet.generated_at == now and fleet.stale_after_s == 60.0 and fleet.estimates is None
    assert [d.device_id for d in fleet.devices] == ["quiet", "silent", "fresh", "newer"]
    assert (by_id["quiet"].status, by_id["quiet"].last_heartbeat, by_id["quiet"].health) == (NEVER_SEEN, None, None)
    silent = by_id["silent"]
    assert (silent.status, silent.health, silent.model_version) == (OFFLINE, None, "7")  # never shown healthy
    assert silent.last_heartbeat.age_s == 120 and silent.backlog is None  # a bool is not a backlog
    assert silent.max_drift.feature == "a" and silent.max_drift.psi == -0.5
    fresh = by_id["fresh"]
    assert (fresh.status, fresh.health, fresh.backlog, fresh.last_seen) == (ONLINE, "degraded", 4, START + timedelta(
        seconds=100))
    assert [(r.model_version, r.devices, r.online, r.channels) for r in fleet.releases] == [
        ("7", ["silent", "fresh"], 1, ["canary", "stable"]), ("10", ["newer"], 1, ["canary"])]
