"""The ground-truth path end to end against a real hub (uvicorn on 127.0.0.1): real predictions from an
onnxruntime Predictor, the upload filter, the SQLite spool, the uploader and hub client; CSV batches
landed by the hub and read back by ingest's reader. Also: kill -9 of an uploading device process at
random moments (no row lost, none duplicated), local-only values never leave the device, the
aggregates-only mode (summaries, no rows), heartbeat events, and an unreachable hub (backoff, then
delivery exactly once)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from edge.contracts.manifest import Manifest, ReferenceStats, model_file
from edge.contracts.schema import DataSchema, FeatureSpec
from edge.ground_truth import UploadColumns, build_row, encode_rows
from edge.hub_client import HubClient, HubRefused, HubUnavailable
from edge.inference import Predictor
from edge.spool import RecentLabelled, Spool, SpoolEntry
from edge.upload_filter import UploadPolicy, select
from edge.uploader import Uploader
from edgeloop.testkit.hub import HubHandle, free_port, running_hub
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import make_manifest
from edgeloop.testkit.runner_world import wait_for
from edgeloop.testkit.synthetic import make_rows
from flows.ingest.normalise import normalise
from flows.ingest.reader import read_batch
from flows.params import load_params
from hub.registry import add_device
from tests.edge_upload_child import TOKEN_ENV

COLUMNS = UploadColumns()
START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Kit:
    schema: DataSchema
    manifest: Manifest
    predictor: Predictor


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flows.stages.export import to_onnx_bytes

    schema = load_params(REPO / "params.yaml").schema
    frame = make_rows(schema, "train", 3000, seed=1)
    x = frame[schema.feature_names].to_numpy(dtype=np.float64)
    y = frame[schema.label.name].to_numpy(dtype=np.int64)
    model = to_onnx_bytes(HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, y), x.shape[1], 17, {})
    features = tuple(FeatureSpec(f.name, f.dtype, f.min, f.max, f.unit, True) for f in schema.features)
    manifest = replace(make_manifest(model, "7"), features=features, label=schema.label.name, model=model_file(model),
                       reference={f.name: ReferenceStats((), (1.0,), 0.01) for f in schema.features})
    folder = tmp_path_factory.mktemp("release")
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.json").write_text(manifest.to_json())
    predictor = Predictor.from_folder(folder)
    return Kit(schema, predictor.manifest, predictor)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHandle]:
    with running_hub(tmp_path_factory.mktemp("hub")) as handle:
        yield handle


def register(hub: HubHandle, device: str) -> str:
    return add_device(hub.app.state.sessions, device, "canary")


def labelled_rows(kit: Kit, device: str, n: int, policy: UploadPolicy, seed: int = 0, first_id: int = 1,
                  context: dict[str, Any] | None = None, features: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Predict ``n`` simulated rows, then 'receive' their true labels and keep what the filter selects."""
    frame = make_rows(kit.schema, device, n, seed)
    x = frame[kit.schema.feature_names].to_numpy(dtype=np.float64) if features is None else features
    labels = frame[kit.schema.label.name].tolist()
    predictions = kit.predictor.predict_batch(x, list(range(first_id, first_id + n)))
    rows = []
    for i, (pred, label) in enumerate(zip(predictions, labels, strict=True)):
        values = [None if np.isnan(v) else float(v) for v in x[i]]
        chosen = select(policy, pred, int(label), device, kit.manifest, values)
        if chosen is not None:
            rows.append(build_row(kit.manifest, pred, values, int(label), START + timedelta(minutes=i), device,
                                  context or {}, chosen, COLUMNS, policy.local_only))
    return rows


def entries(rows: list[dict[str, Any]]) -> list[SpoolEntry]:
    return [SpoolEntry(str(row["upload_reason"]), row) for row in rows]


