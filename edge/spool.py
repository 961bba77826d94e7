"""The durable upload spool: selected ground-truth rows and summaries wait here until the hub has them.

One SQLite file in WAL mode with ``synchronous=FULL``: ``put`` returns only after its transaction is
committed, so a row that ``put`` returned for survives a power cut or ``kill -9``. Tables:

- ``pending``: rows not yet in a batch (their JSON, reason, priority, size in bytes);
- ``sealed``: batches cut from pending rows, each stored with its exact body and key = sha256(body),
  until ``acknowledge(key)``; summaries (``put_summary``) go straight in as sealed batches;
- ``evictions``: rows dropped to respect the quota, counted per reason (survives restarts);
- ``labelled``: the newest ``labelled_capacity`` labelled event ids with their label and the answer
  ``/feedback`` gave (``LabelRecord``), so a repeated label is answered the same and never spooled twice.
  ``put(rows, record)`` stores a label's row and its record in ONE transaction (a crash keeps both or
  neither). ``remember(record)`` keeps the record of a label whose row was not selected in memory
  (``labelled`` answers from there at once) and writes it later, in a batch: with the next ``put``'s
  transaction, when ``RECORD_BATCH`` records wait, or at ``flush``/``close``; without an fsync. A crash
  or a power cut may forget those unwritten records: no row of them exists, so a label repeated after
  that counts as new and spools one row at most, never a second. (One SQLite transaction per label made
  ``edgeloop demo``'s ~160k labels about a third slower.) Older records are dropped beyond the bound.
  Not counted in the quota (about 150 bytes each).

Priorities (evicted first -> last): random 0, uncertain 1, anomaly 2, labelled 3, summary 4. Stored
bytes are the pending rows' JSON sizes plus the sealed bodies. When a ``put`` would exceed
``quota_bytes``, pending rows are evicted lowest priority first, oldest first within a priority (the
new rows included: a random row does not push out a labelled mistake). Sealed batches are evicted
(oldest first, each of their rows counted under its reason) only when no pending row is left.

Batching: ``seal`` first returns the oldest unacknowledged sealed batch again, byte for byte
identical, so a retry after a crash or a lost acknowledgement hits the hub's deduplication. Only
when nothing is sealed does it cut a new batch, in ONE transaction: highest priority first, oldest
first within a priority (labelled mistakes leave the device first; under a thin link low-priority
rows wait, and they are the ones the quota evicts), at most ``max_rows`` rows and ``max_bytes`` bytes
of body (a single larger row still goes alone).

``RecentLabelled`` keeps the newest ``capacity`` labelled rows (all features, local-only ones included) for
on-device shadow validation of a candidate model. It holds values that must never be uploaded, so keep it in
its own file, not in the spool's. Its file is written with ``synchronous=NORMAL`` (no fsync per label: that
fsync was most of what a label cost): a ``kill -9`` loses nothing, a power cut may lose the newest rows, and
the validation set is then a little older; it is a sample, not a record. Thread safe: one connection per
object, guarded by a lock. Leaves out encoding rows (the caller's ``encode``, e.g.
edge.ground_truth.encode_rows), sending (edge.uploader) and privacy (rows arrive already filtered). Standard
library and numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge.config import FeedbackConfig

__all__ = [
    "LabelRecord",
    "PRIORITIES",
    "RECORD_BATCH",
    "RecentLabelled",
    "SealedBatch",
    "Spool",
    "SpoolEntry",
    "SUMMARY",
]

SUMMARY = "summary"
RECORD_BATCH = 256  # label records kept in memory at most before they are written (see the module docstring)
PRIORITIES: dict[str, int] = {"random": 0, "uncertain": 1, "anomaly": 2, "labelled": 3, SUMMARY: 4}

Encode = Callable[[Sequence[Mapping[str, Any]]], bytes]

_SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_order ON pending (priority, id);
CREATE TABLE IF NOT EXISTS sealed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    rows INTEGER NOT NULL,
    reasons TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evictions (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS labelled (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL UNIQUE,
    label TEXT NOT NULL,
    result TEXT NOT NULL
);
"""

_RECENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS recent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    width INTEGER NOT NULL,
    features BLOB NOT NULL,
    label TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SpoolEntry:
    reason: str  # one of edge.contracts.record.UPLOAD_REASONS: sets the eviction priority
    row: Mapping[str, Any]  # JSON-serialisable row (edge.ground_truth.build_row), privacy already applied


