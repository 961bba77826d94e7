"""Ingest with the landing zone and the quarantine in S3 (a real moto server on 127.0.0.1): new batches are
read from the bucket, curated once, bad ones quarantined into the bucket with their evidence, and no source
object is changed or deleted; a rerun finds everything done (the quarantine ledger is read from the bucket).
Local folders stay the default: the same values as plain paths give plain pathlib paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edgeloop.testkit.project import override
from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from edgeloop.testkit.synthetic import write_uploads
from flows.ingest.discover import discover, source_locations
from flows.ingest.quarantine import quarantine_root
from flows.params import Params, parse_params
from flows.stages import ingest as stage
from flows.storage import location, write_bytes


def s3_params(raw: dict[str, Any], server: S3Server, bucket: str) -> Params:
    return parse_params(override(raw, {
        "ingest.sources": [f"s3://{bucket}/uploads", "data/simulated"],
        "ingest.data_docs": False,
        "storage.endpoint_url": server.endpoint_url,
        "storage.quarantine": f"s3://{bucket}/quarantine",
    }))


def upload_tree(server: S3Server, bucket: str, prefix: str, folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` as an object under ``prefix``; key -> bytes."""
    sent = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        server.client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        sent[key] = path.read_bytes()
    return sent


def objects(server: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    client = server.client()
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in server.keys(bucket, prefix)}


@pytest.mark.slow  # the moto server
def test_ingest_reads_the_bucket_and_quarantines_into_it(s3_server: S3Server, raw_params, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    params = s3_params(raw_params, s3_server, bucket)
    staged = tmp_path / "staged"
    write_uploads(staged, params.schema, devices=2, rows=120, batch_rows=60, seed=3)  # 4 good batches
    (staged / "dev-9").mkdir()
    (staged / "dev-9" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    (staged / "README.md").write_text("landing zone\n")  # skipped, as in a folder
    sources = upload_tree(s3_server, bucket, "uploads", staged)
    paths = Paths.at(tmp_path / "project")

    summary = stage.main(params, paths)

    assert (summary["new_curated"], summary["new_quarantined"]) == (4, 1)
    assert summary["rows"] == 240
    assert objects(s3_server, bucket, "uploads") == sources  # nothing changed or deleted
    quarantined = s3_server.keys(bucket, "quarantine")
    assert len(quarantined) == 3 and all(k.startswith("quarantine/dev-9/") for k in quarantined)
    raw = next(k for k in quarantined if k.endswith(".parquet"))
    assert objects(s3_server, bucket, raw)[raw] == b"PAR1 this is not parquet"
    reason = next(k for k in quarantined if k.endswith(".reason.txt"))
    assert "parquet" in objects(s3_server, bucket, reason)[reason].decode()
    assert not (paths.quarantine.exists() and any(paths.quarantine.iterdir()))  # nothing went to the folder

    again = stage.main(params, paths)  # the ledger reads the bucket's quarantine: everything is done
    assert (again["new_batches"], again["skipped_already_done"]) == (0, 5)
    assert (again["curated"], again["quarantined"]) == (4, 1)

    write_uploads(staged / "more", params.schema, devices=1, rows=60, batch_rows=60, seed=11)
    upload_tree(s3_server, bucket, "uploads", staged / "more")  # a new batch lands between runs
    third = stage.main(params, paths)
    assert (third["new_curated"], third["skipped_already_done"]) == (1, 5)


@pytest.mark.slow  # the moto server
def test_discover_walks_a_bucket_as_it_walks_a_folder(s3_server: S3Server, raw_params, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    params = s3_params(raw_params, s3_server, bucket)
    folder = tmp_path / "landing"
    for name, body in {"dev-1/b.csv": b"x", "dev-1/a.parquet": b"y", "dev-1/sub/c.csv": b"z", "bad id!/d.csv": b"w",
                       "loose.csv": b"v", "dev-2/.a.tmp": b"partial", "dev-2/e.txt": b"u"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    upload_tree(s3_server, bucket, "uploads", folder)

    remote = discover([source_locations(params, Paths.at(tmp_path))[0]])
    local = discover([folder])

    def shape(found):
        return [(f.device_id, f.path.name, f.extension, f.problem) for f in found]

    assert shape(remote) == shape(local)
    assert [f.path.read_bytes() for f in remote] == [f.path.read_bytes() for f in local]
    assert str(remote[0].path) == f"s3://{bucket}/uploads/dev-1/a.parquet"


def test_local_paths_stay_plain_paths_and_bad_urls_are_one_line_errors(raw_params, tmp_path: Path) -> None:
    params = parse_params(raw_params)
    paths = Paths.at(tmp_path)
    assert quarantine_root(params, paths) == paths.quarantine
    assert source_locations(params, paths) == [paths.uploads, paths.simulated]
    assert type(location("/abs/folder", tmp_path)) is type(tmp_path)
    for bad in ("gs://bucket/x", "s3://", "s3:///key"):
        with pytest.raises(UserError, match="s3://bucket/prefix"):
            location(bad, tmp_path)


@pytest.mark.slow  # the moto server
def test_a_missing_bucket_or_missing_credentials_is_one_line(s3_server: S3Server, raw_params, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    params = s3_params(raw_params, s3_server, "no-such-bucket")
    with pytest.raises(UserError, match="bucket 'no-such-bucket' not found"):
        stage.main(params, Paths.at(tmp_path))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    other = s3_params(raw_params, s3_server, s3_server.new_bucket())
    other = other.model_copy(update={"storage": other.storage.model_copy(
        update={"endpoint_url": s3_server.endpoint_url + "/"})})  # another client: no cached credentials
    with pytest.raises(UserError, match="not found or not visible .*the AWS credentials"):
        stage.main(other, Paths.at(tmp_path))


@pytest.mark.slow  # the moto server
def test_a_whole_object_write_is_one_put(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    target = location(f"s3://{bucket}/q/dev-1/x.reason.txt", Path("/"), s3_server.endpoint_url)
    write_bytes(target, b"first\n")
    write_bytes(target, b"second\n")
    assert objects(s3_server, bucket, "q") == {"q/dev-1/x.reason.txt": b"second\n"}