def drain(uploader: Uploader, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while uploader.spool.has_backlog():
        assert time.monotonic() < deadline, "spool did not drain"
        uploader.upload_once()


def landed_frames(hub: HubHandle, device: str, schema: DataSchema, curate: bool = True) -> list[pd.DataFrame]:
    folder = hub.settings.landing / device
    frames = []
    for path in sorted(folder.glob("*")):
        assert path.suffix == ".csv" and hashlib.sha256(path.read_bytes()).hexdigest() == path.stem
        raw = read_batch(path.read_bytes(), "csv", [schema.device_id], schema.column_names)
        frames.append(normalise(raw, schema) if curate else raw)
    return frames


def test_rows_go_up_as_csv_and_ingest_reads_them(tmp_path: Path, kit: Kit, hub: HubHandle) -> None:
    token = register(hub, "gt-1")
    rows = labelled_rows(kit, "gt-1", 1500, UploadPolicy(random_rate=0.05))
    reasons = {row["upload_reason"] for row in rows}
    assert {"labelled", "uncertain", "random"} <= reasons and len(rows) < 1500
    spool = Spool(tmp_path / "spool.db", 1 << 24)
    spool.put(entries(rows))
    client = HubClient(hub.url, "gt-1", token)
    uploader = Uploader(spool, client, tmp_path / "quarantine", batch_rows=100)
    drain(uploader)
    frames = landed_frames(hub, "gt-1", kit.schema)
    assert len(frames) == -(-len(rows) // 100)
    curated = pd.concat(frames, ignore_index=True)
    assert sorted(curated["event_id"]) == sorted(row["event_id"] for row in rows)
    assert list(curated.columns[: len(kit.schema.column_names)]) == kit.schema.column_names
    assert curated["failure"].dtype == np.int64 and str(curated["event_time"].dtype) == "datetime64[ns, UTC]"
    assert all(curated[f].dtype == np.float64 for f in kit.schema.feature_names)
    assert curated["probabilities"].map(len).eq(2).all()
    assert set(curated["model_version"].astype(str)) == {"7"}  # CSV: pandas reads "7" as a number
    random_rows = curated[curated["upload_reason"] == "random"]
    assert (random_rows["inclusion_probability"] == 0.05).all()
    assert (curated[curated["upload_reason"] != "random"]["inclusion_probability"] == 1.0).all()
    mistakes = curated[curated["prediction"].astype(int) != curated["failure"]]
    assert (mistakes["upload_reason"] == "labelled").all() and len(mistakes) > 0
    counters = uploader.counters
    assert counters["rows_uploaded"] == len(rows) and counters["batches_uploaded"] == len(frames)
    stored = sum(p.stat().st_size for p in (hub.settings.landing / "gt-1").iterdir())
    assert counters["batch_bytes"] == stored  # the hub keeps the CSV decoded...
    assert 0 < counters["bytes_uploaded"] < stored / 2  # ...that travelled gzip-compressed
    again = next((hub.settings.landing / "gt-1").iterdir()).read_bytes()
    result = client.upload(again, hashlib.sha256(again).hexdigest())
    assert result["deduplicated"] is True and result["location"].endswith(".csv")
    assert "token=<hidden>" in repr(client) and token not in repr(client)


def test_hub_refuses_a_csv_missing_a_schema_column_and_it_is_quarantined(tmp_path: Path, kit: Kit,
                                                                         hub: HubHandle) -> None:
    token = register(hub, "gt-bad")
    rows = labelled_rows(kit, "gt-bad", 200, UploadPolicy(random_rate=1.0))[:20]
    for row in rows:
        del row["torque_nm"]
    client = HubClient(hub.url, "gt-bad", token)
    body = encode_rows(rows)
    with pytest.raises(HubRefused) as refused:
        client.upload(body, hashlib.sha256(body).hexdigest())
    assert refused.value.status == 422 and "torque_nm" in refused.value.detail and token not in str(refused.value)
    spool = Spool(tmp_path / "spool.db", 1 << 24)
    spool.put(entries(rows))
    uploader = Uploader(spool, client, tmp_path / "quarantine")
    assert uploader.upload_once() == 20
    [kept] = (tmp_path / "quarantine").glob("*.csv")  # the spool orders rows by priority: another body
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == kept.stem
    assert sorted(kept.read_bytes().splitlines()[1:]) == sorted(body.splitlines()[1:])  # every row kept
    assert "torque_nm" in kept.with_suffix(".reason.txt").read_text()
    assert not spool.has_backlog() and uploader.counters["batches_quarantined"] == 1
    assert not (hub.settings.landing / "gt-bad").exists()
    spool.put(entries(labelled_rows(kit, "gt-bad", 50, UploadPolicy(random_rate=1.0))))
    wrong_token = HubClient(hub.url, "gt-bad", "elt_" + "0" * 16 + "_" + "A" * 43)
    with pytest.raises(HubUnavailable):  # a wrong token is not the batch's fault: it stays in the spool
        Uploader(spool, wrong_token, tmp_path / "quarantine").upload_once()
    assert spool.backlog_rows() == 50 and len(list((tmp_path / "quarantine").iterdir())) == 2


def _start_child(spool: Path, rows: Path, hub: HubHandle, device: str, token: str, quarantine: Path
                 ) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.edge_upload_child", "upload", str(spool), str(rows), hub.url, device,
               str(quarantine), "5"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, TOKEN_ENV: token})