@dataclass(frozen=True)
class LabelRecord:
    """A label given for one event id, and what ``/feedback`` answered."""

    event_id: int
    label: int | str
    result: Mapping[str, Any]


@dataclass(frozen=True)
class SealedBatch:
    key: str  # sha256 of body: the upload's Idempotency-Key
    body: bytes
    kind: Literal["rows", "summary"]
    rows: int  # data rows in the body (0 for a summary)
    reasons: Mapping[str, int]  # rows per upload reason


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # ground truth is private: owner-only from the start
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _priority(reason: str) -> int:
    try:
        return PRIORITIES[reason]
    except KeyError:
        raise ValueError(f"reason: {reason!r} is not one of {list(PRIORITIES)}") from None


class Spool:
    """Durable, quota-bounded queue of upload rows and summaries (see the module docstring)."""

    def __init__(self, path: Path, quota_bytes: int, labelled_capacity: int = 100_000) -> None:
        if quota_bytes < 1:
            raise ValueError(f"quota_bytes: expected a positive size, got {quota_bytes}")
        if labelled_capacity < 1:
            raise ValueError(f"labelled_capacity: expected a positive count, got {labelled_capacity}")
        self.path = path
        self.quota_bytes = quota_bytes
        self.labelled_capacity = labelled_capacity
        self._lock = threading.Lock()
        self._db = _connect(path)
        self._db.executescript(_SPOOL_SCHEMA)
        self._bytes = self._count_bytes()
        self._unsaved: dict[int, LabelRecord] = {}  # records not written yet, oldest first (guarded by _lock)
        self._newest_seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM labelled").fetchone()[0])

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r}, quota_bytes={self.quota_bytes})"

    def _count_bytes(self) -> int:
        pending = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM pending").fetchone()[0]
        sealed = self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM sealed").fetchone()[0]
        return int(pending) + int(sealed)

    # -- writing --

    def put(self, rows: Sequence[SpoolEntry], label: LabelRecord | None = None) -> list[str]:
        """Store ``rows`` (and the ``label`` record they come from) durably, in one transaction (returns
        after the commit); the reasons of rows evicted for the quota."""
        records = []
        for entry in rows:
            payload = json.dumps(dict(entry.row), allow_nan=False, separators=(",", ":"))
            records.append((_priority(entry.reason), entry.reason, len(payload.encode("utf-8")), payload))
        if not records:
            if label is not None:
                self.remember(label)
            return []
        with self._lock:
            try:
                with _transaction(self._db) as db:
                    db.executemany("INSERT INTO pending (priority, reason, size, payload) VALUES (?, ?, ?, ?)",
                                   records)
                    waiting = [*self._unsaved.values(), *([] if label is None else [label])]
                    if waiting:  # the records kept in memory ride along: no transaction of their own
                        self._write_records(db, waiting)
                    total = self._bytes + sum(r[2] for r in records)
                    evicted, total = self._evict(db, total)
                self._bytes = total
                self._unsaved.clear()
            except BaseException:
                self._bytes = self._count_bytes()
                raise
        return evicted

    def remember(self, label: LabelRecord) -> None:
        """Keep the record of a label that spooled no row: in memory at once, written later in a batch
        (see the module docstring). A record already kept for the event id is never replaced."""
        with self._lock:
            if label.event_id in self._unsaved:
                return
            self._unsaved[label.event_id] = label
            while len(self._unsaved) > self.labelled_capacity:  # only a capacity below RECORD_BATCH gets here
                del self._unsaved[next(iter(self._unsaved))]
            if len(self._unsaved) >= RECORD_BATCH:
                self._flush_records()

    def flush(self) -> None:
        """Write the label records kept in memory now (``close`` does it too)."""
        with self._lock:
            self._flush_records()

    def _flush_records(self) -> None:
        """Write the unsaved records in one transaction without an fsync (``synchronous=NORMAL`` for it: WAL
        keeps it consistent; a power cut may forget it, see the module docstring). Holds ``_lock``."""
        if not self._unsaved:
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with _transaction(self._db) as db:
                self._write_records(db, list(self._unsaved.values()))
            self._unsaved.clear()
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def _write_records(self, db: sqlite3.Connection, labels: Sequence[LabelRecord]) -> None:
        """Insert ``labels`` (an event id already recorded keeps its record) and drop those beyond the bound.
        In a transaction; ``_newest_seq`` is set once it commits (the caller's transaction may still fail,
        then the next write sets it again)."""
        db.executemany("INSERT INTO labelled (event_id, label, result) VALUES (?, ?, ?) "
                       "ON CONFLICT (event_id) DO NOTHING",
                       [(r.event_id, json.dumps(r.label), json.dumps(dict(r.result))) for r in labels])
        newest = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM labelled").fetchone()[0])
        db.execute("DELETE FROM labelled WHERE seq <= ?", (newest - self.labelled_capacity,))
        self._newest_seq = newest

    def labelled(self, event_id: int) -> LabelRecord | None:
        """The label recorded for ``event_id`` (None when none is, or it is older than the newest
        ``labelled_capacity``, those kept in memory included)."""
        with self._lock:
            kept = self._unsaved.get(event_id)
            if kept is not None:
                return kept
            oldest = self._newest_seq - (self.labelled_capacity - len(self._unsaved))
            found = self._db.execute("SELECT label, result FROM labelled WHERE event_id = ? AND seq > ?",
                                     (event_id, oldest)).fetchone()
        return None if found is None else LabelRecord(event_id, json.loads(found[0]), json.loads(found[1]))

    def put_summary(self, doc: Mapping[str, Any]) -> str:
        """Store a summary document (canonical JSON) as a sealed batch, durably; returns its key."""
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
        key = hashlib.sha256(body).hexdigest()
        with self._lock:
            try:
                with _transaction(self._db) as db:
                    cursor = db.execute("INSERT OR IGNORE INTO sealed (key, kind, body, rows, reasons) "
                                        "VALUES (?, 'summary', ?, 0, ?)", (key, body, json.dumps({SUMMARY: 1})))
                    total = self._bytes + (len(body) if cursor.rowcount else 0)
                    _, total = self._evict(db, total)
                self._bytes = total
            except BaseException:
                self._bytes = self._count_bytes()
                raise
        return key

    def _evict(self, db: sqlite3.Connection, total: int) -> tuple[list[str], int]:
        """Drop rows (then sealed batches) until ``total`` fits the quota; record counts. In a transaction."""
        evicted: list[str] = []
        if total <= self.quota_bytes:
            return evicted, total
        ids: list[tuple[int]] = []
        for row_id, reason, size in db.execute("SELECT id, reason, size FROM pending ORDER BY priority, id"):
            if total <= self.quota_bytes:
                break
            ids.append((row_id,))
            evicted.append(reason)
            total -= size
        db.executemany("DELETE FROM pending WHERE id = ?", ids)
        if total > self.quota_bytes:
            keys: list[tuple[str]] = []
            for key, reasons, size in db.execute("SELECT key, reasons, LENGTH(body) FROM sealed ORDER BY seq"):
                if total <= self.quota_bytes:
                    break
                keys.append((key,))
                for reason, count in json.loads(reasons).items():
                    evicted += [reason] * int(count)
                total -= size
            db.executemany("DELETE FROM sealed WHERE key = ?", keys)
        counts: dict[str, int] = {}
        for reason in evicted:
            counts[reason] = counts.get(reason, 0) + 1
        db.executemany("INSERT INTO evictions (reason, count) VALUES (?, ?) "
                       "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count", counts.items())
        return evicted, total

    # -- batching --

    def seal(self, max_rows: int, max_bytes: int, encode: Encode) -> SealedBatch | None:
        """The oldest unacknowledged batch again (identical bytes), else a new one cut from pending rows."""
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("max_rows and max_bytes must be positive")
        with self._lock:
            query = "SELECT key, body, kind, rows, reasons FROM sealed ORDER BY seq LIMIT 1"
            found = self._db.execute(query).fetchone()
            if found is not None:
                return _sealed(found)
            with _transaction(self._db) as db:
                chosen = self._choose(db, max_rows, max_bytes)
                if not chosen:
                    return None
                body = encode([json.loads(payload) for _, _, _, payload in chosen])
                while len(body) > max_bytes and len(chosen) > 1:
                    chosen = chosen[: len(chosen) // 2]
                    body = encode([json.loads(payload) for _, _, _, payload in chosen])
                reasons: dict[str, int] = {}
                for _, reason, _, _ in chosen:
                    reasons[reason] = reasons.get(reason, 0) + 1
                key = hashlib.sha256(body).hexdigest()
                db.execute("INSERT INTO sealed (key, kind, body, rows, reasons) VALUES (?, 'rows', ?, ?, ?)",
                           (key, body, len(chosen), json.dumps(reasons, sort_keys=True)))
                db.executemany("DELETE FROM pending WHERE id = ?", [(row_id,) for row_id, _, _, _ in chosen])
                self._bytes += len(body) - sum(size for _, _, size, _ in chosen)
            return SealedBatch(key, body, "rows", len(chosen), reasons)

    @staticmethod
    def _choose(db: sqlite3.Connection, max_rows: int, max_bytes: int) -> list[tuple[int, str, int, str]]:
        chosen: list[tuple[int, str, int, str]] = []
        used = 0
        query = "SELECT id, reason, size, payload FROM pending ORDER BY priority DESC, id LIMIT ?"
        for row_id, reason, size, payload in db.execute(query, (max_rows,)):
            if chosen and used + size > max_bytes:
                break
            chosen.append((row_id, reason, size, payload))
            used += size
        return chosen

    def acknowledge(self, key: str) -> bool:
        """Forget the sealed batch ``key`` (the hub has it, or it was quarantined); False if unknown."""
        with self._lock, _transaction(self._db) as db:
            size = db.execute("SELECT LENGTH(body) FROM sealed WHERE key = ?", (key,)).fetchone()
            if size is None:
                return False
            db.execute("DELETE FROM sealed WHERE key = ?", (key,))
            self._bytes -= int(size[0])
        return True

    # -- reading --

    def backlog_rows(self) -> int:
        """Rows waiting: pending plus those in unacknowledged sealed batches."""
        with self._lock:
            pending = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            sealed = self._db.execute("SELECT COALESCE(SUM(rows), 0) FROM sealed").fetchone()[0]
        return int(pending) + int(sealed)

    def backlog_batches(self) -> int:
        """Sealed batches (rows and summaries) waiting for an acknowledgement."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sealed").fetchone()[0])

    def backlog_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def has_backlog(self) -> bool:
        with self._lock:
            for table in ("sealed", "pending"):
                if self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    return True
        return False

    def evictions(self) -> dict[str, int]:
        """Rows evicted for the quota since the spool was created, per reason."""
        with self._lock:
            return {str(r): int(c) for r, c in self._db.execute("SELECT reason, count FROM evictions ORDER BY reason")}

    def close(self) -> None:
        """Write the label records kept in memory, then close the file."""
        with self._lock:
            try:
                self._flush_records()
            finally:
                self._db.close()


def _sealed(found: tuple[Any, ...]) -> SealedBatch:
    key, body, kind, rows, reasons = found
    return SealedBatch(str(key), bytes(body), "summary" if kind == "summary" else "rows", int(rows),
                       {str(k): int(v) for k, v in json.loads(reasons).items()})


class RecentLabelled:
    """The newest ``capacity`` labelled rows (features as float64, NaN for missing), durable."""

    def __init__(self, path: Path, capacity: int = FeedbackConfig.recent_labelled) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected a positive count, got {capacity}")
        self.path = path
        self.capacity = capacity
        self._lock = threading.Lock()
        self._db = _connect(path)
        self._db.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
        self._db.executescript(_RECENT_SCHEMA)

    def __repr__(self) -> str:
        return f"RecentLabelled({str(self.path)!r}, capacity={self.capacity})"

    def add(self, features: Sequence[float | None], label: int | str) -> None:
        values = np.array([np.nan if v is None else float(v) for v in features], dtype=np.float64)
        with self._lock, _transaction(self._db) as db:
            cursor = db.execute("INSERT INTO recent (width, features, label) VALUES (?, ?, ?)",
                                (len(values), values.tobytes(), json.dumps(label)))
            db.execute("DELETE FROM recent WHERE id <= ?", (int(cursor.lastrowid or 0) - self.capacity,))

    def rows(self, n: int) -> tuple[np.ndarray, list[int | str]]:
        """The newest ``n`` rows, oldest first, as float32 ``[rows, features]`` and their labels.

        Only rows as wide as the newest one are returned (a model with other features came before).
        """
        with self._lock:
            newest = self._db.execute("SELECT width FROM recent ORDER BY id DESC LIMIT 1").fetchone()
            if newest is None or n < 1:
                return np.zeros((0, 0 if newest is None else int(newest[0])), dtype=np.float32), []
            width = int(newest[0])
            found = self._db.execute("SELECT features, label FROM recent WHERE width = ? ORDER BY id DESC LIMIT ?",
                                     (width, n)).fetchall()
        found.reverse()
        matrix = np.frombuffer(b"".join(bytes(f) for f, _ in found), dtype=np.float64).reshape(len(found), width)
        return matrix.astype(np.float32), [json.loads(label) for _, label in found]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM recent").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
