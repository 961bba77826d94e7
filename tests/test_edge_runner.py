"""The edge runner end to end with the real parts: a hub on 127.0.0.1 serving a python-tuf repository and
taking uploads and heartbeats, the runner's own HTTP API, onnxruntime models trained on the simulator.

Covers: a fresh runner pulls canary, serves /predict and takes /feedback, heartbeats reach the hub; a new
release is activated while concurrent predictions all succeed; a worse candidate is refused on the device
when it holds labelled rows; a bad live model (activated before the device had labels) is rolled back by
the watch window and not re-installed; the hub going away for a while loses nothing and duplicates nothing;
`edge-runner status`, `rollback` and `predict` as real commands.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.runner import Runner
from edgeloop.testkit.hub import HubHandle, free_port, running_hub
from edgeloop.testkit.runner_world import ReleaseWorld, model_bytes, params, runner_config, site_data, wait_for
from hub.registry import add_device

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")



def rows_of(x: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


@pytest.fixture(scope="module")
def trained() -> None:
    for seed, flip in ((1, False), (2, False), (3, True)):
        model_bytes(seed, flip)  # train once per module, outside the timed waits


@pytest.fixture
def world(tmp_path: Path, trained: None) -> Iterator[tuple[ReleaseWorld, HubHandle, str]]:
    w = ReleaseWorld(tmp_path / "world")
    with running_hub(w.hub_root) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        yield w, hub, token


def start_runner(tmp_path: Path, hub_url: str, token: str, root: bytes, **sections: dict[str, Any]) -> Runner:
    config = load_config(runner_config(tmp_path / "device", hub_url, token, root, **sections), environ={})
    runner = Runner(config)
    runner.start()
    return runner


@contextmanager
def serving(world: tuple[ReleaseWorld, HubHandle, str], tmp_path: Path) -> Iterator[tuple[Runner, int]]:
    """A runner serving release 1 (published here) of the world's canary channel; stopped afterwards."""
    w, hub, token = world
    version = w.publish(1)
    runner = start_runner(tmp_path, hub.url, token, w.root_bytes)
    try:
        wait_for(lambda: runner.model_version == str(version), what="first activation")
        yield runner, version
    finally:
        runner.stop()


def heartbeat_state(hub: HubHandle) -> dict[str, Any]:
    fleet = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"}).json()
    device = next(d for d in fleet["devices"] if d["device_id"] == "press-1")
    return (device.get("last_heartbeat") or {}).get("state") or {}


def _ingest(root: Path) -> dict[str, Any]:
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.stages import ingest

    paths = Paths.at(root)
    return ingest.main(load_params(paths.params), paths)