@pytest.mark.slow  # a kill -9 loop
def test_kill_9_while_uploading_loses_and_duplicates_nothing(tmp_path: Path, kit: Kit, hub: HubHandle) -> None:
    device, total = "gt-crash", 1200
    token = register(hub, device)
    rows = labelled_rows(kit, device, total, UploadPolicy(random_rate=1.0))
    assert len(rows) == total
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    rng = random.Random(5)
    for run in range(8):  # SIGKILL at a random moment: first anywhere (imports, put, upload), then mid-stream
        child = _start_child(tmp_path / "spool.db", tmp_path / "rows.json", hub, device, token, tmp_path / "q")
        assert child.stdout is not None
        if run == 0:
            time.sleep(rng.uniform(0.1, 0.3))
        else:
            acks = rng.randint(0, 8)
            while acks >= 0:
                line = child.stdout.readline()
                assert line, "the child finished before 8 kills: give it more rows"
                acks -= line.strip() == "ack"
            time.sleep(rng.uniform(0.0, 0.012))  # about one batch round trip: anywhere inside the next one
        assert child.poll() is None, "the child finished before 8 kills: give it more rows"
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    acknowledged = Spool(tmp_path / "spool.db", 1 << 30)
    assert 0 < acknowledged.backlog_rows() < total  # kills landed mid-upload
    acknowledged.close()
    child = _start_child(tmp_path / "spool.db", tmp_path / "rows.json", hub, device, token, tmp_path / "q")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and "empty" in out
    ids = [int(e) for frame in landed_frames(hub, device, kit.schema) for e in frame["event_id"]]
    assert len(ids) == total and sorted(ids) == sorted(row["event_id"] for row in rows)  # each once
    from sqlalchemy import func
    from sqlalchemy import select as sql_select

    from hub.db import Upload

    with hub.app.state.sessions() as session:
        stored = session.scalar(sql_select(func.sum(Upload.rows)).where(Upload.device_id == device))
    assert stored == total
    assert not (tmp_path / "q").exists()


