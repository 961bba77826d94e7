"""SQL of each device's history: the model events its heartbeats carried, stored once, and a bounded
series of samples of its state; and reading both back, with its uploads, for the device page.

``HistoryRecorder.record(device_id, state, received_at)`` is called by the heartbeat route after the
latest heartbeat is stored. It writes only what is new, so a routine heartbeat costs no statement:

- events: a runner resends its newest events with every heartbeat (edge.reporting), so the recorder
  remembers, per device and per process, the events the last recorded heartbeat carried; only others
  are inserted (events are compared whole, so a device clock going back loses none), with
  ``INSERT ... ON CONFLICT DO NOTHING`` on UNIQUE (device_id, kind, version, at), so another hub process
  (or the first heartbeat after a restart, which inserts all it carries) never stores one twice;
- samples: the hub clock's time is cut into slots of ``SAMPLE_EVERY_S`` seconds (``hub.history.
  sample_every_s`` would be the setting; it is this module's constant while edge/contracts/hub_section.py
  has no such key); a device gets at most one sample per slot: the first heartbeat of a slot inserts one
  with ``ON CONFLICT DO NOTHING`` on UNIQUE (device_id, slot), later ones in that slot are skipped
  in memory;
- pruning: at most once per ``PRUNE_EVERY_S`` per process, samples older than ``SAMPLES_KEPT_S`` (30 days)
  and events older than ``EVENTS_KEPT_S`` (a year) are deleted (samples by their indexed ``at``).

One transaction under the app's write lock (hub.db.write_lock) on SQLite, autocommit statements on
PostgreSQL (hub.db.single_statements); the caches change only after the write succeeded.
``read_history(engine, device_id, since)`` returns the events (oldest first), the samples and the uploads
(time, rows, bytes) since ``since``. For a page, the database does the counting: ``read_events``,
``read_trend`` (samples merged ``slots_per_point`` slots at a time: largest absolute drift, lowest
accuracy; at most a few hundred rows for 30 days) and ``read_upload_buckets`` (rows and batches per hour,
or per day when the uploads span more than ``HOURLY_UP_TO``: the UTC text of the time cut to the hour or
day, the same on both databases). Leaves out validating heartbeats (hub.schemas.heartbeats), the
latest state (hub.store.heartbeats) and the page (edgeloop.console.device_pages).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import String, bindparam, delete, func, select
from sqlalchemy.engine import Engine

from hub.clock import as_utc
from hub.db import DeviceEvent, DeviceSample, Upload, single_statements
from hub.store.dialect import insert_for

__all__ = ["EVENTS_KEPT_S", "HOURLY_UP_TO", "PRUNE_EVERY_S", "SAMPLES_KEPT_S", "SAMPLE_EVERY_S", "DeviceHistory",
           "HistoryEvent", "HistoryRecorder", "HistorySample", "TrendPoint", "UploadBucket", "UploadPoint",
           "read_events", "read_history", "read_trend", "read_upload_buckets", "recorder_of"]

SAMPLE_EVERY_S = 300  # one sample per device per this many seconds at most (the hub clock's slots)
SAMPLES_KEPT_S = 30 * 86400  # samples older than this are pruned
EVENTS_KEPT_S = 365 * 86400  # events older than this (device clock) are pruned
PRUNE_EVERY_S = 3600  # each hub process prunes at most this often
HOURLY_UP_TO = timedelta(hours=48)  # uploads spanning less than this are counted per hour, else per day

EventKey = tuple[str, str, datetime]  # kind, version ("" for none), at (UTC)


@dataclass(frozen=True)
class HistoryEvent:
    kind: str
    version: str | None
    at: datetime  # the device's clock, UTC
    detail: str
    received_at: datetime  # the hub's clock, UTC


@dataclass(frozen=True)
class HistorySample:
    at: datetime
    model_version: str | None
    health: str
    health_reason: str
    rolling_accuracy: float | None
    drift_feature: str | None
    drift_psi: float | None
    backlog: int | None


@dataclass(frozen=True)
class UploadPoint:
    stored_at: datetime
    rows: int
    bytes: int


@dataclass(frozen=True)
class TrendPoint:
    at: datetime  # the first sample's time of the merged run
    drift_psi: float | None  # the largest absolute drift among them
    rolling_accuracy: float | None  # the lowest accuracy among them
    samples: int


@dataclass(frozen=True)
class UploadBucket:
    start: datetime  # of the hour or day, UTC
    rows: int
    batches: int


@dataclass(frozen=True)
class DeviceHistory:
    events: list[HistoryEvent]  # oldest first (by the device's time, then arrival)
    samples: list[HistorySample]  # oldest first
    uploads: list[UploadPoint]  # oldest first


def _parse_at(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _events(state: Mapping[str, Any]) -> dict[EventKey, str]:
    """The state's events by key, with their detail (a validated heartbeat's; anything odd is skipped)."""
    found: dict[EventKey, str] = {}
    raw = state.get("events")
    for event in raw if isinstance(raw, list) else ():
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            continue
        at = _parse_at(event.get("at"))
        if at is None:
            continue
        version = event.get("version")
        found[(event["kind"], "" if version is None else str(version), at)] = str(event.get("detail") or "")
    return found


def _largest_drift(drift: object) -> tuple[str | None, float | None]:
    if not isinstance(drift, dict):
        return None, None
    scores = [(str(k), float(v)) for k, v in drift.items()
              if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if not scores:
        return None, None
    return max(scores, key=lambda item: abs(item[1]))


def _sample(device_id: str, slot: int, state: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    feature, psi = _largest_drift(state.get("drift"))
    accuracy = state.get("rolling_accuracy")
    backlog = state.get("spool_backlog")
    version = state.get("model_version")
    return {
        "device_id": device_id, "slot": slot, "at": received_at,
        "model_version": None if version is None else str(version),
        "health": str(state.get("health") or "")[:16], "health_reason": str(state.get("health_reason") or "")[:200],
        "rolling_accuracy": float(accuracy) if isinstance(accuracy, int | float) and not isinstance(accuracy, bool)
        else None,
        "drift_feature": feature, "drift_psi": psi,
        "backlog": backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None,
    }


@cache
def _insert_events(dialect_name: str) -> Any:
    table = DeviceEvent.__table__
    return insert_for(dialect_name)(table).on_conflict_do_nothing(
        index_elements=[table.c.device_id, table.c.kind, table.c.version, table.c.at])


@cache
def _insert_sample(dialect_name: str) -> Any:
    table = DeviceSample.__table__
    return insert_for(dialect_name)(table).on_conflict_do_nothing(index_elements=[table.c.device_id, table.c.slot])


_PRUNE_SAMPLES = delete(DeviceSample).where(DeviceSample.at < bindparam("samples_before"))
_PRUNE_EVENTS = delete(DeviceEvent).where(DeviceEvent.at < bindparam("events_before"))


class HistoryRecorder:
    """Records the history of the devices heartbeating to one hub process (thread-safe)."""

    def __init__(self, engine: Engine, write_lock: AbstractContextManager[Any],
                 sample_every_s: float = SAMPLE_EVERY_S) -> None:
        self._engine, self._write_lock, self._every = engine, write_lock, sample_every_s
        self._lock = threading.Lock()
        self._carried: dict[str, frozenset[EventKey]] = {}  # device: the events its last recorded heartbeat had
        self._sampled: dict[str, int] = {}  # device: the newest slot known to hold its sample
        self._pruned_at: datetime | None = None

    def slot(self, received_at: datetime) -> int:
        return math.floor(received_at.timestamp() / self._every)

    def record(self, device_id: str, state: Mapping[str, Any], received_at: datetime) -> None:
        """Store ``state``'s events not stored yet, a sample when its slot has none, and prune when due."""
        events = _events(state)
        slot = self.slot(received_at)
        with self._lock:
            carried = self._carried.get(device_id)
            sampled = self._sampled.get(device_id)
            prune = self._pruned_at is None or (received_at - self._pruned_at).total_seconds() >= PRUNE_EVERY_S
        new = events if carried is None else {k: v for k, v in events.items() if k not in carried}
        due = sampled is None or slot > sampled
        if not new and not due and not prune:
            return
        dialect = self._engine.dialect.name
        with self._write_lock, single_statements(self._engine).begin() as connection:
            if new:
                connection.execute(_insert_events(dialect), [
                    {"device_id": device_id, "kind": kind, "version": version, "at": at, "detail": detail,
                     "received_at": received_at} for (kind, version, at), detail in new.items()])
            if due:
                connection.execute(_insert_sample(dialect), _sample(device_id, slot, state, received_at))
            if prune:
                connection.execute(_PRUNE_SAMPLES, {"samples_before": received_at - timedelta(seconds=SAMPLES_KEPT_S)})
                connection.execute(_PRUNE_EVENTS, {"events_before": received_at - timedelta(seconds=EVENTS_KEPT_S)})
        with self._lock:
            self._carried[device_id] = frozenset(events)
            if due:
                self._sampled[device_id] = max(slot, self._sampled.get(device_id, slot))
            if prune:
                self._pruned_at = received_at


