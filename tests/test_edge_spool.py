"""The device side of the ground-truth path without a hub: upload filter, row building and privacy, CSV
encoding (read back by ingest's reader), the SQLite spool (durability across kill -9, quota eviction
order and counts, byte-identical re-seal after reopen) and the recent-labelled store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edge.contracts.manifest import Manifest, ReferenceStats
from edge.ground_truth import UploadColumns, build_row, encode_csv, encode_rows
from edge.inference import Prediction
from edge.spool import RecentLabelled, Spool, SpoolEntry
from edge.upload_filter import Selection, UploadPolicy, sample_unit, select
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import make_manifest, tiny_onnx
from flows.ingest.normalise import normalise
from flows.ingest.reader import read_batch
from flows.params import load_params

COLUMNS = UploadColumns()


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    reference = {"x0": ReferenceStats((0.0,), (0.5, 0.5), 0.0), "x1": ReferenceStats((0.0,), (0.5, 0.5), 0.2)}
    return replace(make_manifest(tiny_onnx(), "v1"), decision_threshold=0.4, reference=reference)


def prediction(p1: float, event_id: int = 1, label: int | None = None, out_of_range: tuple[str, ...] = ()
               ) -> Prediction:
    decided = (1 if p1 >= 0.4 else 0) if label is None else label
    return Prediction(decided, {0: 1.0 - p1, 1: p1}, "v1", event_id, out_of_range)


# --- the upload filter -------------------------------------------------------------------------------

def test_every_labelled_mistake_is_selected_with_probability_one(manifest: Manifest) -> None:
    policy = UploadPolicy(random_rate=0.0, uncertain_margin=0.0, anomalies=False)
    for event_id in range(2000):
        p1 = (event_id % 100) / 100
        pred = prediction(p1, event_id)
        wrong = 1 - int(pred.label)
        assert select(policy, pred, wrong, "dev-1", manifest) == Selection("labelled", 1.0)
        assert select(policy, pred, pred.label, "dev-1", manifest) is None


def test_random_rate_is_met_over_20k_draws_and_is_reproducible(manifest: Manifest) -> None:
    rate = 0.05
    policy = UploadPolicy(random_rate=rate, uncertain_margin=0.05)
    chosen = [select(policy, prediction(0.95, e), 1, "press-7", manifest) for e in range(20_000)]
    picked = [c for c in chosen if c is not None]
    assert abs(len(picked) / 20_000 - rate) < 0.005
    assert {c.reason for c in picked} == {"random"} and {c.inclusion_probability for c in picked} == {rate}
    again = [select(policy, prediction(0.95, e), 1, "press-7", manifest) for e in range(20_000)]
    assert again == chosen  # a hash of (device, event): same answer after a restart
    other = [select(policy, prediction(0.95, e), 1, "press-8", manifest) is not None for e in range(20_000)]
    assert other != [c is not None for c in chosen]  # ... and independent per device
    draws = [sample_unit("d", e) for e in range(20_000)]
    assert min(draws) >= 0.0 and max(draws) < 1.0 and abs(float(np.mean(draws)) - 0.5) < 0.01


def test_reasons_and_precedence(manifest: Manifest) -> None:
    policy = UploadPolicy(uncertain_margin=0.1, random_rate=0.0)
    # uncertain: |p1 - 0.4| < 0.1 with a correct label
    assert select(policy, prediction(0.45), 1, "d", manifest) == Selection("uncertain", 1.0)
    assert select(policy, prediction(0.9), 1, "d", manifest) is None
    # anomaly beats uncertain; mistake beats anomaly
    odd = prediction(0.45, out_of_range=("x0",))
    assert select(policy, odd, 1, "d", manifest) == Selection("anomaly", 1.0)
    assert select(policy, odd, 0, "d", manifest) == Selection("labelled", 1.0)
    assert select(replace(policy, anomalies=False), odd, 1, "d", manifest) == Selection("uncertain", 1.0)
    # missing is an anomaly only where the reference says it is rare (x0: 0.0 missing; x1: 20 %)
    assert select(policy, prediction(0.9), 1, "d", manifest, [None, 1.0]) == Selection("anomaly", 1.0)
    assert select(policy, prediction(0.9), 1, "d", manifest, [1.0, float("nan")]) is None
    with pytest.raises(ValueError, match="label"):
        select(policy, prediction(0.9), 7, "d", manifest)


def test_multiclass_margin_is_top1_minus_top2(manifest: Manifest) -> None:
    three = replace(manifest, classes=(0, 1, 2), positive_class=None)
    policy = UploadPolicy(uncertain_margin=0.1, random_rate=0.0)
    close = Prediction(2, {0: 0.1, 1: 0.42, 2: 0.48}, "v1", 1)
    clear = Prediction(2, {0: 0.1, 1: 0.3, 2: 0.6}, "v1", 2)
    assert select(policy, close, 2, "d", three) == Selection("uncertain", 1.0)
    assert select(policy, clear, 2, "d", three) is None


def test_policy_refuses_bad_values() -> None:
    for bad in ({"random_rate": 1.5}, {"uncertain_margin": -0.1}, {"mode": "everything"}, {"local_only": ["x"]}):
        with pytest.raises(ValueError):
            UploadPolicy(**bad)  # type: ignore[arg-type]


# --- rows, privacy and CSV ---------------------------------------------------------------------------

def _row(manifest: Manifest, event_id: int, features: list[float | None], label: int = 1,
         context: dict | None = None, local_only: tuple[str, ...] = ()) -> dict:
    pred = prediction(0.7, event_id)
    return build_row(manifest, pred, features, label, datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "dev-1",
                     context or {}, Selection("random", 0.02), COLUMNS, local_only)


def test_local_only_fields_are_dropped_and_local_only_features_emptied(manifest: Manifest) -> None:
    row = _row(manifest, 5, [1.25, 3.5], context={"operator": "Zed Q. Secret", "line": "L2"},
               local_only=("operator", "x1"))
    assert "operator" not in row and row["line"] == "L2"
    assert "x1" in row and row["x1"] is None and row["x0"] == 1.25
    body = encode_rows([row])
    assert b"Zed Q. Secret" not in body and b"3.5" not in body
    with pytest.raises(ValueError, match="failure"):
        _row(manifest, 6, [1.0, 2.0], local_only=("failure",))
    with pytest.raises(ValueError, match="prediction"):
        _row(manifest, 6, [1.0, 2.0], context={"prediction": "x"})


def test_csv_is_deterministic_and_ingest_reads_it(manifest: Manifest) -> None:
    schema = load_params(REPO / "params.yaml").schema
    rows = [_row(manifest, i, [0.1 * i, None], context={"note": 'a "quoted",\nmulti-line note'}) for i in range(5)]
    body = encode_rows(rows)
    assert body == encode_rows([dict(r) for r in rows])  # same rows, same bytes
    assert body.startswith(b"x0,x1,failure,event_id,device_id,event_time,model_version,prediction,probabilities,")
    assert encode_csv(rows, ["x0", "missing"]).splitlines()[1] == b"0.0,"
    frame = read_batch(body, "csv", ["device_id"], schema.column_names)
    assert len(frame) == 5 and frame["note"].iloc[0] == 'a "quoted",\nmulti-line note'
    curated = normalise(frame.rename(columns={"x0": "air_temp_k"}), schema)
    assert curated["probabilities"].iloc[0] == pytest.approx([0.3, 0.7])
    assert str(curated["event_time"].dtype) == "datetime64[ns, UTC]"
    assert curated["inclusion_probability"].tolist() == [0.02] * 5


# --- the spool ---------------------------------------------------------------------------------------

def _size(entry: SpoolEntry) -> int:
    return len(json.dumps(dict(entry.row), separators=(",", ":")))


def _entry(reason: str, n: int, size: int = 120) -> SpoolEntry:
    """A spool entry whose stored JSON is exactly ``size`` bytes."""
    bare = _size(SpoolEntry(reason, {"event_id": n, "upload_reason": reason, "pad": ""}))
    return SpoolEntry(reason, {"event_id": n, "upload_reason": reason, "pad": "x" * (size - bare)})


def _event_ids(body: bytes) -> list[int]:
    import csv
    import io

    return [int(r["event_id"]) for r in csv.DictReader(io.StringIO(body.decode()))]


def test_quota_evicts_random_first_labelled_last_and_counts_survive_reopen(tmp_path: Path) -> None:
    entries = [_entry(r, i) for i, r in enumerate(["labelled", "random", "anomaly", "uncertain", "random"] * 4)]
    spool = Spool(tmp_path / "spool.db", quota_bytes=120 * 20)
    assert spool.put(entries) == []
    assert spool.backlog_rows() == 20 and spool.backlog_bytes() == 120 * 20
    evicted = spool.put([_entry("labelled", 100 + i) for i in range(12)])
    assert evicted == ["random"] * 8 + ["uncertain"] * 4  # lowest priority first
    evicted = spool.put([_entry("random", 200)])  # the newest random row goes before any anomaly
    assert evicted == ["random"]
    assert spool.put([_entry("labelled", 300 + i) for i in range(5)]) == ["anomaly"] * 4 + ["labelled"]
    batch = spool.seal(100, 1_000_000, encode_rows)
    assert batch is not None and batch.reasons == {"labelled": 20}
    ids = _event_ids(batch.body)
    assert ids[:4] == [5, 10, 15, 100]  # oldest labelled row 0 was the one evicted; oldest first otherwise
    assert spool.evictions() == {"anomaly": 4, "labelled": 1, "random": 9, "uncertain": 4}
    spool.close()
    reopened = Spool(tmp_path / "spool.db", quota_bytes=120 * 20)
    assert reopened.evictions() == {"anomaly": 4, "labelled": 1, "random": 9, "uncertain": 4}
    assert reopened.backlog_rows() == 20


def test_sealed_batches_are_evicted_only_when_nothing_else_is_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", quota_bytes=1 << 20)
    spool.put([_entry("random", i) for i in range(10)])
    batch = spool.seal(10, 1_000_000, encode_rows)
    assert batch is not None and batch.rows == 10 and len(batch.body) > 300
    spool.close()
    spool = Spool(tmp_path / "spool.db", quota_bytes=len(batch.body) + 4500)
    assert spool.put([_entry("labelled", 100 + i) for i in range(10)]) == []
    evicted = spool.put([_entry("labelled", 200 + i, size=2000) for i in range(3)])
    assert evicted == ["labelled"] * 11  # every pending row may go, oldest first; the sealed random rows stay
    assert spool.seal(10, 1_000_000, encode_rows) == batch
    spool.close()
    spool = Spool(tmp_path / "spool.db", quota_bytes=300)  # smaller than the sealed body alone
    evicted = spool.put([_entry("uncertain", 300)])
    assert evicted == ["uncertain", "labelled", "labelled"] + ["random"] * 10  # pending first, then sealed
    assert spool.evictions() == {"labelled": 13, "random": 10, "uncertain": 1}
    assert not spool.acknowledge(batch.key) and not spool.has_backlog() and spool.backlog_bytes() == 0


def test_sealed_batch_comes_back_byte_identical_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 1_000_000)
    spool.put([_entry(r, i) for i, r in enumerate(["random", "labelled", "uncertain"] * 10)])
    first = spool.seal(12, 1_000_000, encode_rows)
    assert first is not None and first.rows == 12 and first.reasons == {"labelled": 10, "uncertain": 2}
    spool.close()
    spool = Spool(path, 1_000_000)
    again = spool.seal(12, 1_000_000, lambda rows: b"must not be called")
    assert again is not None and again.body == first.body and again.key == first.key
    import hashlib

    assert hashlib.sha256(again.body).hexdigest() == again.key
    assert spool.acknowledge(first.key)
    second = spool.seal(100, 900, encode_rows)  # the byte limit cuts the batch
    assert second is not None and len(second.body) <= 900 and 0 < second.rows < 18
    assert spool.backlog_rows() == 18


def test_put_survives_kill_9(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"event_id": i, "upload_reason": "labelled"} for i in range(500)]))
    path = tmp_path / "spool.db"
    child = subprocess.Popen([sys.executable, "-m", "tests.edge_upload_child", "put-and-wait", str(path), str(rows)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "committed"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    spool = Spool(path, 1 << 30)
    assert spool.backlog_rows() == 500
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (path.stat().st_mode & 0o777) == 0o600


def test_summaries_are_sealed_batches_of_their_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1_000_000)
    key = spool.put_summary({"rows": 10, "accuracy": 0.9})
    assert spool.put_summary({"accuracy": 0.9, "rows": 10}) == key  # canonical JSON: same key
    batch = spool.seal(10, 1000, encode_rows)
    assert batch is not None and batch.kind == "summary" and batch.key == key and batch.rows == 0
    assert json.loads(batch.body) == {"rows": 10, "accuracy": 0.9}
    assert spool.acknowledge(key) and spool.seal(10, 1000, encode_rows) is None and not spool.has_backlog()


# --- recent labelled rows ----------------------------------------------------------------------------

def test_recent_labelled_keeps_the_newest_and_survives_reopen(tmp_path: Path) -> None:
    store = RecentLabelled(tmp_path / "recent.db", capacity=50)
    for i in range(80):
        store.add([float(i), None, 2.5], i % 2)
    assert store.count() == 50
    store.close()
    store = RecentLabelled(tmp_path / "recent.db", capacity=50)
    x, labels = store.rows(10)
    assert x.dtype == np.float32 and x.shape == (10, 3)
    assert x[:, 0].tolist() == [float(i) for i in range(70, 80)] and np.isnan(x[:, 1]).all()
    assert labels == [i % 2 for i in range(70, 80)]
    everything, _ = store.rows(1000)
    assert everything.shape == (50, 3) and everything[0, 0] == 30.0