def test_local_only_values_never_reach_the_hub_or_the_spool(tmp_path: Path, kit: Kit, hub: HubHandle) -> None:
    token = register(hub, "gt-private")
    secret = f"operator-{uuid.uuid4().hex}"
    frame = make_rows(kit.schema, "gt-private", 300, 3)
    x = frame[kit.schema.feature_names].to_numpy(dtype=np.float64)
    column = kit.schema.feature_names.index("vibration_mm_s")
    x[:, column] = 10.0 + np.arange(300) * 0.000123456789 + 0.0000000001234  # long, unique decimal texts
    policy = UploadPolicy(random_rate=1.0, local_only=("operator", "vibration_mm_s"))
    rows = labelled_rows(kit, "gt-private", 300, policy, seed=3, context={"operator": secret, "line": "L4"},
                         features=x)
    secrets = [secret.encode()] + [repr(float(v)).encode() for v in x[:, column]]
    recent = RecentLabelled(tmp_path / "recent.db")  # the local store may keep them: it is never uploaded
    for i in range(300):
        recent.add([float(v) for v in x[i]], 0)
    spool = Spool(tmp_path / "spool.db", 1 << 24)
    spool.put(entries(rows))
    drain(Uploader(spool, HubClient(hub.url, "gt-private", token), tmp_path / "q", batch_rows=64))
    landed = list((hub.settings.landing / "gt-private").iterdir())
    assert len(landed) == 5
    frame_back = pd.concat(landed_frames(hub, "gt-private", kit.schema, curate=False))
    assert frame_back["vibration_mm_s"].isna().all() and "operator" not in frame_back
    assert set(frame_back["line"]) == {"L4"}
    scanned = [p for p in hub.root.rglob("*") if p.is_file()]
    scanned += [p for p in tmp_path.iterdir() if p.name.startswith("spool.db")]
    assert any(p.name == "hub.db" for p in scanned) and any(p.name == "spool.db-wal" for p in scanned)
    for path in scanned:
        data = path.read_bytes()
        leaked = [s for s in secrets if s in data]
        assert leaked == [], (path, leaked[:3])
    recent_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("recent.db"))
    assert np.float64(x[7, column]).tobytes() in recent_bytes  # the scan would have found a stored value


def test_aggregates_only_mode_sends_summaries_and_no_rows(tmp_path: Path, hub: HubHandle) -> None:
    token = register(hub, "gt-agg")
    policy = UploadPolicy(mode="aggregates")
    assert policy.mode == "aggregates"
    spool = Spool(tmp_path / "spool.db", 1 << 20)
    docs = [{"window_start": f"2026-03-01T0{h}:00:00+00:00", "rows": 1000 + h, "accuracy": 0.9,
             "reasons": {"labelled": h}} for h in range(3)]
    keys = [spool.put_summary(doc) for doc in docs]
    uploader = Uploader(spool, HubClient(hub.url, "gt-agg", token), tmp_path / "q")
    drain(uploader)
    folder = hub.settings.summaries / "gt-agg"
    assert sorted(p.stem for p in folder.iterdir()) == sorted(keys)
    for key, doc in zip(keys, docs, strict=True):
        assert json.loads((folder / f"{key}.json").read_bytes()) == doc
    assert not (hub.settings.landing / "gt-agg").exists()
    assert uploader.counters["summaries_uploaded"] == 3 and uploader.counters["rows_uploaded"] == 0
    body = (folder / f"{keys[0]}.json").read_bytes()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": keys[0]}
    url = f"{hub.url}/v1/devices/gt-agg/summaries"
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["deduplicated"] is True
    assert first.json() == httpx.post(url, content=body, headers=headers).json()  # stable stored_at
    assert httpx.post(url, content=b"[1, 2]", headers={**headers, "Idempotency-Key": hashlib.sha256(b"[1, 2]")
                      .hexdigest()}).status_code == 422
    assert httpx.post(url, content=body, headers={**headers, "Idempotency-Key": "0" * 64}).json()["reason"] == \
        "key_mismatch"
    assert httpx.post(url, content=body, headers={**headers, "Content-Type": "text/csv"}).status_code == 415
    other = register(hub, "gt-agg-2")
    assert httpx.post(url, content=body, headers={**headers, "Authorization": f"Bearer {other}"}).status_code == 403


def test_heartbeat_carries_model_events_and_evictions(hub: HubHandle) -> None:
    token = register(hub, "gt-beat")
    client = HubClient(hub.url, "gt-beat", token)
    state = {"model_version": "8", "previous_version": "7", "channel": "canary", "health": "ok",
             "clock": "2026-03-01T00:00:00+00:00", "evictions": {"random": 3},
             "events": [{"kind": "rolled_back", "version": "9", "at": "2026-03-01T00:00:00Z",
                         "detail": "accuracy 0.61 below floor 0.8"}]}
    answer = client.heartbeat(state)
    assert answer["state"]["events"][0]["kind"] == "rolled_back" and answer["state"]["evictions"] == {"random": 3}
    assert answer["state"]["previous_version"] == "7"
    for bad in ({"events": [{"kind": "Rolled-Back", "at": "2026-03-01T00:00:00Z"}]},
                {"events": [{"kind": "x", "at": "2026-03-01T00:00:00"}]},  # naive time
                {"events": [{"kind": "x", "at": "2026-03-01T00:00:00Z"}] * 65},
                {"evictions": {"everything": 1}}):
        with pytest.raises(HubRefused) as refused:
            client.heartbeat({**state, **bad})
        assert refused.value.status == 422


