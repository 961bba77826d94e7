"""The hub's data access (hub.store, hub.db, hub.registry) and its intake (hub.intake) on real SQLite
files and a real PostgreSQL (pgserver, started by the suite: the ``postgresql`` cases are in the slow
lane), and on real folders, without HTTP, on a manual clock. Every test that touches the database runs
on both.

Covers: devices (insert, re-key, list with upload counts, revoke, token lookup) and the registry's
rules; upload rows recorded once, racing included; the latest heartbeat replacing the one before; the
fleet query; summary files stamped with the clock and written once; the batch landing zone; the
estimates file cache; the admin token file; safe lookup of release files; the database probe; and the
intake answering a retry with the first success, healing a lost file, with times from the clock.
What several hub processes rely on, with no process-wide lock on PostgreSQL: racing first heartbeats
and an older heartbeat arriving late, racing claims of one enrollment code, racing adds of one device,
a revocation seen at once through another engine (another process's connection pool), racing creators
of the admin token file; timestamps keep microseconds and come back in UTC; re-keying keeps the first
registration time (``token_issued_at`` moves).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from edge.contracts.schema import parse_schema
from edgeloop.testkit.postgres import shared_postgres
from edgeloop.testkit.project import repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from hub import tokens
from hub.checks.refusal import Refused
from hub.clock import ManualClock
from hub.db import Heartbeat, Upload, make_engine, make_sessions, reachable, write_lock
from hub.intake import Intake
from hub.registry import RegistryError, add_device, list_devices, revoke_device
from hub.store import devices
from hub.store.admin_token import load_or_create_admin_token
from hub.store.batches import LocalStorage
from hub.store.estimates import load_estimates
from hub.store.fleet import read_fleet_rows
from hub.store.heartbeats import record_heartbeat
from hub.store.release_files import MAX_SEGMENTS, CachedFile, FileCache, locate
from hub.store.summaries import find_summary, put_summary
from hub.store.uploads import UploadRecord, find_upload, record_upload

START = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'hub.db'}"
    return shared_postgres().fresh_database("store")


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_sessions(engine)


def upload(device: str, n: int, at: datetime, size: int = 100) -> UploadRecord:
    return UploadRecord(device, f"{n:064x}", f"uploads/{device}/{n:064x}.csv", size, 10, at)


# --- devices and the registry ----------------------------------------------------------------------

def test_registry_adds_lists_and_revokes_with_the_clocks_times(sessions, engine, clock) -> None:
    token = add_device(sessions, "press-01", "canary", clock=clock)
    token_id, secret = tokens.parse(token)
    found = devices.credentials(engine, token_id)
    assert found is not None and (found.device_id, found.channel, found.revoked) == ("press-01", "canary", False)
    assert tokens.matches(secret, found.token_salt, found.token_digest)
    assert devices.credentials(engine, "0" * 16) is None
    record_upload(engine, threading.Lock(), upload("press-01", 1, START))
    clock.advance(60)
    add_device(sessions, "press-02", clock=clock)
    listed = {d.device_id: d for d in list_devices(sessions)}
    assert listed["press-01"].created_at == START and listed["press-01"].uploads == 1
    assert listed["press-02"].created_at == START + timedelta(seconds=60) and listed["press-02"].channel == "stable"
    clock.advance(5)
    assert revoke_device(sessions, "press-01", clock=clock) is True
    assert revoke_device(sessions, "press-01", clock=clock) is False
    gone = {d.device_id: d for d in list_devices(sessions)}["press-01"]
    assert gone.revoked_at == START + timedelta(seconds=65) and gone.status == "revoked"
    assert devices.credentials(engine, token_id).revoked is True


def test_registry_rules(sessions, engine, clock) -> None:
    first = add_device(sessions, "press-01", "canary", clock=clock)
    with pytest.raises(RegistryError, match="already exists"):
        add_device(sessions, "press-01", "canary", clock=clock)
    for bad in ("../x", ".hidden", "a" * 65, ""):
        with pytest.raises(RegistryError, match="invalid device name"):
            add_device(sessions, bad, clock=clock)
    with pytest.raises(RegistryError, match="does not exist"):
        add_device(sessions, "press-02", "beta", clock=clock)
    assert add_device(sessions, "press-02", "beta", channels={"beta"}, clock=clock).startswith("elt_")
    with pytest.raises(RegistryError, match="no device named"):
        revoke_device(sessions, "nobody", clock=clock)
    revoke_device(sessions, "press-01", clock=clock)
    second = add_device(sessions, "press-01", "stable", clock=clock)  # re-keyed: the old token stops working
    assert devices.credentials(engine, tokens.parse(first)[0]) is None
    again = devices.credentials(engine, tokens.parse(second)[0])
    assert again is not None and (again.channel, again.revoked) == ("stable", False)


# --- uploads, heartbeats, fleet --------------------------------------------------------------------

def test_an_upload_is_recorded_once_and_the_first_record_wins(sessions, engine, clock) -> None:
    add_device(sessions, "press-01", clock=clock)  # PostgreSQL enforces the foreign key
    lock = threading.Lock()
    first = upload("press-01", 7, clock.now())
    assert record_upload(engine, lock, first) == (first, True)
    later = upload("press-01", 7, clock.advance(30), size=999)
    assert record_upload(engine, lock, later) == (first, False)
    assert find_upload(engine, "press-01", first.batch_id) == first
    assert find_upload(engine, "press-02", first.batch_id) is None


def test_racing_records_of_one_batch_store_one_row(sessions, engine, clock) -> None:
    add_device(sessions, "press-01", clock=clock)
    barrier, results = threading.Barrier(8), []
    lock = write_lock(engine)  # none on PostgreSQL: the database alone decides

    def race(n: int) -> None:
        barrier.wait()
        results.append(record_upload(engine, lock, upload("press-01", 1, START + timedelta(seconds=n))))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({record for record, _ in results}) == 1
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Upload)) == 1


def test_the_latest_heartbeat_replaces_the_one_before(sessions, clock) -> None:
    add_device(sessions, "press-01", clock=clock)
    lock = threading.Lock()
    record_heartbeat(sessions, lock, "press-01", {"health": "ok"}, clock.now())
    record_heartbeat(sessions, lock, "press-01", {"health": "error"}, clock.advance(10))
    with sessions() as session:
        rows = session.scalars(select(Heartbeat)).all()
    assert [(r.state, r.received_at.replace(tzinfo=UTC)) for r in rows] == [({"health": "error"}, clock.now())]


def test_the_fleet_query_joins_devices_heartbeats_and_upload_totals(sessions, engine, clock) -> None:
    for name in ("b-dev", "a-dev", "c-dev"):
        add_device(sessions, name, clock=clock)
    revoke_device(sessions, "c-dev", clock=clock)
    record_heartbeat(sessions, threading.Lock(), "b-dev", {"model_version": "3"}, clock.advance(1))
    for n, size in ((1, 100), (2, 250)):
        record_upload(engine, threading.Lock(), upload("b-dev", n, clock.now(), size))
    rows = read_fleet_rows(sessions)
    assert [r.device_id for r in rows] == ["a-dev", "b-dev", "c-dev"]
    a, b, c = rows
    assert (a.received_at, a.state, a.uploads, a.upload_bytes, a.revoked) == (None, None, 0, 0, False)
    assert b.received_at == clock.now() and b.received_at.tzinfo is not None and b.state == {"model_version": "3"}
    assert (b.uploads, b.upload_bytes) == (2, 350) and c.revoked is True


def test_the_database_probe(engine, tmp_path) -> None:
    assert reachable(engine) is True
    missing = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'x.db'}")
    assert reachable(missing) is False


# --- what several hub processes rely on ------------------------------------------------------------

def race(n: int, work) -> list:
    """``work(i)`` in ``n`` threads released at once; their results (or exceptions), in thread order."""
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each racer got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_first_heartbeats_make_one_row_and_a_late_older_one_changes_nothing(sessions, engine, clock) -> None:
    add_device(sessions, "press-01", clock=clock)
    lock = write_lock(engine)
    results = race(8, lambda i: record_heartbeat(sessions, lock, "press-01", {"n": i}, START + timedelta(seconds=i)))
    assert results == [None] * 8
    with sessions() as session:
        rows = session.scalars(select(Heartbeat)).all()
    assert [(r.state, r.received_at.astimezone(UTC)) for r in rows] == [({"n": 7}, START + timedelta(seconds=7))]
    record_heartbeat(sessions, lock, "press-01", {"n": "late"}, START + timedelta(seconds=3))  # older: ignored
    record_heartbeat(sessions, lock, "press-01", {"n": "new"}, START + timedelta(seconds=9))
    with sessions() as session:
        assert [r.state for r in session.scalars(select(Heartbeat))] == [{"n": "new"}]


def test_racing_claims_of_one_enrollment_code_use_it_once(sessions, engine, clock) -> None:
    from hub.registry import issue_enrollment_code
    from hub.store.enrollment_codes import claim_code, find_code

    add_device(sessions, "press-01", clock=clock)
    code_id = tokens.parse_code(issue_enrollment_code(sessions, "press-01", 600, clock=clock))[0]

    def claim(_: int) -> bool:
        with engine.begin() as connection:
            return claim_code(connection, code_id, clock.now())

    assert sorted(race(6, claim)) == [False] * 5 + [True]
    assert find_code(engine, code_id).used is True


def test_racing_adds_of_one_new_device_issue_one_token(sessions, engine, clock) -> None:
    results = race(4, lambda i: add_device(sessions, "press-09", clock=clock))
    issued = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, RegistryError)]
    assert len(issued) == 1 and len(refused) == 3, results
    found = devices.credentials(engine, tokens.parse(issued[0])[0])
    assert found is not None and found.device_id == "press-09" and not found.revoked


def test_rekeying_keeps_the_first_registration_and_moves_the_token_time(sessions, clock) -> None:
    add_device(sessions, "press-01", clock=clock)
    clock.advance(3600)
    revoke_device(sessions, "press-01", clock=clock)
    rekeyed_at = clock.advance(60)
    add_device(sessions, "press-01", clock=clock)
    (info,) = list_devices(sessions)
    assert (info.created_at, info.token_issued_at, info.revoked_at) == (START, rekeyed_at, None)


def test_times_keep_microseconds_and_come_back_in_utc(sessions, engine, clock) -> None:
    add_device(sessions, "press-01", clock=clock)
    local = datetime(2026, 3, 1, 14, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2)))  # 12:00:00.654321 UTC
    record_upload(engine, write_lock(engine), upload("press-01", 3, local))
    found = find_upload(engine, "press-01", f"{3:064x}")
    assert found.stored_at == local and found.stored_at.tzinfo == UTC and found.stored_at.microsecond == 654321


def test_a_revocation_counts_at_once_through_another_engine(sessions, engine, database_url, clock) -> None:
    from hub.store.certificates import CertificateLookup, IssuedCertificate, insert_certificate

    add_device(sessions, "press-01", clock=clock)
    issued = IssuedCertificate("press-01", "ab" * 32, "1f", START, START + timedelta(days=1))
    with engine.begin() as connection:
        insert_certificate(connection, issued, START)
    lookup = CertificateLookup(engine)  # this "process" asks on every request (and caches on SQLite)
    other = make_engine(database_url)  # another process's pool on the same database
    try:
        for _ in range(3):
            answer = lookup(issued.fingerprint)
            assert answer is not None and not answer.revoked and answer.device_id == "press-01"
        assert revoke_device(make_sessions(other), "press-01", clock=clock) is True
        assert lookup(issued.fingerprint).revoked is True
        token = add_device(make_sessions(other), "press-02", clock=clock)
        assert devices.credentials(engine, tokens.parse(token)[0]) is not None
        revoke_device(make_sessions(other), "press-02", clock=clock)
        assert devices.credentials(engine, tokens.parse(token)[0]).revoked is True
    finally:
        lookup.close()
        other.dispose()


def test_racing_creators_of_the_admin_token_file_all_get_the_one_token(tmp_path) -> None:
    path = tmp_path / "keys" / "hub-admin.token"
    results = race(8, lambda i: load_or_create_admin_token(path))
    assert len({token for token, _ in results}) == 1 and sum(created for _, created in results) == 1
    assert path.read_text().strip() == results[0][0] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left behind


# --- files -----------------------------------------------------------------------------------------

def test_a_summary_is_stamped_by_the_clock_and_written_once(tmp_path, clock) -> None:
    folder = tmp_path / "summaries"
    body = b'{"rows": 3}'
    key = hashlib.sha256(body).hexdigest()
    assert find_summary(folder, "press-01", key) is None
    stored, created = put_summary(folder, "press-01", key, body, clock.now())
    assert created and stored.stored_at == START and stored.bytes == len(body)
    assert stored.location == f"summaries/press-01/{key}.json"
    path = folder / "press-01" / f"{key}.json"
    assert path.read_bytes() == body and stat.S_IMODE(path.stat().st_mode) == 0o444
    again, created = put_summary(folder, "press-01", key, b'{"other": 1}', clock.advance(3600))
    assert not created and again == stored and path.read_bytes() == body
    assert find_summary(folder, "press-01", key) == stored
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left behind
    for device, bad_key in (("../x", key), ("press-01", "../" + key[3:]), ("press-01", key.upper())):
        with pytest.raises(ValueError):
            put_summary(folder, device, bad_key, body, clock.now())


def test_batches_land_content_addressed(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "uploads")
    body = b"a,b\n1,2\n"
    key = hashlib.sha256(body).hexdigest()
    assert not storage.exists("press-01", key, "csv")
    assert storage.put("press-01", key, body, "csv") == f"uploads/press-01/{key}.csv"
    assert storage.put("press-01", key, body, "csv") == f"uploads/press-01/{key}.csv"
    assert storage.exists("press-01", key, "csv") and not storage.exists("press-01", key, "parquet")
    assert (tmp_path / "uploads" / "press-01" / f"{key}.csv").read_bytes() == body
    with pytest.raises(ValueError):
        storage.exists("..", key, "csv")


def test_the_estimates_file_is_read_again_only_when_it_changes(tmp_path) -> None:
    path = tmp_path / "estimates.json"
    assert load_estimates(path) is None
    path.write_text("{broken")
    assert load_estimates(path) is None
    path.write_text("[1]")
    assert load_estimates(path) is None
    path.write_text(json.dumps({"rows": 5}))
    assert load_estimates(path) == {"rows": 5}
    path.write_text(json.dumps({"rows": 50}))
    os.utime(path, ns=(1, 1))
    assert load_estimates(path) == {"rows": 50}


def test_the_admin_token_file_is_created_once_and_private(tmp_path) -> None:
    path = tmp_path / "keys" / "hub-admin.token"
    token, created = load_or_create_admin_token(path)
    assert created and len(token) > 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_admin_token(path) == (token, False)


def test_release_files_are_found_only_inside_the_folder(tmp_path) -> None:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "1.root.json").write_text("{}")
    (root / ".hidden").write_text("x")
    (tmp_path / "outside.json").write_text("{}")
    (root / "link.json").symlink_to(tmp_path / "outside.json")
    (root / "linked").symlink_to(tmp_path)
    found = locate(str(root), "sub/1.root.json")
    assert found is not None and found[0] == f"{root}/sub/1.root.json"
    for bad in ("../outside.json", ".hidden", "link.json", "linked/outside.json", "sub", "sub/", "", "sub//1.root.json",
                "/".join(["sub"] * (MAX_SEGMENTS + 1)), "missing.json"):
        assert locate(str(root), bad) is None, bad


def test_the_release_file_cache_stays_within_its_bound() -> None:
    cache = FileCache(total_bytes=10)
    cache.put("a", CachedFile((1, 6, 0), '"a"', b"x" * 6))
    cache.put("b", CachedFile((2, 6, 0), '"b"', b"y" * 6))  # evicts a
    assert cache.get("a", (1, 6, 0)) is None and cache.get("b", (2, 6, 0)) is not None
    assert cache.get("b", (2, 6, 1)) is None  # the file changed


# --- intake ----------------------------------------------------------------------------------------

@pytest.fixture
def intake(tmp_path, engine, clock) -> Intake:
    schema = parse_schema(repo_params_raw()["schema"])
    return Intake(engine, threading.Lock(), LocalStorage(tmp_path / "uploads"), schema, tmp_path / "summaries", clock)


def test_intake_stores_a_batch_once_with_the_clocks_time(intake, sessions, clock, tmp_path) -> None:
    add_device(sessions, "press-01", clock=clock)
    buffer = io.StringIO()
    make_rows(intake.schema, "press-01", 20, 4).to_csv(buffer, index=False)
    body = buffer.getvalue().encode()
    key = hashlib.sha256(body).hexdigest()
    first, created = intake.batch("press-01", key, body, "csv")
    assert created and first.stored_at == START.isoformat() and first.rows == 20 and not first.deduplicated
    clock.advance(90)
    retry, created = intake.batch("press-01", key, body, "csv")
    assert not created and retry == first.model_copy(update={"deduplicated": True})
    landed = tmp_path / "uploads" / "press-01" / f"{key}.csv"
    landed.chmod(0o644)
    landed.unlink()  # lost after its row was recorded: the next retry heals it without a second row
    assert intake.batch("press-01", key, body, "csv")[0].stored_at == START.isoformat()
    assert landed.read_bytes() == body
    with pytest.raises(Refused) as mismatch:
        intake.batch("press-01", hashlib.sha256(b"other").hexdigest(), body, "csv")
    assert mismatch.value.reason == "key_mismatch"
    with pytest.raises(Refused) as garbage:
        intake.batch("press-01", hashlib.sha256(b"x,y\n").hexdigest(), b"x,y\n", "csv")
    assert garbage.value.reason == "schema"


def test_intake_stores_a_summary_once_with_the_clocks_time(intake, clock) -> None:
    body = b'{"accuracy": 0.9}'
    key = hashlib.sha256(body).hexdigest()
    first, created = intake.summary("press-01", key, body)
    assert created and first.stored_at == START.isoformat() and first.summary_id == key
    clock.advance(5)
    retry, created = intake.summary("press-01", key, body)
    assert not created and retry == first.model_copy(update={"deduplicated": True})
    for bad_body in (b"[1]", b""):
        with pytest.raises(Refused):
            intake.summary("press-01", hashlib.sha256(bad_body).hexdigest(), bad_body)
