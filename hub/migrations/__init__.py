"""The hub's schema migrations (Alembic), run by the hub itself at start: ``upgrade(engine)``.

``versions/`` holds one revision per schema change: ``0001`` is the baseline (the tables as
``create_all`` made them before migrations existed; each is created only when missing, so a database made
by an older hub, which has no ``alembic_version`` table and perhaps not every table, is taken over
without losing a row), ``0002`` adds ``devices.token_issued_at``, ``0003`` the device history tables
(``device_events``, ``device_samples``). ``upgrade`` first reads ``alembic_version`` and does nothing
more when it already says ``HEAD`` (the common start costs one query and no Alembic import); otherwise
it runs ``alembic upgrade head`` programmatically, no alembic.ini, inside one transaction that holds the
database's migration lock: a PostgreSQL transaction-level advisory lock, or SQLite's write lock
(``BEGIN IMMEDIATE``). So hub processes that start at once against an empty database migrate it once,
one after the other, and PostgreSQL's transactional DDL leaves nothing half-applied. Imports nothing from
the hub (hub.db calls it). Leaves out downgrades at start (a newer database than this code is refused,
never changed) and autogenerate tooling (a revision is written by hand after the pattern of the ones here).
"""

from __future__ import annotations

import threading
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

__all__ = ["FOLDER", "HEAD", "NewerSchema", "alembic_config", "current_revision", "upgrade"]

FOLDER = Path(__file__).resolve().parent
HEAD = "0003"  # the newest revision in versions/ (tests/test_hub_migrations.py checks they agree)
VERSION_TABLE = "alembic_version"
LOCK_KEY = zlib.crc32(b"edgeloop hub schema migration")  # pg_advisory_xact_lock's key, the same in every hub
_in_process = threading.Lock()  # Alembic's op/context proxies are module-global: one migration per process


class NewerSchema(RuntimeError):
    """The database was migrated by a newer hub than this one (its revision is unknown here)."""


def current_revision(connection: Connection) -> str | None:
    """The revision ``alembic_version`` holds; None when the table is missing or empty."""
    try:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except SQLAlchemyError:
        return None


def upgrade(engine: Engine, revision: str = HEAD) -> str | None:
    """Bring ``engine``'s database to ``revision`` (the newest unless told: tests build older schemas);
    the revision it was at before (None: no migrations yet)."""
    with engine.connect() as connection:
        if current_revision(connection) == revision:
            return revision
    with _in_process:
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            locked = _sqlite_immediate(engine)
            try:
                with locked.begin() as connection:  # BEGIN IMMEDIATE: other writers wait (busy timeout)
                    return _upgrade(connection, revision)
            finally:
                locked.dispose()
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":  # held until this transaction ends
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            return _upgrade(connection, revision)


def alembic_config(connection: Connection) -> Any:
    """Alembic's configuration for the hub's migrations on ``connection`` (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> str | None:
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(connection)
    before = current_revision(connection)
    if before is not None and before not in {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}:
        raise NewerSchema(before)
    if before != revision:
        command.upgrade(config, revision)
    return before


def _sqlite_immediate(engine: Engine) -> Engine:
    """A one-connection engine on the same SQLite file whose transactions start with BEGIN IMMEDIATE
    (SQLAlchemy's documented recipe: the driver's own transaction handling off, BEGIN emitted here)."""
    locked = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(locked, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(locked, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return locked