_recorders_lock = threading.Lock()


def recorder_of(app_state: Any) -> HistoryRecorder:
    """The app's recorder (``app.state.device_history``), made on first use from its engine and write lock."""
    recorder: HistoryRecorder | None = getattr(app_state, "device_history", None)
    if recorder is None:
        with _recorders_lock:
            recorder = getattr(app_state, "device_history", None)
            if recorder is None:
                recorder = HistoryRecorder(app_state.engine, app_state.write_lock)
                app_state.device_history = recorder
    return recorder


_EVENTS = (select(DeviceEvent.kind, DeviceEvent.version, DeviceEvent.at, DeviceEvent.detail, DeviceEvent.received_at)
           .where(DeviceEvent.device_id == bindparam("device_id"))
           .order_by(DeviceEvent.at, DeviceEvent.id))
_SAMPLES = (select(DeviceSample.at, DeviceSample.model_version, DeviceSample.health, DeviceSample.health_reason,
                   DeviceSample.rolling_accuracy, DeviceSample.drift_feature, DeviceSample.drift_psi,
                   DeviceSample.backlog)
            .where(DeviceSample.device_id == bindparam("device_id"), DeviceSample.at >= bindparam("since"))
            .order_by(DeviceSample.slot))
_UPLOADS = (select(Upload.stored_at, Upload.rows, Upload.bytes)
            .where(Upload.device_id == bindparam("device_id"), Upload.stored_at >= bindparam("since"))
            .order_by(Upload.stored_at))