def test_a_heartbeat_body_stays_within_the_wire_limits_whatever_the_report(hub: HubHandle) -> None:
    from edge.contracts.wire import HEARTBEAT_EVENTS_MAX, HEARTBEAT_MAP_MAX, MAX_JSON_INT
    from edge.heartbeat import heartbeat_body

    token = register(hub, "gt-limits")
    drift = {f"sensor_{i}": 0.01 * i for i in range(HEARTBEAT_MAP_MAX + 40)} | {"bad name/with slash": 0.5}
    report = {"model_version": "8", "previous_version": None, "channel": "canary", "health": "ok", "drift": drift,
              "rolling_accuracy": 0.9, "spool_backlog": 0, "evictions": {"random": 2},
              "counters": {"predictions": MAX_JSON_INT + 10, "évictions": 3, "feedback": 7}}
    events = [{"event": "activated", "version": "8", "at": "2026-03-01T00:00:00Z", "detail": "x" * 900, "seq": i}
              for i in range(HEARTBEAT_EVENTS_MAX + 30)]
    body = heartbeat_body(report, events)
    assert len(body["drift"]) == HEARTBEAT_MAP_MAX and "bad name/with slash" not in body["drift"]
    assert body["counters"] == {"predictions": MAX_JSON_INT, "feedback": 7}
    assert len(body["events"]) == HEARTBEAT_EVENTS_MAX  # the newest
    answer = HubClient(hub.url, "gt-limits", token).heartbeat(body)  # the hub takes it whole
    assert len(answer["state"]["events"]) == HEARTBEAT_EVENTS_MAX and len(answer["state"]["drift"]) == HEARTBEAT_MAP_MAX


def test_unreachable_hub_backs_off_then_every_row_arrives_once(tmp_path: Path, kit: Kit) -> None:
    port = free_port()
    rows = labelled_rows(kit, "gt-late", 400, UploadPolicy(random_rate=0.3), seed=9)
    spool = Spool(tmp_path / "spool.db", 1 << 24)
    spool.put(entries(rows))
    unknown_token = "elt_" + "0" * 16 + "_" + "A" * 43  # the hub is not there yet, then it answers 401
    client = HubClient(f"http://127.0.0.1:{port}", "gt-late", unknown_token, timeout_s=2)
    uploader = Uploader(spool, client, tmp_path / "q", batch_rows=50, backoff_initial_s=0.02, backoff_max_s=0.3,
                        rng=random.Random(3), idle_s=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: len(uploader.recent_waits) >= 8, timeout=30, what="eight backoff waits")
    waits = list(uploader.recent_waits)
    assert len(waits) >= 8 and uploader.counters["upload_failures"] >= len(waits)
    ceilings = [min(0.3, 0.02 * 2**i) for i in range(len(waits))]
    assert all(0.0 <= w <= c for w, c in zip(waits, ceilings, strict=True))  # full jitter under a growing cap
    assert max(waits[4:]) > 0.02 * 2 and len(set(waits)) == len(waits)
    assert spool.backlog_rows() == len(rows) and uploader.counters["rows_uploaded"] == 0
    with running_hub(tmp_path / "hub", port) as hub:
        token = register(hub, "gt-late")
        uploader.client = HubClient(hub.url, "gt-late", token)  # the device gets its real token (was: 401s)
        wait_for(lambda: not spool.has_backlog(), timeout=30, what="every row at the hub")
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        ids = [int(e) for frame in landed_frames(hub, "gt-late", kit.schema) for e in frame["event_id"]]
    assert sorted(ids) == sorted(row["event_id"] for row in rows)
    assert uploader.counters["rows_uploaded"] == len(rows)
