"""The DVC remote on S3 (dvc-s3 against a real moto server on 127.0.0.1): the project's pipeline data is
pushed from one clone with `dvc push` and pulled byte for byte into a fresh clone with `dvc pull`, the
remote configured exactly as docs/storage.md says (`dvc remote add`, `dvc remote modify endpointurl`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from tests.projects import GIT_USER, make_git_project, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dvc_push_to_s3_and_pull_into_a_fresh_clone(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket("dvc")
    first = make_git_project(tmp_path / "first", {"simulate.devices": 2, "simulate.rows_per_device": 300})
    run(["dvc", "repro", "simulate"], first)
    run(["dvc", "remote", "add", "-d", "store", f"s3://{bucket}/edgeloop"], first)
    run(["dvc", "remote", "modify", "store", "endpointurl", s3_server.endpoint_url], first)
    run(["git", *GIT_USER, "add", "dvc.lock", ".dvc/config"], first)
    run(["git", *GIT_USER, "commit", "-qm", "data and remote"], first)

    pushed = run(["dvc", "push"], first)
    assert "pushed" in pushed.stdout
    stored = s3_server.keys(bucket, "edgeloop/")
    assert stored and all(key.startswith("edgeloop/files/md5/") for key in stored)

    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    assert not (second / "data" / "simulated").exists()
    run(["dvc", "pull", "simulate"], second)  # the stage that ran; the others have no outputs yet
    assert files(second / "data" / "simulated") == files(first / "data" / "simulated")
    status = run(["dvc", "status", "--cloud", "simulate"], second)
    assert "up to date" in status.stdout.lower() or "in sync" in status.stdout.lower(), status.stdout
