"""The hub's schema migrations (hub.migrations, Alembic) on real SQLite files and a real PostgreSQL (pgserver,
started by the suite; those cases are in the slow lane).

Covers: the newest revision is the one the hub expects; a database migrated from empty has exactly the
tables, columns, indexes and constraints of hub.db's models (Alembic's own comparison finds nothing); a
database at the baseline revision, full of rows, is upgraded by the hub's start with every row kept and
the new column filled, and downgraded and upgraded again; a database an older hub made with
``create_all`` (no ``alembic_version``, and from before TLS without the certificate and code tables) is
taken over with its rows; a database from a newer hub is refused in one line and left as it is; hub
processes starting at once against an empty database migrate it once, without an error.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from edgeloop.testkit.postgres import shared_postgres
from hub import migrations
from hub.db import Base, DatabaseError, make_engine, make_sessions
from hub.registry import list_devices
from hub.store.devices import credentials
from hub.store.fleet import read_fleet_rows

T0 = datetime(2026, 1, 5, 8, 30, 0, 250000, tzinfo=UTC)
TABLES = ("devices", "uploads", "heartbeats", "device_certificates", "enrollment_codes")
HISTORY_TABLES = ("device_events", "device_samples")  # revision 0003


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return shared_postgres().fresh_database("migrations")


def bare_engine(url: str) -> Engine:
    """An engine that does not migrate: the database stays as a test builds it."""
    return make_engine(url, migrate=False)


def at_revision(url: str, revision: str) -> Engine:
    engine = bare_engine(url)
    migrations.upgrade(engine, revision)
    return engine


def insert_baseline_rows(engine: Engine, tls_tables: bool = True) -> None:
    """Rows in every table, written with the baseline's columns only (as an older hub wrote them)."""
    with engine.begin() as connection:
        for i, revoked in ((1, None), (2, T0 + timedelta(hours=1)), (3, None)):
            connection.execute(text(
                "INSERT INTO devices (device_id, channel, token_id, token_salt, token_digest, created_at, revoked_at) "
                "VALUES (:d, 'canary', :t, :s, :g, :c, :r)"),
                {"d": f"press-0{i}", "t": f"{i:016x}", "s": "ab" * 16, "g": "cd" * 32,
                 "c": T0 + timedelta(minutes=i), "r": revoked})
        for n in range(5):
            connection.execute(text(
                "INSERT INTO uploads (device_id, batch_id, path, bytes, rows, stored_at) "
                "VALUES ('press-01', :b, :p, :size, 1000, :at)"),
                {"b": f"{n:064x}", "p": f"uploads/press-01/{n:064x}.parquet", "size": 60_000 + n,
                 "at": T0 + timedelta(seconds=n)})
        connection.execute(text(
            "INSERT INTO heartbeats (device_id, received_at, state) VALUES ('press-01', :at, :state)"),
            {"at": T0, "state": '{"model_version": "3", "drift": {"temperature": 0.25}}'})
        if tls_tables:
            connection.execute(text(
                "INSERT INTO device_certificates (device_id, fingerprint, serial, not_before, not_after, issued_at) "
                "VALUES ('press-03', :f, '1f', :a, :b, :a)"), {"f": "ef" * 32, "a": T0, "b": T0 + timedelta(days=90)})
            connection.execute(text(
                "INSERT INTO enrollment_codes (code_id, device_id, salt, digest, created_at, expires_at) "
                "VALUES (:c, 'press-03', :s, :g, :a, :b)"),
                {"c": "9" * 16, "s": "12" * 16, "g": "34" * 32, "a": T0, "b": T0 + timedelta(days=1)})


def snapshot(engine: Engine, tables=TABLES) -> dict[str, list[tuple]]:
    """Every row of ``tables`` (baseline columns only), sorted, with times normalised to UTC."""
    def norm(value):
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value

    baseline = {"devices": "device_id, channel, token_id, token_salt, token_digest, created_at, revoked_at"}
    out = {}
    with engine.connect() as connection:
        for table in tables:
            rows = connection.execute(text(f"SELECT {baseline.get(table, '*')} FROM {table}")).all()
            out[table] = sorted(tuple(norm(v) for v in row) for row in rows)
    return out