def test_fresh_runner_pulls_canary_predicts_takes_feedback_and_reports(world, tmp_path: Path) -> None:
    w, hub, token = world
    with serving(world, tmp_path) as (runner, version):
        x, y = site_data(400, 11)
        api = httpx.Client(base_url=runner.api_url)
        answers = [api.post("/predict", json={"features": row}).json() for row in rows_of(x)]
        assert {a["model_version"] for a in answers} == {str(version)}
        assert len({a["event_id"] for a in answers}) == len(answers)
        wrong = 0
        for answer, label in zip(answers, y.tolist(), strict=True):
            fed = api.post("/feedback", json={"event_id": answer["event_id"], "label": label})
            assert fed.status_code == 200, fed.text
            wrong += answer["label"] != label
            if answer["label"] != label:
                assert fed.json()["upload_reason"] == "labelled"
        again = api.post("/feedback", json={"event_id": answers[0]["event_id"], "label": 1 - int(y[0])})
        assert again.status_code == 409 and "already labelled" in again.json()["error"]  # labels are final
        assert api.get("/health").json()["status"] in ("ok", "degraded")
        metrics = api.get("/metrics").text
        assert f'edgeloop_runner_predictions_total{{model_version="{version}"}} 400' in metrics
        # every labelled mistake reaches the hub, as CSV the ingest reader understands
        wait_for(lambda: runner.spool.backlog_rows() == 0, what="spool drained")
        landed = list((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
        uploaded = [r for f in landed for r in csv.DictReader(io.StringIO(f.read_text()))]
        assert sum(r["upload_reason"] == "labelled" for r in uploaded) == wrong > 0
        ingested = _ingest(hub.root)  # the cloud's own ingest stage takes the runner's CSV batches whole
        counts = (ingested["new_rows"], ingested["new_quarantined"], ingested["new_curated"])
        assert counts == (len(uploaded), 0, len(landed))
        state = wait_for(lambda: heartbeat_state(hub).get("model_version") == str(version) and heartbeat_state(hub),
                         what="heartbeat at the hub")
        assert state["channel"] == "canary" and state["health"] in ("ok", "degraded")
        activated = [e for e in state["events"] if e["kind"] == "activated"]
        assert [e["version"] for e in activated] == [str(version)]
    status = subprocess.run([EDGE_RUNNER, "status", "-c", str(tmp_path / "device" / "runner.toml"), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["current_version"] == str(version) and report["running"] is False
    assert report["spool_backlog"] == 0 and report["last_sync"]
    assert token not in status.stdout


def test_new_release_is_activated_without_dropping_concurrent_predictions(world, tmp_path: Path) -> None:
    w, hub, token = world
    with serving(world, tmp_path) as (runner, first):
        x, _ = site_data(400, 12)
        rows = rows_of(x)
        seen: list[list[str]] = [[] for _ in range(4)]
        failures: list[str] = []
        stop = threading.Event()

        def hammer(index: int) -> None:
            with httpx.Client(base_url=runner.api_url) as client:
                i = 0
                while not stop.is_set():
                    response = client.post("/predict", json={"features": rows[i % len(rows)]})
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        seen[index].append(response.json()["model_version"])
                    i += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: all(len(versions) >= 20 for versions in seen), what="every client answered before")
        second = w.publish(2)
        wait_for(lambda: runner.model_version == str(second), what="second activation")
        wait_for(lambda: all(versions.count(str(second)) >= 20 for versions in seen),
                 what="every client answered by the new release")
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        for versions in seen:  # each client saw the old model, then the new one, never back
            switch = versions.index(str(second))
            assert set(versions[:switch]) == {str(first)} and set(versions[switch:]) == {str(second)}
        assert runner.state.previous_version() == str(first)


def counted(runner: Runner, family: str, outcome: str) -> int:
    """The runner's counter ``edgeloop_runner_<family>{outcome=...}`` now (0 before its first count)."""
    found = re.search(rf'edgeloop_runner_{family}{{outcome="{outcome}"}} (\d+)', runner.metrics_text())
    return 0 if found is None else int(found.group(1))


def polls(runner: Runner, outcome: str) -> int:
    """Release polls with ``outcome`` so far."""
    return counted(runner, "update_polls_total", outcome)


def _feed(runner: Runner, x: np.ndarray, y: np.ndarray) -> list[bool]:
    correct = []
    for row, label in zip(rows_of(x), y.tolist(), strict=True):
        p = runner.predict_one(row)
        correct.append(runner.feedback(p.event_id, label)["correct"])
    return correct


def test_worse_candidate_is_refused_on_the_device_and_reported(world, tmp_path: Path) -> None:
    w, hub, token = world
    with serving(world, tmp_path) as (runner, good):
        x, y = site_data(300, 13)
        _feed(runner, x, y)  # 300 labelled rows >= min_shadow_rows: the device can judge
        bad = w.publish(3, flip=True)
        wait_for(lambda: str(bad) in runner.state.blocked_versions(), what="rejection")
        assert runner.model_version == str(good)
        state = wait_for(lambda: any(e["kind"] == "blocked" for e in heartbeat_state(hub).get("events", []))
                         and heartbeat_state(hub), what="rejection in a heartbeat")
        event = next(e for e in state["events"] if e["kind"] == "blocked")
        assert event["version"] == str(bad) and "f1_macro" in event["detail"]


def test_bad_live_model_is_rolled_back_by_the_watch_window(world, tmp_path: Path) -> None:
    w, hub, token = world
    with serving(world, tmp_path) as (runner, good):
        bad = w.publish(3, flip=True)  # no labelled rows yet: the cloud gate alone lets it in
        wait_for(lambda: runner.model_version == str(bad), what="bad activation")
        x, y = site_data(200, 14)
        _feed(runner, x, y)  # its accuracy on fresh labels is far below the floor
        wait_for(lambda: runner.model_version == str(good), what="automatic rollback")
        assert str(bad) in runner.state.blocked_versions()
        assert "automatic" in runner.state.blocked_versions()[str(bad)]
        blocked = polls(runner, "blocked")
        wait_for(lambda: polls(runner, "blocked") >= blocked + 2, what="two more polls of the bad version")
        assert runner.model_version == str(good)  # the channel still points at the bad version: not re-installed
        assert runner.predict_one(rows_of(x)[0]).model_version == str(good)
        newer = w.publish(2)  # a newer release is installed again
        wait_for(lambda: runner.model_version == str(newer), what="newer release")


def test_hub_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path, trained: None) -> None:
    w = ReleaseWorld(tmp_path / "world")
    port = free_port()
    with running_hub(w.hub_root, port=port) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        version = w.publish(1)
        runner = start_runner(tmp_path, hub.url, token, w.root_bytes, upload={"random_rate": 0.2})
        wait_for(lambda: runner.model_version == str(version), what="first activation")
    try:
        x, y = site_data(1500, 15)  # the hub is down from here on
        started = time.perf_counter()
        _feed(runner, x, y)
        assert time.perf_counter() - started < 60
        spooled = runner.spool.backlog_rows()
        assert spooled > 0
        assert runner.model_version == str(version)  # no network, no TUF: the model keeps serving
        wait_for(lambda: runner.uploader.counters["upload_failures"] >= 2, timeout=20, what="failed uploads")
        with running_hub(w.hub_root, port=port) as hub:
            wait_for(lambda: runner.spool.backlog_rows() == 0, timeout=60, what="spool drained after outage")
            landed = sorted((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
            ids = [r["event_id"] for f in landed for r in csv.DictReader(io.StringIO(f.read_text()))]
            assert len(ids) == len(set(ids)) == spooled
    finally:
        runner.stop()


def test_edge_runner_commands_rollback_predict_and_user_errors(world, tmp_path: Path) -> None:
    w, hub, token = world
    config = tmp_path / "device" / "runner.toml"
    with serving(world, tmp_path) as (runner, first):
        second = w.publish(2)
        wait_for(lambda: runner.model_version == str(second), what="second activation")
        twice = subprocess.run([EDGE_RUNNER, "run", "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert twice.returncode == 2 and "another edge-runner holds" in twice.stderr
        assert "Traceback" not in twice.stderr
        done = subprocess.run([EDGE_RUNNER, "rollback", "-c", str(config), "--reason", "operator says so"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"{second} -> {first}" in done.stdout
        assert runner.model_version == str(first)
        assert runner.state.blocked_versions()[str(second)].endswith("operator says so")
    x, _ = site_data(50, 16)
    header = ",".join(["event_id", *params().schema.feature_names])
    lines = [header] + [",".join([str(i + 1), *("" if np.isnan(v) else repr(float(v)) for v in row)])
                        for i, row in enumerate(x)]
    lines.insert(3, "99,not-a-number,1,2,3,4,5")
    out = subprocess.run([EDGE_RUNNER, "predict", "-c", str(config)], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1  # one bad row
    result = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(result) == 51
    assert result[2]["error"].startswith("line 4: ") and "expected a number" in result[2]["error"]
    assert all(r["model_version"] == str(first) for i, r in enumerate(result) if i != 2)
    assert [r["event_id"] for r in result[:2]] == ["1", "2"]
    assert "line 4" in out.stderr and "Traceback" not in out.stderr
    jsonl = "\n".join(json.dumps(dict(zip(header.split(",")[1:], row, strict=True))) for row in rows_of(x[:5]))
    out = subprocess.run([EDGE_RUNNER, "predict", "-c", str(config)], input=jsonl + "\n{oops\n",
                         capture_output=True, text=True, timeout=60)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(answers) == 6 and "error" in answers[-1] and answers[0]["model_version"] == str(first)
    bad = config.read_text().replace("[upload]", "[upload]\nrandom_rat = 0.1")
    (tmp_path / "device" / "bad.toml").write_text(bad)
    out = subprocess.run([EDGE_RUNNER, "status", "-c", str(tmp_path / "device" / "bad.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip() == (
        "edge-runner: upload.random_rat: unknown key (expected one of ['anomalies', 'backoff_initial_s', "
        "'backoff_max_s', 'batch_rows', 'daily_byte_budget', 'local_only', 'max_batch_bytes', 'mode', 'random_rate', "
        "'spool_quota_bytes', 'summary_interval_s', 'uncertain_margin'])")


def test_local_only_fields_never_leave_the_device(world, tmp_path: Path) -> None:
    w, hub, token = world
    version = w.publish(1)
    secret = "SECRET-ALICE-7f3a"
    runner = start_runner(tmp_path, hub.url, token, w.root_bytes,
                          upload={"random_rate": 1.0, "local_only": ["operator", "vibration_mm_s"]})
    try:
        wait_for(lambda: runner.model_version == str(version), what="first activation")
        x, y = site_data(120, 17)
        api = httpx.Client(base_url=runner.api_url)
        for row, label in zip(rows_of(x), y.tolist(), strict=True):
            answer = api.post("/predict", json={"features": row, "context": {"operator": secret, "lot": "A12"}}).json()
            assert api.post("/feedback", json={"event_id": answer["event_id"], "label": label}).status_code == 200
        for context, named in (({"failure": 1}, "context.failure"), ({"model_version": "x"}, "context.model_version"),
                               ({"operator": {"id": 1}}, "context.operator"), ({"bad name": 1}, "context.bad name")):
            refused = api.post("/predict", json={"features": rows_of(x)[0], "context": context})
            assert refused.status_code == 422 and refused.json()["error"].startswith(named), refused.text
        wait_for(lambda: runner.spool.backlog_rows() == 0, what="spool drained")
    finally:
        runner.stop()
    landed = list((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
    uploaded = [r for f in landed for r in csv.DictReader(io.StringIO(f.read_text()))]
    assert len(uploaded) == 120  # random_rate 1: every labelled row goes up
    assert {r["lot"] for r in uploaded} == {"A12"}  # other context fields do
    assert "operator" not in uploaded[0] and {r["vibration_mm_s"] for r in uploaded} == {""}
    everything = [p for p in hub.root.rglob("*") if p.is_file()] + [
        p for p in (tmp_path / "device" / "state").glob("spool.db*") if p.is_file()]
    for path in everything:
        assert secret.encode() not in path.read_bytes(), path


def _summaries(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_aggregates_mode_sends_a_summary_every_interval_and_no_rows(world, tmp_path: Path) -> None:
    w, hub, token = world
    version = w.publish(1)
    runner = start_runner(tmp_path, hub.url, token, w.root_bytes,
                          upload={"mode": "aggregates", "random_rate": 1.0, "summary_interval_s": 1},
                          hub={"heartbeat_interval_s": 3600})
    folder = hub.root / "data" / "hub" / "summaries" / "press-1"
    try:
        wait_for(lambda: runner.model_version == str(version), what="first activation")
        x, y = site_data(150, 18)
        correct = _feed(runner, x, y)
        # one heartbeat went at start and the next is an hour away: the summaries come on their own interval
        docs = wait_for(lambda: (found := _summaries(folder)) and sum(d["labelled_rows"] for d in found) == 150
                        and found, what="summaries of all 150 labelled rows at the hub")
        assert counted(runner, "heartbeats_total", "sent") == 1
    finally:
        runner.stop()
    assert sum(d["accuracy"] * d["labelled_rows"] for d in docs) == pytest.approx(sum(correct))
    assert sum(sum(row.values()) for d in docs for row in d["confusion"].values()) == 150
    torque = [d["features"]["torque_nm"] for d in docs]
    assert sum(t["count"] + t["missing"] for t in torque) == 150
    assert not (hub.root / "data" / "uploads" / "press-1").exists() or not any(
        (hub.root / "data" / "uploads" / "press-1").iterdir())


def test_heartbeats_carry_no_summary_and_a_clean_stop_spools_the_last_one(world, tmp_path: Path) -> None:
    from edge.ground_truth import encode_rows
    from edge.spool import Spool

    w, hub, token = world
    version = w.publish(1)
    runner = start_runner(tmp_path, hub.url, token, w.root_bytes,
                          upload={"mode": "aggregates", "random_rate": 1.0, "summary_interval_s": 3600},
                          hub={"heartbeat_interval_s": 1})
    try:
        wait_for(lambda: runner.model_version == str(version), what="first activation")
        x, y = site_data(60, 20)
        _feed(runner, x, y)
        beats = counted(runner, "heartbeats_total", "sent")
        wait_for(lambda: counted(runner, "heartbeats_total", "sent") >= beats + 2, what="two more heartbeats")
        assert runner.spool.backlog_batches() == 0 and runner.uploader.counters["summaries_uploaded"] == 0
        assert not (hub.root / "data" / "hub" / "summaries" / "press-1").exists()
    finally:
        runner.stop()
    spool = Spool(runner.config.state_dir / "spool.db", runner.config.upload.spool_quota_bytes)
    try:
        batch = spool.seal(100, 1 << 20, encode_rows)
    finally:
        spool.close()
    assert batch is not None and batch.kind == "summary" and json.loads(batch.body)["labelled_rows"] == 60


def test_kill_9_of_the_runner_while_uploading_loses_and_duplicates_nothing(world, tmp_path: Path) -> None:
    """``edge-runner run`` as a process: rows whose /feedback was answered are committed; kill -9 it at
    random moments while it uploads, restart it, and every committed row is at the hub exactly once."""
    import os
    import random
    import signal

    w, hub, token = world
    w.publish(1)
    config = runner_config(tmp_path / "device", hub.url, token, w.root_bytes,
                           upload={"random_rate": 1.0, "batch_rows": 15, "backoff_initial_s": 0.05})
    x, y = site_data(600, 19)
    rows, labels = rows_of(x), y.tolist()
    committed: set[str] = set()
    rng = random.Random(5)
    sent = 0
    for _ in range(6):
        port = free_port()
        env = dict(os.environ, EDGE_RUNNER__API__PORT=str(port))
        process = subprocess.Popen([EDGE_RUNNER, "run", "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

            def ready(client: httpx.Client = api) -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, what="runner up")
            deadline = time.monotonic() + rng.uniform(0.2, 0.8)
            while time.monotonic() < deadline and sent < len(rows):  # labels arrive while it uploads
                answer = api.post("/predict", json={"features": rows[sent]}).json()
                fed = api.post("/feedback", json={"event_id": answer["event_id"], "label": labels[sent]})
                assert fed.status_code == 200
                committed.add(str(answer["event_id"]))
                sent += 1
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    assert len(committed) > 100
    before = list((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
    assert before  # the killed runners were uploading
    runner = start_runner(tmp_path, hub.url, token, w.root_bytes)  # the last restart drains what is left
    try:
        wait_for(lambda: runner.spool.backlog_rows() == 0 and runner.spool.backlog_batches() == 0, timeout=60,
                 what="spool drained")
    finally:
        runner.stop()
    landed = sorted((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
    ids = [r["event_id"] for f in landed for r in csv.DictReader(io.StringIO(f.read_text()))]
    assert len(ids) == len(set(ids))  # no row twice, across all batches
    assert set(ids) == committed  # and none lost
