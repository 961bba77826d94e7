"""Reproducing a release, for real: dvc in a temporary git repository, a release bundle taken from the
gate's candidate, then the project moves on (new data, new params, curated data deleted from the
workspace) and the release still comes back bit for bit from its recorded snapshot.

The bundle's dvc.lock is the lock as it stood when the gate ran (``dvc repro evaluate`` then the gate):
that is the file whose sha256 the manifest records; the lock after the run also holds the gate's own
entry, so it can never match (the test of a mismatching lock uses exactly that file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from edge.contracts.errors import UserError
from flows.releases.reproduce import REPRODUCE_FILES, locate_release_files, reproduce_bundle, reproduce_release
from tests.projects import GIT_USER, make_git_project, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def make_project(root: Path) -> Path:
    return make_git_project(root, {"simulate.devices": 2, "simulate.rows_per_device": 1500})


def curated_md5(lock: bytes) -> str:
    deps = yaml.safe_load(lock)["stages"]["split"]["deps"]
    return str(next(d["md5"] for d in deps if d["path"] == "data/curated"))


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A project that made a release; the remote `store` holds its data snapshot."""
    base = tmp_path_factory.mktemp("reproduce")
    project = make_project(base / "project")
    dvc("repro", "evaluate", cwd=project)
    gate_time_lock = (project / "dvc.lock").read_bytes()
    dvc("repro", cwd=project)  # runs the gate, which hashes dvc.lock as it is now
    bundle = base / "bundle"
    bundle.mkdir()
    for name in ("model.onnx", "manifest.json"):
        shutil.copy2(project / "data" / "candidate" / name, bundle / name)
    shutil.copy2(project / "params.yaml", bundle / "params.yaml")
    (bundle / "dvc.lock").write_bytes(gate_time_lock)
    dvc("remote", "add", "--local", "-d", "store", "../remote", cwd=project)
    dvc("push", "--quiet", "ingest", cwd=project)
    return SimpleNamespace(
        base=base, project=project, bundle=bundle, final_lock=(project / "dvc.lock").read_bytes(),
        manifest=json.loads((bundle / "manifest.json").read_text()),
    )


