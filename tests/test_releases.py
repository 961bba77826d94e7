"""Signed releases, functionally: init, publish, promote, rollback, list, show, refresh, keys and the
CLI, with the real python-tuf client (edge.releases) over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge.contracts.errors import UserError
from edge.contracts.manifest import Manifest
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import fetch, make_candidate, release_config, staged, tamper_server, tiny_onnx
from flows.releases import (
    init_repository,
    list_releases,
    promote,
    publish,
    refresh,
    rollback,
    rotate_key,
    show_release,
    verify_repository,
)
from flows.releases.keys import env_var, key_file
from flows.releases.repository import LocalRepository


@pytest.fixture
def repo(tmp_path):
    config = release_config(tmp_path)
    root = init_repository(config)
    return config, root.read_bytes()


def candidate(tmp_path: Path, seed: int, name: str | None = None, passed: bool = True) -> Path:
    return make_candidate(tmp_path / (name or f"cand-{seed}"), tiny_onnx(seed), f"cand-{seed:012d}", passed)


def bundle_files(config) -> set[str]:
    return {str(p.relative_to(config.targets_dir)) for p in (config.targets_dir / "bundles").rglob("*") if p.is_file()}


def test_publish_then_a_device_follows_the_channel_and_gets_identical_bytes(repo, tmp_path) -> None:
    config, root = repo
    result = publish(config, candidate(tmp_path, 1), "canary")
    assert (result.version, result.channel) == (1, "canary")
    assert result.targets == ["bundles/1/model.onnx", "bundles/1/manifest.json", "channels/canary.json"]
    with tamper_server(config.repository) as server:
        got = fetch(server.url, tmp_path / "device", root=root)
    assert (got.version, got.changed) == (1, True)
    assert got.model_path.read_bytes() == tiny_onnx(1)
    manifest = Manifest.from_json(got.manifest_path.read_bytes())
    assert (manifest.version, manifest.candidate) == ("1", "cand-000000000001")
    assert staged(tmp_path / "device") == ["1", "1/manifest.json", "1/model.onnx"]
    # consistent snapshots: content-addressed targets, versioned metadata, timestamp.json the only mutable file
    targets = LocalRepository(config).targets()
    model = targets.targets["bundles/1/model.onnx"]
    assert model.hashes["sha256"] == manifest.model.sha256 == hashlib.sha256(tiny_onnx(1)).hexdigest()
    assert (config.targets_dir / "bundles" / "1" / f"{manifest.model.sha256}.model.onnx").is_file()
    names = {p.name for p in config.metadata_dir.iterdir()}
    assert {"1.root.json", "root.json", "2.targets.json", "2.snapshot.json", "timestamp.json"} <= names


def test_versions_only_grow_even_after_a_crash_left_files_behind(repo, tmp_path) -> None:
    config, root = repo
    assert [publish(config, candidate(tmp_path, s), "canary").version for s in (1, 2, 3)] == [1, 2, 3]
    # leftovers of a publish killed before its timestamp: a bundle folder and uncommitted metadata
    (config.targets_dir / "bundles" / "4").mkdir()
    (config.metadata_dir / "5.targets.json").write_text("half written")
    (config.metadata_dir / "5.snapshot.json").write_text("{}")
    result = publish(config, candidate(tmp_path, 4), "canary")
    assert result.version == 5  # 4 was taken by the crashed attempt: never reused
    assert [r.version for r in list_releases(config)] == [1, 2, 3, 5]
    with tamper_server(config.repository) as server:
        assert fetch(server.url, tmp_path / "device", root=root).version == 5


def test_user_mistakes_are_one_line_errors(repo, tmp_path) -> None:
    config, _ = repo
    with pytest.raises(UserError, match="already exists"):
        init_repository(config)
    with pytest.raises(UserError, match="did not pass"):
        publish(config, candidate(tmp_path, 1, passed=False), "canary")
    with pytest.raises(UserError, match="decision.json is missing"):
        publish(config, tmp_path / "nowhere", "canary")
    with pytest.raises(UserError, match="channel"):
        publish(config, candidate(tmp_path, 1), "Not A Channel")
    with pytest.raises(UserError, match=r"channel 'stabel' does not exist \(channels: canary, stable\)"):
        publish(config, candidate(tmp_path, 1), "stabel")  # a typo never makes a channel no device follows
    assert not (config.repository / "history.jsonl").exists() or "stabel" not in (
        config.repository / "history.jsonl").read_text()
    with pytest.raises(UserError, match="no release 7"):
        promote(config, 7, "stable")
    with pytest.raises(UserError, match="no release to roll back"):
        rollback(config, "stable")
    with pytest.raises(UserError, match="no release 3"):
        show_release(config, 3)
    with pytest.raises(UserError, match="run `edgeloop release init`"):
        list_releases(release_config(tmp_path / "empty"))
    tampered = candidate(tmp_path, 2)
    (tampered / "model.onnx").write_bytes(tiny_onnx(3))
    with pytest.raises(UserError, match="model"):
        publish(config, tampered, "canary")
    assert list_releases(config) == []


def test_promote_and_rollback_move_only_the_pointer_and_devices_follow(repo, tmp_path) -> None:
    config, root = repo
    for seed in (1, 2, 3):
        publish(config, candidate(tmp_path, seed), "canary")
    bundles = bundle_files(config)
    with tamper_server(config.repository) as server:
        move = promote(config, 2, "stable")
        assert (move.from_version, move.to_version) == (None, 2)
        assert fetch(server.url, tmp_path / "stable", "stable", root=root).model_path.read_bytes() == tiny_onnx(2)
        assert rollback(config, "canary").to_version == 2  # the version before the current one
        assert rollback(config, "canary").to_version == 1  # and further back
        assert fetch(server.url, tmp_path / "canary", root=root).version == 1
        assert rollback(config, "canary", to=3).to_version == 3
        device = fetch(server.url, tmp_path / "canary", current=1)
        assert (device.version, device.model_path.read_bytes()) == (3, tiny_onnx(3))
        with pytest.raises(UserError, match="no earlier release"):
            rollback(config, "stable")
    assert bundle_files(config) == bundles  # no bundle bytes were added
    events = [json.loads(line) for line in config.history_file.read_text().splitlines()]
    assert [(e["event"], e["channel"], e["to"]) for e in events][-4:] == [
        ("promote", "stable", 2), ("rollback", "canary", 2), ("rollback", "canary", 1), ("rollback", "canary", 3)]


def test_list_and_show(repo, tmp_path) -> None:
    config, _ = repo
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\n")
    publish(config, candidate(tmp_path, 1), "canary", {"dvc.lock": lock})
    publish(config, candidate(tmp_path, 2), "canary")
    promote(config, 1, "stable")
    releases = list_releases(config)
    assert [(r.version, r.channels) for r in releases] == [(1, ["stable"]), (2, ["canary"])]
    assert releases[0].metrics["f1_macro"] == 0.91 and releases[0].data_hash == "d" * 64
    shown = show_release(config, 1)
    assert shown["candidate"] == "cand-000000000001" and shown["channels"] == ["stable"]
    assert shown["gate"]["passed"] is True and shown["gate"]["rules"][0]["name"] == "quality_floor"
    assert set(shown["files"]) == {"model.onnx", "manifest.json", "dvc.lock"}
    assert shown["files"]["dvc.lock"]["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_refresh_resigns_timestamp_and_devices_accept_it(repo, tmp_path) -> None:
    config, root = repo
    publish(config, candidate(tmp_path, 1), "canary")
    before = LocalRepository(config)
    report = refresh(config)
    assert report["resigned"] == ["timestamp"] and not report["root_near_expiry"]
    assert report["timestamp"]["version"] == before.timestamp().version + 1
    assert report["targets"]["version"] == before.targets().version
    forced = refresh(config, force=True)
    assert forced["resigned"] == ["targets", "snapshot", "timestamp"]
    with tamper_server(config.repository) as server:
        assert fetch(server.url, tmp_path / "device", root=root).version == 1


def test_key_files_are_private_and_an_env_signer_uri_replaces_them(repo, tmp_path, monkeypatch) -> None:
    config, _ = repo
    for folder in (config.root_key, config.online_keys):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for key in folder.iterdir():
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
    keyid = LocalRepository(config).root().roles["targets"].keyids[0]
    moved = tmp_path / "hsm-stand-in.pem"
    shutil.move(key_file(config, "targets", keyid), moved)
    with pytest.raises(UserError, match="no private key for the targets role"):
        publish(config, candidate(tmp_path, 1), "canary")
    monkeypatch.setenv(env_var("targets"), f"file2:{moved}")
    assert publish(config, candidate(tmp_path, 1), "canary").version == 1
    snapshot_keyid = LocalRepository(config).root().roles["snapshot"].keyids[0]
    monkeypatch.setenv(env_var("targets"), f"file2:{key_file(config, 'snapshot', snapshot_keyid)}")
    with pytest.raises(UserError, match="targets signer"):  # a key, but not the one root lists
        publish(config, candidate(tmp_path, 2), "canary")


def test_rollback_default_survives_a_crash_between_commit_and_history(repo, tmp_path) -> None:
    config, _ = repo
    for seed in (1, 2, 3):
        publish(config, candidate(tmp_path, seed), "canary")
    lines = config.history_file.read_text().splitlines()
    config.history_file.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # last line lost, torn
    assert rollback(config, "canary").to_version == 2
    events = [json.loads(line) for line in config.history_file.read_text().splitlines()[-2:]]
    assert [(e["event"], e["to"]) for e in events] == [("recovered", 3), ("rollback", 2)]


@pytest.mark.parametrize("role", ["root", "snapshot", "timestamp"])
def test_rotated_keys_are_followed_by_devices(repo, tmp_path, role) -> None:
    config, root = repo
    publish(config, candidate(tmp_path, 1), "canary")
    with tamper_server(config.repository) as server:
        assert fetch(server.url, tmp_path / "device", root=root).version == 1
        before = LocalRepository(config).root().roles[role].keyids
        report = rotate_key(config, role)
        assert report["root_version"] == 2 and report["old_keyids"] == before
        publish(config, candidate(tmp_path, 2), "canary")
        assert fetch(server.url, tmp_path / "device", current=1).version == 2
        assert fetch(server.url, tmp_path / "fresh", root=root).version == 2
    assert [p.name.split("-")[0] for p in config.key_dir(role).glob(f"{role}-*.pem")] == [role]


def test_verify_repository_reports_each_channel(repo, tmp_path) -> None:
    config, _ = repo
    publish(config, candidate(tmp_path, 1), "canary")
    promote(config, 1, "stable")
    with tamper_server(config.repository) as server:
        url = server.url
        report = verify_repository(config.metadata_dir / "1.root.json", f"{url}/metadata", f"{url}/targets")
    assert {name: c["version"] for name, c in report["channels"].items()} == {"canary": 1, "stable": 1}
    assert report["channels"]["canary"]["model_sha256"] == hashlib.sha256(tiny_onnx(1)).hexdigest()
    assert report["timestamp"]["version"] == 3


def test_cli_release_commands(tmp_path) -> None:
    from edgeloop.cli import app

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    cand = candidate(tmp_path / "data", 1, name="candidate")
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, ["release", *args, "--root", str(tmp_path)], catch_exceptions=True)
        if isinstance(result.exception, UserError):
            return result, str(result.exception)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result, result.output

    assert "publish" in runner.invoke(app, ["release", "--help"]).output
    run("init")
    _, out = run("publish")
    assert "release 1" in out and str(cand) in out
    run("promote", "1", "--to", "stable")
    _, out = run("list")
    assert "stable" in out and "canary" in out and "0.91" in out
    _, out = run("show", "1")
    assert "cand-000000000001" in out and "quality_floor" in out
    _, out = run("verify")
    assert "verified" in out and "stable" in out
    _, out = run("refresh")
    assert "timestamp" in out
    _, out = run("rollback", "--channel", "stable")
    assert "no earlier release" in out
    _, out = run("show", "9")
    assert "no release 9" in out
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert (tmp_path / params["release"]["repository"] / "metadata" / "timestamp.json").is_file()
    assert os.path.isdir(tmp_path / params["release"]["online_keys"])


@pytest.mark.parametrize(
    "through_prefect", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["direct", "prefect-flow"]
)
def test_cli_promote_refuses_an_unknown_channel_unless_created(tmp_path, request, through_prefect) -> None:
    """`edgeloop release promote N --to stabel` as a user runs it (a real process): refused in one line that
    lists the channels, exit 2, no traceback, nothing moved; `--create` makes the channel. With
    PREFECT_API_URL set the move runs as the Prefect ``promote`` flow, and the refusal still comes first."""
    import subprocess
    import sys

    from edge.contracts.layout import Paths
    from flows.loop.log import read_decisions
    from flows.params import load_params
    from flows.releases import ReleaseConfig, list_channels

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    paths = Paths.at(tmp_path)
    config = ReleaseConfig.from_params(load_params(paths.params), paths)
    init_repository(config)
    publish(config, candidate(tmp_path, 1), "canary")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if through_prefect:
        request.getfixturevalue("prefect_server")
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = PREFECT_API_URL.value()

    def edgeloop(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "edgeloop"), "release", "promote", *args, "--root", str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    refused = edgeloop("1", "--to", "stabel")
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in refused.stderr + refused.stdout
    assert "channel 'stabel' does not exist (channels: canary, stable)" in lines[0] and "--create" in lines[0]
    assert list_channels(config) == {"canary": 1}
    made = edgeloop("1", "--to", "stabel", "--create")
    assert made.returncode == 0, made.stderr
    assert "channel 'stabel': - -> 1" in made.stdout
    assert list_channels(config) == {"canary": 1, "stabel": 1}
    logged = read_decisions(tmp_path / "data/loop/decisions.jsonl", source="manual")
    assert [(e["kind"], e["observed"]["channel"]) for e in logged] == [("promote", "stabel")]


def test_cli_publish_to_an_unknown_channel_needs_create(tmp_path) -> None:
    """`release publish --channel stabel` is refused (one line, exit 2, nothing published); `--create` makes
    it; channels params.yaml names (release.channel, the promotion's) never need it."""
    from edge.contracts.layout import Paths
    from edgeloop.cli import app
    from flows.params import load_params
    from flows.releases import ReleaseConfig, list_channels, list_releases

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    paths = Paths.at(tmp_path)
    config = ReleaseConfig.from_params(load_params(paths.params), paths)
    init_repository(config)
    folder = candidate(tmp_path, 1)
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(app, ["release", "publish", str(folder), *args, "--root", str(tmp_path)])

    refused = run("--channel", "stabel")
    assert refused.exit_code != 0 and "channel 'stabel' does not exist" in str(refused.exception)
    assert list_releases(config) == [] and list_channels(config) == {}
    assert run("--channel", "stabel", "--create").exit_code == 0
    assert list_channels(config) == {"stabel": 1}
    assert run("--channel", "stable").exit_code == 0  # declared in params.yaml (loop.promotion.to_channel)
    assert list_channels(config) == {"stabel": 1, "stable": 1}
