"""The release repository pushed to S3 (a real moto server on 127.0.0.1, public-read bucket) and devices
fetching from the bucket's plain HTTP URL with python-tuf: publishes reach devices; a publish that fails,
or a publishing process killed (SIGKILL), after its target files were uploaded but before any metadata
leaves devices on the previous consistent release, and the next publish completes both; a publisher on
another host (an empty folder) pulls the bucket first and carries on from it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeloop.testkit.releases import fetch, make_candidate, release_config, tiny_onnx
from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from flows.releases import init_repository, promote, publish, refresh
from flows.releases import mirror as mirror_module
from flows.releases.mirror import IMMUTABLE, MUTABLE, Mirror, MirrorError
from flows.releases.repository import LocalRepository, bundle_versions

pytestmark = pytest.mark.slow  # the moto server


@pytest.fixture
def world(s3_server: S3Server, tmp_path: Path):
    bucket = s3_server.new_bucket(public_read=True)
    config = replace(release_config(tmp_path / "publisher"),
                     mirror=Mirror(f"s3://{bucket}/releases", s3_server.endpoint_url))
    root = init_repository(config)
    candidates = {seed: make_candidate(tmp_path / f"cand-{seed}", tiny_onnx(seed), f"cand-{seed:012d}")
                  for seed in (1, 2, 3)}
    return config, root.read_bytes(), candidates, s3_server.http_url(bucket, "releases"), bucket


def metadata_keys(server: S3Server, bucket: str) -> list[str]:
    return server.keys(bucket, "releases/metadata/")


def test_devices_fetch_from_the_bucket_and_a_publish_cut_after_its_targets_changes_nothing_they_see(
    world, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, root, candidates, url, bucket = world
    publish(config, candidates[1], "canary")
    device = tmp_path / "device"
    first = fetch(url, device, root=root)
    assert first.version == 1 and first.folder is not None

    real_upload = mirror_module.upload
    cut: list[str] = []

    def die_at_metadata(fs, prefix, key, data, create_only=False):
        if key.startswith("metadata/"):
            cut.append(key)
            raise MirrorError("connection lost (injected)")
        real_upload(fs, prefix, key, data, create_only)

    metadata_before = {k: s3_server.client().get_object(Bucket=bucket, Key=k)["Body"].read()
                       for k in metadata_keys(s3_server, bucket)}
    monkeypatch.setattr(mirror_module, "upload", die_at_metadata)
    with pytest.raises(MirrorError, match="injected.*next release operation"):
        publish(config, candidates[2], "canary")
    monkeypatch.undo()

    assert cut and cut[0].endswith(".targets.json")  # every target went up before the first metadata file
    targets_up = s3_server.keys(bucket, "releases/targets/bundles/2/")
    assert len(targets_up) == 2  # model and manifest of release 2 are in the bucket ...
    metadata_after = {k: s3_server.client().get_object(Bucket=bucket, Key=k)["Body"].read()
                      for k in metadata_keys(s3_server, bucket)}
    assert metadata_after == metadata_before  # ... but no metadata names them
    still = fetch(url, device, root=root, current=1)  # a full TUF refresh against the bucket
    assert still.version == 1 and still.folder is None  # unchanged: the previous consistent release
    assert LocalRepository(config).targets().version == 3  # the publisher's folder did commit release 2

    third = publish(config, candidates[3], "canary")  # the next publish pushes both
    assert third.version == 3
    assert fetch(url, device, root=root, current=1).version == 3
    committed = bundle_versions(LocalRepository(config).targets())
    assert set(committed) == {1, 2, 3}
    assert all(s3_server.keys(bucket, f"releases/targets/bundles/{v}/") for v in committed)


def test_timestamp_goes_last_and_caches_are_told_what_changes(world, s3_server: S3Server, monkeypatch) -> None:
    config, _, candidates, _, bucket = world
    order: list[str] = []
    real_upload = mirror_module.upload

    def record(fs, prefix, key, data, create_only=False):
        order.append(key)
        real_upload(fs, prefix, key, data, create_only)

    monkeypatch.setattr(mirror_module, "upload", record)
    publish(config, candidates[1], "canary")
    assert order[-2:] == ["metadata/timestamp.json", "history.jsonl"]
    last_target = max(i for i, k in enumerate(order) if k.startswith("targets/"))
    assert last_target < order.index("metadata/2.targets.json") < order.index("metadata/2.snapshot.json")
    client = s3_server.client()
    assert client.head_object(Bucket=bucket, Key="releases/metadata/timestamp.json")["CacheControl"] == MUTABLE
    assert client.head_object(Bucket=bucket, Key="releases/metadata/2.snapshot.json")["CacheControl"] == IMMUTABLE


def test_a_publisher_with_an_empty_folder_pulls_the_bucket_first(world, s3_server: S3Server, tmp_path: Path) -> None:
    config, root, candidates, url, bucket = world
    publish(config, candidates[1], "canary")
    other_host = replace(config, repository=tmp_path / "other-host" / "releases")  # same keys, same bucket
    move = promote(other_host, 1, "stable", create=True)
    assert (move.channel, move.to_version) == ("stable", 1)
    assert fetch(url, tmp_path / "device", channel="stable", root=root).version == 1
    history = [json.loads(line) for line in (other_host.repository / "history.jsonl").read_text().splitlines()]
    assert [e["event"] for e in history] == ["publish", "promote"]
    summary = refresh(config)  # the first host pulls the promote before re-signing: nothing lost
    assert "timestamp" in summary["resigned"]
    assert fetch(url, tmp_path / "device", channel="stable", root=root, current=1).version == 1
    assert fetch(url, tmp_path / "device2", channel="canary", root=root).version == 1


KILLED_PUBLISH = """
import os, signal, sys
from dataclasses import replace
from pathlib import Path
from edge.telemetry import switch_off
switch_off()
from edgeloop.testkit.releases import release_config
from flows.releases import mirror, publish

