"""The hub lands uploads in S3 (a real moto server on 127.0.0.1) when params.yaml says
``storage.uploads: s3://bucket/prefix``: one whole object per batch at its content address, the same batch
sent twice at once stored once, nothing in the local landing zone; the ingest stage then curates it
from the bucket. A bad ``storage.uploads`` is one clear settings error."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edgeloop.testkit.hub import running_hub
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from edgeloop.testkit.synthetic import make_rows
from flows.params import parse_params
from flows.stages import ingest as stage
from hub.registry import add_device
from hub.settings import HubSettings, HubSettingsError
from hub.store.object_batches import ObjectLanding, ObjectStorage
from simulator.batches import encode_batch

PARQUET = "application/vnd.apache.parquet"


@pytest.mark.slow  # a hub and the moto server
def test_uploads_land_in_the_bucket_once_and_ingest_curates_them(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    settings = {"storage.endpoint_url": s3_server.endpoint_url, "storage.uploads": f"s3://{bucket}/uploads",
                "storage.quarantine": f"s3://{bucket}/quarantine", "ingest.sources": [f"s3://{bucket}/uploads"],
                "ingest.data_docs": False}
    raw = override(repo_params_raw(), settings)
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    body = encode_batch(make_rows(params.schema, "press-1", 50, seed=4))
    key = hashlib.sha256(body).hexdigest()

    with running_hub(root) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        headers = {"Content-Type": PARQUET, "Authorization": f"Bearer {token}", "Idempotency-Key": key}

        def send(_: int) -> httpx.Response:
            return httpx.post(f"{hub.url}/v1/devices/press-1/uploads", content=body, headers=headers, timeout=30)

        with ThreadPoolExecutor(4) as pool:  # the same batch four times at once
            responses = list(pool.map(send, range(4)))

    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sorted(r.json()["deduplicated"] for r in responses).count(False) == 1
    assert {r.json()["location"] for r in responses} == {f"uploads/press-1/{key}.parquet"}
    assert s3_server.keys(bucket) == [f"uploads/press-1/{key}.parquet"]
    stored = s3_server.client().get_object(Bucket=bucket, Key=f"uploads/press-1/{key}.parquet")["Body"].read()
    assert stored == body
    assert not (root / "data" / "uploads").exists()

    summary = stage.main(params, Paths.at(root))
    assert (summary["new_curated"], summary["rows"]) == (1, 50)


@pytest.mark.slow
def test_object_storage_refuses_unsafe_names_and_answers_exists(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    storage = ObjectStorage(ObjectLanding(f"s3://{bucket}/landing", s3_server.endpoint_url))
    body = b"PAR1 bytes PAR1"
    key = hashlib.sha256(body).hexdigest()
    assert not storage.exists("dev-1", key, "parquet")
    assert storage.put("dev-1", key, body, "parquet") == f"landing/dev-1/{key}.parquet"
    assert storage.exists("dev-1", key, "parquet")
    for device, batch in (("../etc", key), ("dev-1", "../" + key[3:])):
        with pytest.raises(ValueError):
            storage.put(device, batch, body, "parquet")
    assert s3_server.keys(bucket) == [f"landing/dev-1/{key}.parquet"]
    with pytest.raises(UserError, match="bucket 'no-such-bucket' not found"):
        ObjectStorage(ObjectLanding("s3://no-such-bucket/landing", s3_server.endpoint_url))


@pytest.mark.parametrize("value", ["data/elsewhere", "s3://", 7])
def test_a_bad_uploads_location_is_one_settings_error(tmp_path: Path, value: object) -> None:
    raw = repo_params_raw()
    raw["storage"] = {"uploads": value}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(HubSettingsError, match="storage.uploads: expected s3://bucket/prefix"):
        HubSettings.load(tmp_path)


def test_the_default_is_the_local_landing_zone(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params_raw(), sort_keys=False))
    settings = HubSettings.load(tmp_path)
    assert settings.object_landing is None and settings.landing == Paths.at(tmp_path).uploads