def copy_bundle(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_release_reproduces_exactly_after_the_project_moved_on(released: SimpleNamespace, tmp_path: Path) -> None:
    project = released.project
    dvc("exp", "run", "-S", "simulate.rows_per_device=2000", "-S", "train.hgb.max_iter=20", cwd=project)
    release_md5 = curated_md5((released.bundle / "dvc.lock").read_bytes())
    assert curated_md5((project / "dvc.lock").read_bytes()) != release_md5  # the data really changed
    shutil.rmtree(project / "data" / "curated")
    params_now = (project / "params.yaml").read_bytes()

    report = reproduce_bundle(released.bundle, project, workdir=tmp_path / "work")

    assert report["snapshot"]["md5"] == release_md5 and report["snapshot"]["source"] == "cache"
    assert report["data_hash_matches"] is True, report["data_hash"]
    assert report["predictions_identical"] is True and report["max_abs_diff"] == 0.0
    assert report["onnx_bytes_identical"] is True, report["note"]
    recorded = released.manifest["lineage"]["git_commit"]
    assert report["git_commit_reproduced"] == recorded
    assert report["git_commit_now"] == f"{recorded}-dirty"  # exp run left params.yaml modified
    assert report["rows"]["train"] + report["rows"]["holdout"] == 3000
    assert report["seconds"]["total"] > 0
    # the project's own workspace is untouched; the kept work folder holds the reproduction
    assert (project / "params.yaml").read_bytes() == params_now
    assert not (project / "data" / "curated").exists()
    assert (tmp_path / "work" / "project" / "data" / "model" / "model.onnx").read_bytes() == (
        released.bundle / "model.onnx"
    ).read_bytes()


def test_at_another_commit_predictions_are_identical_and_the_report_says_why_bytes_differ(
    released: SimpleNamespace, tmp_path: Path
) -> None:
    """A clone one commit further on, sharing the project's DVC cache: export embeds the commit."""
    clone = tmp_path / "later"
    run(["git", "clone", "-q", str(released.project), str(clone)], tmp_path)
    run(["git", *GIT_USER, "commit", "-q", "--allow-empty", "-m", "later"], clone)
    dvc("cache", "dir", "--local", str(released.project / ".dvc" / "cache"), cwd=clone)

    report = reproduce_bundle(released.bundle, clone)

    assert report["data_hash_matches"] and report["predictions_identical"] and report["max_abs_diff"] == 0.0
    assert report["onnx_bytes_identical"] is False
    assert report["git_commit_reproduced"] == report["git_commit_now"] != report["git_commit_recorded"]
    assert "embeds the git commit" in report["note"] and report["git_commit_recorded"] in report["note"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_repository(repo: Path, version: int, bundle: Path) -> None:
    """A TUF-style repository: consistent-snapshot targets and two targets metadata versions, the newest
    naming the real files, the older a decoy params.yaml that is also stored (intact)."""
    folder = repo / "targets" / "bundles" / str(version)
    folder.mkdir(parents=True)
    signed = {}
    for name in REPRODUCE_FILES:
        digest = sha256(bundle / name)
        shutil.copy2(bundle / name, folder / f"{digest}.{name}")
        signed[f"bundles/{version}/{name}"] = {"length": (bundle / name).stat().st_size, "hashes": {"sha256": digest}}
    decoy = (bundle / "params.yaml").read_bytes() + b"# decoy\n"
    decoy_digest = hashlib.sha256(decoy).hexdigest()
    (folder / f"{decoy_digest}.params.yaml").write_bytes(decoy)
    (folder / f"{'0' * 64}.model.onnx").write_bytes(b"corrupt")  # name claims a hash the bytes lack
    older = {**signed, f"bundles/{version}/params.yaml": {"length": len(decoy), "hashes": {"sha256": decoy_digest}}}
    (repo / "metadata").mkdir()
    for number, targets in ((9, older), (10, signed)):  # 10 > 9 numerically, not as text
        (repo / "metadata" / f"{number}.targets.json").write_text(json.dumps({"signed": {"targets": targets}}))


def test_locate_release_files_follows_the_newest_targets_metadata(released: SimpleNamespace, tmp_path: Path) -> None:
    write_repository(tmp_path / "repo", 3, released.bundle)
    files = locate_release_files(tmp_path / "repo", 3)
    for name in REPRODUCE_FILES:
        assert files[name].read_bytes() == (released.bundle / name).read_bytes(), name
    with pytest.raises(UserError, match="release 4"):
        locate_release_files(tmp_path / "repo", 4)


def test_release_from_repository_on_a_fresh_clone_fetches_the_snapshot_from_the_remote(
    released: SimpleNamespace, tmp_path: Path
) -> None:
    """A machine with an empty DVC cache: the snapshot comes from the project's remote (relative URL in
    .dvc/config.local), and the fetch fills the project's cache."""
    write_repository(tmp_path / "repo", 3, released.bundle)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(released.project), str(clone)], tmp_path)
    dvc("remote", "add", "--local", "-d", "store", os.path.relpath(released.base / "remote", clone), cwd=clone)

    report = reproduce_release(SimpleNamespace(repository=tmp_path / "repo"), 3, clone)

    assert report["release"] == 3 and report["snapshot"]["source"] == "remote"
    assert report["data_hash_matches"] and report["predictions_identical"] and report["onnx_bytes_identical"]
    assert report["workdir"] is None
    assert not (clone / "data" / "curated").exists()
    assert any((clone / ".dvc" / "cache").rglob("*.dir"))


def test_snapshot_missing_from_cache_and_remote_is_a_user_error(released: SimpleNamespace, tmp_path: Path) -> None:
    bundle = copy_bundle(released.bundle, tmp_path / "bundle")
    lock = (bundle / "dvc.lock").read_bytes()
    forged = lock.replace(curated_md5(lock).encode(), b"0123456789abcdef0123456789abcdef.dir")
    (bundle / "dvc.lock").write_bytes(forged)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["lineage"]["dvc_lock_hash"] = hashlib.sha256(forged).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(UserError, match="0123456789abcdef0123456789abcdef.dir") as caught:
        reproduce_bundle(bundle, released.project)
    assert "dvc pull" in str(caught.value) and "remote" in str(caught.value)


def test_dvc_lock_that_is_not_the_recorded_one_is_refused(released: SimpleNamespace, tmp_path: Path) -> None:
    """The lock as it is after the run (with the gate's own entry) is not the one the manifest hashed."""
    bundle = copy_bundle(released.bundle, tmp_path / "bundle")
    (bundle / "dvc.lock").write_bytes(released.final_lock)
    with pytest.raises(UserError, match="lineage.dvc_lock_hash") as caught:
        reproduce_bundle(bundle, released.project, workdir=tmp_path / "work")
    assert "not the dvc.lock the release was built from" in str(caught.value)
    assert not (tmp_path / "work").exists()  # refused before any work