def read_history(engine: Engine, device_id: str, since: datetime) -> DeviceHistory:
    """``device_id``'s events (all kept), and its samples and uploads since ``since``, oldest first."""
    params = {"device_id": device_id, "since": since}
    with single_statements(engine).connect() as connection:
        events = connection.execute(_EVENTS, params).all()
        samples = connection.execute(_SAMPLES, params).all()
        uploads = connection.execute(_UPLOADS, params).all()
    return DeviceHistory(
        events=[HistoryEvent(r.kind, r.version or None, as_utc(r.at), r.detail, as_utc(r.received_at)) for r in events],
        samples=[HistorySample(as_utc(r.at), r.model_version, r.health, r.health_reason, r.rolling_accuracy,
                               r.drift_feature, r.drift_psi, None if r.backlog is None else int(r.backlog))
                 for r in samples],
        uploads=[UploadPoint(as_utc(r.stored_at), int(r.rows), int(r.bytes)) for r in uploads],
    )


def read_events(engine: Engine, device_id: str) -> list[HistoryEvent]:
    """Every kept event of ``device_id``, oldest first (device clock, then arrival)."""
    with single_statements(engine).connect() as connection:
        rows = connection.execute(_EVENTS, {"device_id": device_id}).all()
    return [HistoryEvent(r.kind, r.version or None, as_utc(r.at), r.detail, as_utc(r.received_at)) for r in rows]


def read_trend(engine: Engine, device_id: str, since: datetime, most_points: int = 720) -> list[TrendPoint]:
    """``device_id``'s samples since ``since`` as at most about ``most_points`` points: runs of consecutive
    sampling slots merged (largest absolute drift, lowest accuracy, first time) when there are more."""
    mine = (DeviceSample.device_id == device_id, DeviceSample.at >= since)
    with single_statements(engine).connect() as connection:
        span = connection.execute(select(func.min(DeviceSample.slot), func.max(DeviceSample.slot)).where(*mine)).one()
        if span[0] is None:
            return []
        slots_per_point = max(1, math.ceil((int(span[1]) - int(span[0]) + 1) / max(1, most_points)))
        run = (DeviceSample.slot - int(span[0])) // slots_per_point  # integer division on both databases
        query = (select(func.min(DeviceSample.at).label("at"),
                        func.max(func.abs(DeviceSample.drift_psi)).label("psi"),
                        func.min(DeviceSample.rolling_accuracy).label("accuracy"), func.count().label("samples"))
                 .where(*mine).group_by(run).order_by(run))
        rows = connection.execute(query).all()
    return [TrendPoint(as_utc(r.at), None if r.psi is None else float(r.psi),
                       None if r.accuracy is None else float(r.accuracy), int(r.samples)) for r in rows]


def _cut(engine: Engine, hourly: bool) -> Any:
    """The UTC text of ``stored_at`` cut to its hour ("2026-11-27 14") or day ("2026-11-27")."""
    if engine.dialect.name == "postgresql":  # sessions are in UTC (hub.db.make_engine)
        return func.to_char(Upload.stored_at, "YYYY-MM-DD HH24" if hourly else "YYYY-MM-DD", type_=String)
    return func.substr(Upload.stored_at, 1, 13 if hourly else 10, type_=String)  # stored as UTC text


def read_upload_buckets(engine: Engine, device_id: str, since: datetime,
                        now: datetime) -> tuple[str, list[UploadBucket]]:
    """("hour" or "day", rows and batches of ``device_id`` per bucket) from its first upload since ``since`` to
    ``now``, empty buckets included; per hour when that spans at most ``HOURLY_UP_TO``."""
    mine = (Upload.device_id == device_id, Upload.stored_at >= since)
    with single_statements(engine).connect() as connection:
        first = connection.execute(select(func.min(Upload.stored_at)).where(*mine)).scalar()
        if first is None:
            return "day", []
        first = as_utc(first)
        hourly = now - first <= HOURLY_UP_TO
        cut = _cut(engine, hourly)
        rows = connection.execute(select(cut, func.sum(Upload.rows), func.count()).where(*mine).group_by(cut)).all()
    unit, step, shape = ("hour", timedelta(hours=1), "%Y-%m-%d %H") if hourly else (
        "day", timedelta(days=1), "%Y-%m-%d")
    counts = {datetime.strptime(text, shape).replace(tzinfo=UTC): (int(total), int(batches))
              for text, total, batches in rows}
    moment = datetime.strptime(first.strftime(shape), shape).replace(tzinfo=UTC)
    last = max([now, *counts])
    buckets = []
    while moment <= last:
        total, batches = counts.get(moment, (0, 0))
        buckets.append(UploadBucket(moment, total, batches))
        moment += step
    return unit, buckets
