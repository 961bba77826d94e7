"""A repeated label is answered the same and never becomes a second row (issue 14, item 5).

A real hub on 127.0.0.1 serving a python-tuf repository, a real runner with its own HTTP API, an
onnxruntime model trained on the simulator. Covers: the same label again (with or without ``features``,
sequentially, concurrently, and after a runner restart) -> 200 with the same answer; a different label
-> 409 with a clear message; the batches the hub stored hold each event id once; a 404 for an event
the runner never saw still offers ``features`` (there is no duplicate to make); the bound on the
record (the spool forgets the oldest labels beyond ``labelled_capacity``); records of labels that spooled
no row wait in memory and are written with the next row or in a full batch, and at close.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.runner import Runner
from edge.spool import RECORD_BATCH, LabelRecord, Spool, SpoolEntry
from edgeloop.testkit.hub import HubHandle, running_hub
from edgeloop.testkit.runner_world import ReleaseWorld, model_bytes, runner_config, site_data, wait_for
from hub.registry import add_device


def rows_of(x: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReleaseWorld, HubHandle, str, int]]:
    model_bytes(1)
    w = ReleaseWorld(tmp_path_factory.mktemp("retry") / "world")
    version = w.publish(1)
    with running_hub(w.hub_root) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        yield w, hub, token, version


def start(world: tuple[ReleaseWorld, HubHandle, str, int], folder: Path) -> Runner:
    w, hub, token, version = world
    config = load_config(runner_config(folder, hub.url, token, w.root_bytes, upload={"random_rate": 0.0}),
                         environ={})
    runner = Runner(config)
    runner.start()
    wait_for(lambda: runner.model_version == str(version), what="activation")
    return runner


def landed(hub: HubHandle) -> list[dict[str, Any]]:
    files = sorted((hub.root / "data" / "uploads" / "press-1").glob("*.csv"))
    return [row for f in files for row in csv.DictReader(io.StringIO(f.read_text()))]


@pytest.mark.slow
def test_a_repeated_label_is_the_same_answer_and_never_a_second_row(world, tmp_path: Path) -> None:
    w, hub, token, version = world
    runner = start(world, tmp_path / "device")
    try:
        api = httpx.Client(base_url=runner.api_url)
        x, _ = site_data(20, 21)
        features = rows_of(x)
        answers = [api.post("/predict", json={"features": row}).json() for row in features]
        wrong = [1 - int(a["label"]) for a in answers]  # a labelled mistake: always selected for upload
        first = []
        for answer, label in zip(answers, wrong, strict=True):
            fed = api.post("/feedback", json={"event_id": answer["event_id"], "label": label})
            assert fed.status_code == 200, fed.text
            assert fed.json()["upload_reason"] == "labelled"
            first.append(fed.json())
        for answer, label, row, before in zip(answers, wrong, features, first, strict=True):
            again = api.post("/feedback", json={"event_id": answer["event_id"], "label": label})
            assert again.status_code == 200 and again.json() == before  # a retry whose answer was lost
            with_row = api.post("/feedback", json={"event_id": answer["event_id"], "label": label, "features": row})
            assert with_row.status_code == 200 and with_row.json() == before  # the form the old 404 suggested
        other = api.post("/feedback", json={"event_id": answers[0]["event_id"], "label": answers[0]["label"]})
        assert other.status_code == 409
        assert other.json()["error"] == (f"label: event_id {answers[0]['event_id']}: already labelled {wrong[0]}; "
                                         f"a different label ({answers[0]['label']}) is refused and nothing was "
                                         f"recorded")
        # many at once, for one event the runner just predicted, half of them with the row
        fresh = api.post("/predict", json={"features": features[0]}).json()
        label = 1 - int(fresh["label"])
        replies: list[httpx.Response] = []

        def send(n: int) -> None:
            body: dict[str, Any] = {"event_id": fresh["event_id"], "label": label}
            if n % 2:
                body["features"] = features[0]
            replies.append(httpx.post(f"{runner.api_url}/feedback", json=body))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in replies] == [200] * 8
        assert len({r.text for r in replies}) == 1
        # an event the runner never saw: the 404 offers "features" (there is no first label to duplicate)
        unknown = api.post("/feedback", json={"event_id": 12345, "label": 0})
        assert unknown.status_code == 404
        assert "no label recorded" in unknown.json()["error"] and "already labelled" not in unknown.json()["error"]
        wait_for(lambda: runner.spool.backlog_rows() == 0 and len(landed(hub)) == 21, what="every row at the hub")
    finally:
        runner.stop()
    ids = [row["event_id"] for row in landed(hub)]
    assert len(ids) == len(set(ids)) == 21  # each labelled event once, in whichever batch it went
    # after a restart the record is still there: the same label with the row is recognised, not re-spooled
    runner = start(world, tmp_path / "device")
    try:
        api = httpx.Client(base_url=runner.api_url)
        again = api.post("/feedback", json={"event_id": answers[3]["event_id"], "label": wrong[3],
                                            "features": features[3]})
        assert again.status_code == 200 and again.json() == first[3]
        assert runner.spool.backlog_rows() == 0
        assert api.post("/feedback", json={"event_id": answers[3]["event_id"],
                                           "label": answers[3]["label"]}).status_code == 409
    finally:
        runner.stop()
    assert len(landed(hub)) == 21


def test_the_label_record_keeps_the_newest_labelled_capacity(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 20, labelled_capacity=3)
    try:
        for event in range(5):
            spool.remember(LabelRecord(event, event % 2, {"event_id": event, "correct": True}))
        spool.remember(LabelRecord(4, 1, {"event_id": 4, "correct": False}))  # a second record never replaces one
        assert [spool.labelled(e) is None for e in range(5)] == [True, True, False, False, False]
        assert spool.labelled(4) == LabelRecord(4, 0, {"event_id": 4, "correct": True})
    finally:
        spool.close()


def _records_on_disk(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM labelled").fetchone()[0])


def test_records_without_a_row_wait_in_memory_then_ride_with_a_row_or_a_full_batch(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 1 << 20, labelled_capacity=10 * RECORD_BATCH)
    try:
        for event in range(RECORD_BATCH - 1):
            spool.remember(LabelRecord(event, 1, {"event_id": event, "correct": True}))
        assert _records_on_disk(path) == 0  # no transaction per label
        assert spool.labelled(7) == LabelRecord(7, 1, {"event_id": 7, "correct": True})  # answered from memory
        spool.put([SpoolEntry("labelled", {"x": 1.0})], LabelRecord(10_000, 0, {"event_id": 10_000}))
        assert _records_on_disk(path) == RECORD_BATCH  # they rode in the row's transaction
        for event in range(20_000, 20_000 + RECORD_BATCH):
            spool.remember(LabelRecord(event, 0, {"event_id": event}))
        assert _records_on_disk(path) == 2 * RECORD_BATCH  # a full batch is written on its own
        spool.remember(LabelRecord(99_999, 1, {"event_id": 99_999}))
    finally:
        spool.close()  # writes what waits (a runner's stop closes its spool)
    again = Spool(path, 1 << 20, labelled_capacity=10 * RECORD_BATCH)
    try:
        assert _records_on_disk(path) == 2 * RECORD_BATCH + 1
        assert again.labelled(99_999) == LabelRecord(99_999, 1, {"event_id": 99_999})
        assert again.labelled(3) == LabelRecord(3, 1, {"event_id": 3, "correct": True})
    finally:
        again.close()
