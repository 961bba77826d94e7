"""The hub's tables (devices, uploads, heartbeats, device certificates, enrollment codes) with SQLAlchemy 2.0,
the engine set-up, the schema upgrade at start, the write lock and the database probe.

Two databases: SQLite (default, one hub process) and PostgreSQL (``postgresql+psycopg://...``, several hub
processes or hosts). ``make_engine(url)`` refuses any other URL in one line, creates SQLite's folder,
gives SQLite WAL mode and a busy timeout (concurrent requests wait instead of failing) and PostgreSQL
sessions in UTC, then brings the schema to the newest revision (hub.migrations: Alembic, under a lock,
so hub processes starting together migrate once; an older hub's database is taken over with its rows).
``write_lock(engine)`` is what the hub holds around writes: a process-wide lock on SQLite (one writer at
a time; its busy handler sleeps in growing steps, which turns contention into tail latency), nothing on
PostgreSQL (row locks and ``ON CONFLICT`` do that job across processes). No column reads the time by
itself: whoever writes a row passes its timestamps (from the hub's clock, hub.clock); ``UtcDateTime``
stores them in UTC and hands them back aware, in UTC, on both databases. Queries live in hub.store.
``device_events`` and ``device_samples`` (revision 0003) keep each device's history: the model events its
heartbeats carried, once each, and a bounded series of samples of its state (hub.store.device_history).
The tables here must match what the migrations build (tests/test_hub_migrations.py compares them); a
change to a table is a new revision in hub/migrations/versions.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from edge.contracts.errors import UserError
from hub import migrations

__all__ = ["Base", "DatabaseError", "Device", "DeviceCertificate", "DeviceEvent", "DeviceSample", "EnrollmentCode",
           "Heartbeat", "NoLock", "Upload",
           "database_url", "make_engine", "make_sessions", "reachable", "shown_url", "single_statements",
           "write_lock"]


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC on every database: aware times are converted to UTC before
    they are written (SQLite would keep the local wall time and drop the offset), naive ones are taken as
    UTC, and every value read back is aware, in UTC. The column is ``DateTime(timezone=True)``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def _created_at(context: DefaultExecutionContext) -> Any:
    return context.get_current_parameters().get("created_at")


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    token_id: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    token_salt: Mapped[str] = mapped_column(String(32))
    token_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)  # first registered
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # when its current token was issued (revision 0002); None on rows an older hub wrote: created_at then
    token_issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True,
                                                             default=_created_at)


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("device_id", "batch_id", name="one_batch_per_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    batch_id: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Heartbeat(Base):
    """The latest heartbeat of each device (older ones are replaced, not kept)."""

    __tablename__ = "heartbeats"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeviceEvent(Base):
    """A model event a device reported in a heartbeat (activated, rejected, rolled_back, ...), stored once:
    the same event resent by later heartbeats hits the unique key. ``version`` is "" when it had none
    (NULLs would never collide in a unique key)."""

    __tablename__ = "device_events"
    __table_args__ = (UniqueConstraint("device_id", "kind", "version", "at", name="one_event_per_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    kind: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # the device's clock
    detail: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the hub's clock


class DeviceSample(Base):
    """A device's state as one heartbeat said it, at most one per ``slot`` (the hub clock's time divided
    into sampling intervals, hub.store.device_history): the series behind drift and accuracy over time."""

    __tablename__ = "device_samples"
    __table_args__ = (UniqueConstraint("device_id", "slot", name="one_sample_per_slot"),
                      Index("ix_device_samples_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    slot: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the heartbeat arrived (the hub's clock)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    health: Mapped[str] = mapped_column(String(16))
    health_reason: Mapped[str] = mapped_column(String(200))
    rolling_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    drift_feature: Mapped[str | None] = mapped_column(String(64), nullable=True)
    drift_psi: Mapped[float | None] = mapped_column(Float, nullable=True)
    backlog: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DeviceCertificate(Base):
    """A client certificate the hub issued to a device (enrollment or renewal); only these authenticate."""

    __tablename__ = "device_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # sha256 of the DER, hex
    serial: Mapped[str] = mapped_column(String(40))  # hex: X.509 serials are up to 20 bytes
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class EnrollmentCode(Base):
    """A one-time enrollment code: its id, salt and salted hash only (hub.tokens), never the code."""

    __tablename__ = "enrollment_codes"

    code_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    salt: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DatabaseError(UserError):
    """The hub's database URL is not one the hub can use, or the database cannot be set up; says which."""


SUPPORTED = ("sqlite", "postgresql")
# PostgreSQL connections one hub process keeps open (and never more: no overflow connections, whose
# connect and disconnect per burst cost the server a process start each time; a request waits for a free
# one instead). N processes need N * POOL_SIZE of the server's max_connections (100 by default).
POOL_SIZE = 10


def database_url(url: str) -> URL:
    """``url`` parsed; ``postgresql://`` means the psycopg driver. DatabaseError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"hub.database: {url!r} is not a database URL (sqlite:///path or "
                            "postgresql+psycopg://user@host/db)") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise DatabaseError(f"hub.database: {parsed.get_backend_name()!r} is not supported: use SQLite "
                            "(sqlite:///path, one hub process) or PostgreSQL (postgresql+psycopg://user@host/db)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def shown_url(url: str | URL) -> str:
    """``url`` as it may be printed: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, migrate: bool = True) -> Engine:
    """An engine for ``url`` with the schema at the newest revision (``migrate``); SQLite folders are
    created as needed. DatabaseError, in one line, when the URL is unusable or the database cannot be
    reached or migrated."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        try:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=0,
                                   connect_args={"options": "-c timezone=UTC"})
        except ModuleNotFoundError as exc:
            raise DatabaseError(f"hub.database: {shown_url(parsed)} needs the {exc.name!r} driver: pip install "
                                "'psycopg[binary]' (it comes with edgeloop's cloud extra)") from None
    if migrate:
        try:
            migrations.upgrade(engine)
        except migrations.NewerSchema as exc:
            engine.dispose()
            raise DatabaseError(f"hub.database: {shown_url(parsed)} is at schema revision {exc}, newer than this "
                                f"hub knows ({migrations.HEAD}): upgrade edgeloop on this machine") from None
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseError(f"hub.database: cannot set up {shown_url(parsed)}: {reason}") from None
    return engine


class NoLock:
    """A lock that never waits: ``write_lock`` on databases that take concurrent writers."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *_exc: object) -> None:
        return None


def write_lock(engine: Engine) -> threading.Lock | NoLock:
    """What the hub holds around a write on ``engine``: one writer per process on SQLite, none on PostgreSQL."""
    return threading.Lock() if engine.dialect.name == "sqlite" else NoLock()


def single_statements(engine: Engine) -> Engine:
    """``engine`` for work that is one statement (a lookup, an insert-once, an upsert): on PostgreSQL in
    autocommit, so the statement is its own transaction and no BEGIN, COMMIT or ROLLBACK travels to the
    server (psycopg skips the ROLLBACK of an idle connection, and keeps its prepared statements), on the
    same connection pool; SQLite's engine as it is. Several statements that must hold together use
    ``engine.begin()`` or a session instead."""
    if engine.dialect.name != "postgresql":
        return engine
    cached: Engine | None = getattr(engine, "_edgeloop_single_statements", None)
    if cached is None:
        cached = engine.execution_options(isolation_level="AUTOCOMMIT")
        engine._edgeloop_single_statements = cached  # type: ignore[attr-defined]  # built once per engine
    return cached


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reachable(engine: Engine) -> bool:
    """True when the database answers ``SELECT 1``."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True
