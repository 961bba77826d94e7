"""The loop and the gate with the landing zone and the quarantine in S3 (a real moto server on 127.0.0.1).

The same batches (Parquet with unlabelled rows, an edge runner's CSV, an unreadable object, a hidden temp
file) land in a folder project and in a bucket project: the monitor counts the same new labelled rows,
its data-volume trigger fires the same way, and the IPW estimates are the same. A second monitor pass
reads no object again (only listings), a new object is the only one read, and what the loop keeps of an
object that left the bucket is dropped. The gate's overview lists a quarantine reason stored in a bucket
exactly as one stored in a folder, and says so in one row when the bucket cannot be listed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON, batch_id
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from edgeloop.testkit.synthetic import make_rows
from flows.loop.estimates import read_estimates, refresh_estimates
from flows.loop.landing import CACHE_DIR
from flows.loop.observe import count_labelled_rows, gather
from flows.loop.triggers import decide
from flows.params import Params, parse_params
from flows.stages import gate
from simulator.batches import encode_batch

NO_HUB = "http://127.0.0.1:9"  # never asked: the projects have no admin token


def project(root: Path, changes: dict[str, Any]) -> tuple[Params, Paths]:
    raw = override(repo_params_raw(), changes)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse_params(raw), Paths.at(root)


def batches(params: Params) -> tuple[dict[str, bytes], int]:
    """Landing-zone files (relative key -> bytes) and how many labelled rows they hold."""
    schema = params.schema
    label = schema.label.name
    files: dict[str, bytes] = {}
    labelled = 0
    for d, device in enumerate(("press-1", "press-2")):
        frame = make_rows(schema, device, 300, seed=40 + d)
        frame.loc[frame.index % 4 == 0, label] = None  # not labelled yet
        labelled += int(frame[label].notna().sum())
        body = encode_batch(frame)
        files[f"{device}/{batch_id(body)}.parquet"] = body
    edge = make_rows(schema, "press-1", 120, seed=50)
    rng = np.random.default_rng(5)
    edge[PREDICTION] = np.where(rng.random(len(edge)) < 0.8, edge[label], 1 - edge[label])
    edge[MODEL_VERSION] = "7"
    edge[UPLOAD_REASON] = np.where(edge[PREDICTION] != edge[label], "labelled", "random")
    edge[INCLUSION_PROBABILITY] = np.where(edge[UPLOAD_REASON] == "random", 0.2, 1.0)
    edge.loc[edge.index % 10 == 0, label] = None
    labelled += int(edge[label].notna().sum())
    body = edge.to_csv(index=False).encode()
    files[f"press-1/{batch_id(body)}.csv"] = body  # what an edge runner uploads
    files["press-2/" + "b" * 64 + ".parquet"] = b"PAR1 not parquet"  # unreadable: counts 0, ingest quarantines it
    files["press-2/.upload.parquet.tmp"] = b"half written"  # hidden: never a batch
    return files, labelled


def land_in_folder(paths: Paths, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        target = paths.uploads / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def land_in_bucket(server: S3Server, bucket: str, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        server.client().put_object(Bucket=bucket, Key=f"uploads/{key}", Body=body)


@pytest.fixture
def s3_calls() -> Iterator[list[str]]:
    """Every S3 API call s3fs makes ("get_object uploads/press-1/....csv", "list_objects_v2 ...")."""
    calls: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == "CALL: %s - %s - %s":
                name, _, kwargs = record.args  # type: ignore[misc]
                calls.append(f"{name} {kwargs.get('Key') or kwargs.get('Prefix', '')}")

    logger, handler = logging.getLogger("s3fs"), Recorder()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield calls
    logger.removeHandler(handler)
    logger.setLevel(level)


def reads(calls: list[str]) -> list[str]:
    return sorted(c.split(" ", 1)[1] for c in calls if c.startswith("get_object"))


def test_the_monitor_sees_rows_landed_in_a_bucket_as_in_a_folder(s3_server: S3Server, tmp_path: Path,
                                                                  s3_calls: list[str]) -> None:
    bucket = s3_server.new_bucket()
    files, labelled = batches(parse_params(repo_params_raw()))
    monitor = {"loop.monitor.min_new_rows": labelled}  # fires at exactly the rows landed
    folder_params, folder = project(tmp_path / "folder", monitor)
    bucket_params, in_bucket = project(tmp_path / "bucket", monitor | {
        "storage.endpoint_url": s3_server.endpoint_url, "storage.uploads": f"s3://{bucket}/uploads",
        "ingest.sources": [f"s3://{bucket}/uploads", "data/simulated"]})
    land_in_folder(folder, files)
    land_in_bucket(s3_server, bucket, files)
    copied = next(k for k in files if k.startswith("press-1/") and k.endswith(".parquet"))
    land_in_folder(in_bucket, {copied: files[copied]})  # also left in data/uploads when moving: counted once

    seen = {}
    for name, params, paths in (("folder", folder_params, folder), ("bucket", bucket_params, in_bucket)):
        observed = gather(paths, params, None, url=NO_HUB, timeout=0.5)
        decision = decide(observed, params.loop.monitor, datetime.now(UTC), None)
        trigger = next(t for t in decision.triggers if t.name == "data_volume")
        seen[name] = (observed.new_labelled_rows, trigger.state, trigger.detail)
        refresh_estimates(paths, params)
    assert seen["bucket"] == seen["folder"] == (labelled, "fired", f"{labelled} new labelled rows (fires at >= "
                                                                   f"{labelled})")
    first = {name: read_estimates(p) for name, p in (("folder", folder), ("bucket", in_bucket))}
    assert first["bucket"]["rows"] == first["folder"]["rows"] > 50  # the CSV's labelled edge rows
    for estimates in first.values():
        estimates.pop("computed_at")
    assert first["bucket"] == first["folder"]
    assert {key.rsplit("/", 1)[1] for key in reads(s3_calls)} == {  # Parquet: by ranged GETs
        key.rsplit("/", 1)[1] for key in files if key != copied and ".tmp" not in key}

    s3_calls.clear()  # the next monitor tick lists the bucket and reads nothing again
    again = gather(in_bucket, bucket_params, None, url=NO_HUB, timeout=0.5)
    refresh_estimates(in_bucket, bucket_params)
    assert again.new_labelled_rows == labelled and reads(s3_calls) == []
    assert any(c.startswith("list_objects_v2") for c in s3_calls)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert count_labelled_rows(in_bucket, bucket_params, later) == 0  # landed before the last training

    more = make_rows(bucket_params.schema, "press-2", 40, seed=60)
    body = encode_batch(more)
    land_in_bucket(s3_server, bucket, {f"press-2/{batch_id(body)}.parquet": body})
    s3_calls.clear()
    assert gather(in_bucket, bucket_params, None, url=NO_HUB, timeout=0.5).new_labelled_rows == labelled + 40
    assert set(reads(s3_calls)) == {f"uploads/press-2/{batch_id(body)}.parquet"}  # only the new object

    edge_key = next(k for k in files if k.endswith(".csv"))
    s3_server.client().delete_object(Bucket=bucket, Key=f"uploads/{edge_key}")  # a lifecycle rule expired it
    refresh_estimates(in_bucket, bucket_params)
    assert read_estimates(in_bucket)["rows"] == 0
    kept = sorted(p.name for p in (in_bucket.data / CACHE_DIR).rglob("*.parquet"))
    assert len(kept) == 3 and not any(k.endswith(".csv.parquet") for k in kept)  # 2 Parquet, 1 unreadable


def test_an_unreachable_landing_bucket_makes_the_trigger_unknown_and_keeps_the_estimates(
        s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    params, paths = project(tmp_path, {"storage.endpoint_url": s3_server.endpoint_url,
                                       "storage.uploads": "s3://no-such-bucket/uploads"})
    body = encode_batch(make_rows(params.schema, "press-1", 30, seed=1))
    land_in_folder(paths, {f"press-1/{batch_id(body)}.parquet": body})  # not counted alone: a part would mislead
    observed = gather(paths, params, None, url=NO_HUB, timeout=0.5)
    assert observed.new_labelled_rows is None
    trigger = next(t for t in decide(observed, params.loop.monitor, datetime.now(UTC), None).triggers
                   if t.name == "data_volume")
    assert (trigger.state, trigger.detail) == ("unknown", "landing zone not readable")
    previous = paths.data / "loop" / "estimates.json"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"rows": 12}\n')
    assert refresh_estimates(paths, params) == previous and read_estimates(paths) == {"rows": 12}
    assert "bucket 'no-such-bucket' not found" in caplog.text


def test_the_gate_overview_lists_a_quarantine_reason_stored_in_a_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    key = "c" * 64
    entry = {f"press-1/{key}.parquet": b"PAR1 not parquet", f"press-1/{key}.gx.json": b"{}",
             f"press-1/{key}.reason.txt": b"corrupt parquet file: magic bytes not found\n"}
    folder_params, folder = project(tmp_path / "folder", {})
    bucket_params, in_bucket = project(tmp_path / "bucket", {
        "storage.endpoint_url": s3_server.endpoint_url, "storage.quarantine": f"s3://{bucket}/quarantine"})
    for name, body in entry.items():
        (folder.quarantine / name).parent.mkdir(parents=True, exist_ok=True)
        (folder.quarantine / name).write_bytes(body)
        s3_server.client().put_object(Bucket=bucket, Key=f"quarantine/{name}", Body=body)

    pages = {}
    for name, params, paths in (("folder", folder_params, folder), ("bucket", bucket_params, in_bucket)):
        summary = gate.main(params, paths)  # no metrics: blocked with reasons, the overview written all the same
        assert summary["passed"] is False
        pages[name] = (paths.candidate / "index.html").read_text()
    row = f"<tr><td><code>press-1/{key}</code></td><td>corrupt parquet file: magic bytes not found</td></tr>"
    assert row in pages["bucket"] and row in pages["folder"]

    gone_params, gone = project(tmp_path / "gone", {
        "storage.endpoint_url": s3_server.endpoint_url, "storage.quarantine": "s3://no-such-bucket/quarantine"})
    gate.main(gone_params, gone)
    page = (gone.candidate / "index.html").read_text()
    assert "s3://no-such-bucket/quarantine</code></td><td>cannot be listed: " in page
    assert "bucket &#x27;no-such-bucket&#x27; not found" in page