folder, url, endpoint, candidate = sys.argv[1:5]
config = replace(release_config(Path(folder)), mirror=mirror.Mirror(url, endpoint))
real_upload = mirror.upload

def upload(fs, prefix, key, data, create_only=False):
    if key.startswith("metadata/"):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies: no exception handler, no cleanup
    real_upload(fs, prefix, key, data, create_only)

mirror.upload = upload
publish(config, Path(candidate), "canary")
"""


def test_a_publisher_killed_between_targets_and_metadata(world, s3_server: S3Server, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from edgeloop.testkit.project import REPO

    config, root, candidates, url, bucket = world
    publish(config, candidates[1], "canary")
    device = tmp_path / "device"
    assert fetch(url, device, root=root).version == 1
    assert config.mirror is not None
    done = subprocess.run(
        [sys.executable, "-c", KILLED_PUBLISH, str(config.repository.parent), config.mirror.url,
         s3_server.endpoint_url, str(candidates[2])], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert s3_server.keys(bucket, "releases/targets/bundles/2/")  # its targets reached the bucket
    assert fetch(url, device, root=root, current=1).version == 1  # devices: the previous release
    assert publish(config, candidates[3], "canary").version == 3  # the lock died with it; this completes all
    assert fetch(url, device, root=root, current=1).version == 3


def test_two_publishers_racing_on_two_hosts_the_loser_writes_no_metadata_and_redoes(
    world, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, root, candidates, url, bucket = world
    publish(config, candidates[1], "canary")
    other_host = replace(config, repository=tmp_path / "other-host" / "releases")
    promote(other_host, 1, "stable", create=True)  # the other host publishes while ...
    monkeypatch.setattr("flows.releases.repository.pull", lambda repository, mirror: [])  # ... this one had pulled
    metadata_before = {k: s3_server.client().get_object(Bucket=bucket, Key=k)["Body"].read()
                       for k in metadata_keys(s3_server, bucket)}
    with pytest.raises(MirrorError, match="another publisher already wrote .*targets.json"):
        publish(config, candidates[2], "canary")
    monkeypatch.undo()
    after = {k: s3_server.client().get_object(Bucket=bucket, Key=k)["Body"].read()
             for k in metadata_keys(s3_server, bucket)}
    assert after == metadata_before  # the winner's state, untouched
    device = tmp_path / "device"
    assert fetch(url, device, channel="stable", root=root).version == 1

    again = publish(config, candidates[2], "canary")  # pulls the winner's state first, then publishes
    assert fetch(url, device, channel="canary", root=root).version == again.version
    assert fetch(url, tmp_path / "device2", channel="stable", root=root).version == 1  # the promote survived