def test_head_is_the_newest_revision() -> None:
    from alembic.script import ScriptDirectory

    with bare_engine("sqlite://").connect() as connection:
        script = ScriptDirectory.from_config(migrations.alembic_config(connection))
    assert script.get_heads() == [migrations.HEAD]
    assert [s.revision for s in script.walk_revisions()][-1] == "0001"


def test_the_migrations_build_what_the_models_say(database_url) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert migrations.current_revision(connection) == migrations.HEAD
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert set(inspect(engine).get_table_names()) == {*TABLES, *HISTORY_TABLES, "alembic_version"}
    finally:
        engine.dispose()


def test_a_baseline_database_full_of_rows_is_upgraded_keeping_every_row(database_url) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    old = at_revision(database_url, "0001")
    insert_baseline_rows(old)
    before = snapshot(old)
    with old.connect() as connection:  # the comparison sees what 0002 and 0003 add
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [(d[0], d[2], d[3].name) for d in differences if d[0] == "add_column"] == [
        ("add_column", "devices", "token_issued_at")]
    assert sorted(d[1].name for d in differences if d[0] == "add_table") == list(HISTORY_TABLES)
    old.dispose()

    engine = make_engine(database_url)  # what the hub does at start
    try:
        assert snapshot(engine) == before
        devices = {d.device_id: d for d in list_devices(make_sessions(engine))}
        assert {d: (i.created_at, i.token_issued_at) for d, i in devices.items()} == {
            f"press-0{i}": (T0 + timedelta(minutes=i),) * 2 for i in (1, 2, 3)}  # filled from created_at
        assert devices["press-01"].uploads == 5 and devices["press-02"].status == "revoked"
        assert devices["press-03"].certificate_not_after == T0 + timedelta(days=90)
        found = credentials(engine, f"{1:016x}")
        assert found is not None and found.device_id == "press-01" and not found.revoked
        (beat,) = [r for r in read_fleet_rows(make_sessions(engine)) if r.state]
        assert beat.state == {"model_version": "3", "drift": {"temperature": 0.25}} and beat.received_at == T0

        from alembic import command

        with engine.begin() as connection:  # down to the baseline and up again: still every row
            command.downgrade(migrations.alembic_config(connection), "0001")
        assert snapshot(engine) == before
        assert migrations.upgrade(engine) == "0001"
        assert snapshot(engine) == before
    finally:
        engine.dispose()


def test_a_database_an_older_hub_made_with_create_all_is_taken_over(database_url) -> None:
    old = at_revision(database_url, "0001")
    with old.begin() as connection:  # as a hub from before TLS and before migrations left it
        for table in ("enrollment_codes", "device_certificates", "alembic_version"):
            connection.execute(text(f"DROP TABLE {table}"))
    insert_baseline_rows(old, tls_tables=False)
    before = snapshot(old, TABLES[:3])
    old.dispose()

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert migrations.current_revision(connection) == migrations.HEAD
        assert snapshot(engine, TABLES[:3]) == before
        assert set(inspect(engine).get_table_names()) == {*TABLES, *HISTORY_TABLES, "alembic_version"}
        assert [d.token_issued_at for d in list_devices(make_sessions(engine))] == [
            T0 + timedelta(minutes=i) for i in (1, 2, 3)]
    finally:
        engine.dispose()


def test_a_database_from_a_newer_hub_is_refused_in_one_line_and_left_alone(database_url) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(DatabaseError, match=r"at schema revision 0099, newer than this hub knows \(0003\)") as refused:
        make_engine(database_url)
    assert "\n" not in str(refused.value) and "***" not in str(refused.value).replace(":***@", "")
    check = bare_engine(database_url)
    with check.connect() as connection:
        assert migrations.current_revision(connection) == "0099"
    check.dispose()


MIGRATE_AT_ONCE = """
import sys, time
from hub.db import make_engine
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
make_engine(sys.argv[1]).dispose()
print("ok")
"""


@pytest.mark.slow
def test_hub_processes_starting_at_once_migrate_an_empty_database_once(database_url) -> None:
    import time

    start = f"{time.time() + 3.0:.3f}"  # every process is imported and waiting by then
    children = [subprocess.Popen([sys.executable, "-c", MIGRATE_AT_ONCE, database_url, start],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], [err[-2000:] for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == ["ok"] * 3
    engine = bare_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                migrations.HEAD]
        assert set(inspect(engine).get_table_names()) == {*TABLES, *HISTORY_TABLES, "alembic_version"}
    finally:
        engine.dispose()
