"""Signed runner policies on a real release repository: publish, show, roll back, history, the CLI.

A real LocalRepository (real ed25519 keys, a real signed release on canary), the real python-tuf client
(``tuf.ngclient.Updater`` over HTTP on 127.0.0.1) for the signed ``config/<channel>.json`` target, the real
``release verify``, real ``edgeloop`` processes for what a user sees (one-line errors, --json), and a real
S3 server (moto on 127.0.0.1) for the bucket a second publisher host carries on from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tuf.ngclient import Updater
from typer.testing import CliRunner

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.runner_policy import parse_policy, policy_target
from edgeloop.cli import app
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import make_candidate, release_config
from edgeloop.testkit.s3 import S3Server, s3_server_fixture  # noqa: F401
from flows.params import load_params
from flows.releases import ReleaseConfig, init_repository, list_releases, publish, serve_directory, verify_repository
from flows.releases.mirror import Mirror
from flows.releases.repository import LocalRepository
from flows.releases.runner_config import (
    current_policy,
    policy_history,
    policy_version,
    publish_policy,
    publish_policy_outcome,
    rollback_policy,
)
from flows.releases.verify import VerificationError

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with params.yaml and a release repository: release 1 on canary."""
    root = tmp_path_factory.mktemp("cfg")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    config = _config(root)
    init_repository(config)
    publish(config, make_candidate(root / "cand1", _small_onnx(), "cand-000000000001"), "canary", create=True)
    return root


def _small_onnx() -> bytes:
    """A real ONNX model (two features -> one score) made with onnx.helper: no scikit-learn import."""
    import numpy as np
    from onnx import TensorProto, checker, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((2, 1), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["score"])], "policy-test",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    checker.check_model(model)
    return model.SerializeToString()


def _config(root: Path) -> ReleaseConfig:
    paths = Paths.at(root)
    return ReleaseConfig.from_params(load_params(paths.params), paths)


@pytest.fixture()
def config(project: Path, tmp_path: Path) -> ReleaseConfig:
    """A fresh copy of the module's repository (keys included), so each test starts from release 1 alone."""
    root = tmp_path / "p"
    shutil.copytree(project, root)
    return _config(root)


def _targets_version(config: ReleaseConfig) -> int:
    return LocalRepository(config).targets().version


def test_publish_signs_the_policy_and_a_device_client_verifies_it(config: ReleaseConfig, tmp_path: Path) -> None:
    before = _targets_version(config)
    policy = publish_policy(config, "canary", {"upload": {"random_rate": 0.2}, "drift": {"window_rows": 3000}},
                            {"press-2": {"upload": {"random_rate": 0.5}}}, note="more ground truth")
    assert (policy.version, policy.content_of) == (1, None)
    assert _targets_version(config) == before + 1
    assert current_policy(config, "canary") == policy
    info = LocalRepository(config).targets().targets[policy_target("canary")]
    assert info.custom == {"config_version": 1}

    client = tmp_path / "client"
    client.mkdir()
    (client / "root.json").write_bytes((config.metadata_dir / "1.root.json").read_bytes())
    with serve_directory(config.repository) as url:
        updater = Updater(str(client), f"{url}/metadata/", str(client / "dl"), f"{url}/targets/",
                          bootstrap=(client / "root.json").read_bytes())
        updater.refresh()
        target = updater.get_targetinfo(policy_target("canary"))
        assert target is not None and target.custom == {"config_version": 1}
        (client / "dl").mkdir()
        fetched = parse_policy(Path(updater.download_target(target)).read_bytes())
        report = verify_repository(config.metadata_dir / "1.root.json", f"{url}/metadata/", f"{url}/targets/")
        stored = LocalRepository(config).target_file(info)
        stored.write_bytes(stored.read_bytes().replace(b"0.5", b"0.9"))  # tampered where it is served
        with pytest.raises(VerificationError, match="runner policy of channel 'canary' does not verify"):
            verify_repository(config.metadata_dir / "1.root.json", f"{url}/metadata/", f"{url}/targets/")
    assert fetched.settings == {"upload": {"random_rate": 0.2}, "drift": {"window_rows": 3000}}
    assert fetched.for_device("press-2")["upload"]["random_rate"] == 0.5
    assert fetched.note == "more ground truth"
    assert report["channels"]["canary"]["version"] == 1  # release verify still passes beside a config target
    assert report["policies"]["canary"] == {"version": 1, "content_of": None, "bytes": info.length, "devices": 1}
    assert [r.version for r in list_releases(config)] == [1]  # the catalog ignores config targets
    events = [json.loads(line) for line in config.history_file.read_text().splitlines()]
    assert events[-1]["event"] == "config" and events[-1]["version"] == 1 and events[-1]["content_of"] is None


@pytest.mark.parametrize(("settings", "devices", "named"), [
    ({"upload": {"random_rate": 3}}, None, "settings.upload.random_rate"),
    ({"hub": {"url": "http://evil"}}, None, "settings.hub.url"),
    ({"drift": {"moderate_psi": 0.5, "major_psi": 0.2}}, None, "settings.drift.moderate_psi"),
    ({"upload": {"random_rate": 0.1}}, {"press-2": {"upload": {"random_rate": -1}}},
     "devices.press-2.upload.random_rate"),
    ({"identity": {"device_id": "x"}}, None, "settings.identity"),
])
def test_an_invalid_policy_is_refused_in_one_line_and_nothing_is_signed(
        config: ReleaseConfig, settings: dict, devices: dict | None, named: str) -> None:
    publish_policy(config, "canary", {"upload": {"random_rate": 0.05}})
    before, history = _targets_version(config), config.history_file.read_bytes()
    with pytest.raises(UserError) as caught:
        publish_policy(config, "canary", settings, devices)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert _targets_version(config) == before
    assert config.history_file.read_bytes() == history
    assert current_policy(config, "canary").version == 1  # type: ignore[union-attr]


def test_same_content_publishes_nothing_and_unknown_channels_need_create(config: ReleaseConfig) -> None:
    first = publish_policy(config, "canary", {"upload": {"random_rate": 0.05}})
    before = _targets_version(config)
    again = publish_policy_outcome(config, "canary", {"upload": {"random_rate": 0.05}}, note="same again")
    assert not again.published and again.policy == first and _targets_version(config) == before
    with pytest.raises(UserError, match="does not exist"):
        publish_policy(config, "canry", {"upload": {"random_rate": 0.05}})
    made = publish_policy(config, "lab", {}, create=True)
    assert made.version == 1 and current_policy(config, "lab") == made


def test_rollback_republishes_old_content_under_a_new_version(config: ReleaseConfig) -> None:
    v1 = publish_policy(config, "canary", {"upload": {"random_rate": 0.05}}, note="base")
    v2 = publish_policy(config, "canary", {"upload": {"random_rate": 0.4}}, {"press-2": {"drift": {"min_rows": 50}}})
    v3 = rollback_policy(config, "canary")
    assert (v3.version, v3.content_of) == (3, 1)
    assert (v3.settings, v3.devices) == (v1.settings, v1.devices)
    assert current_policy(config, "canary") == v3
    with pytest.raises(UserError, match="no earlier runner policy"):
        rollback_policy(config, "canary")  # like a channel: a second rollback walks back, and there is nothing
    v4 = rollback_policy(config, "canary", to=2)
    assert (v4.version, v4.content_of, v4.devices) == (4, 2, v2.devices)
    assert policy_version(config, "canary", 2) == v2
    history = policy_history(config, "canary")
    assert [(r["version"], r["content_of"], r["current"]) for r in history] == [
        (1, None, False), (2, None, False), (3, 1, False), (4, 2, True)]
    assert history[0]["note"] == "base"
    with pytest.raises(UserError, match="no runner policy version 9"):
        rollback_policy(config, "canary", to=9)


def test_a_corrupt_stored_version_is_refused(config: ReleaseConfig) -> None:
    publish_policy(config, "canary", {"upload": {"random_rate": 0.05}})
    publish_policy(config, "canary", {"upload": {"random_rate": 0.3}})
    stored = next((config.targets_dir / "config").glob("*.canary.json"))
    old = [p for p in (config.targets_dir / "config").glob("*.canary.json") if b'"version":1' in p.read_bytes()][0]
    old.write_bytes(old.read_bytes().replace(b"0.05", b"0.99"))
    before = _targets_version(config)
    with pytest.raises(UserError, match="corrupt"):
        rollback_policy(config, "canary", to=1)
    assert _targets_version(config) == before and stored.exists()


def test_a_version_committed_without_its_history_line_is_recovered(config: ReleaseConfig) -> None:
    publish_policy(config, "canary", {"upload": {"random_rate": 0.05}})
    lines = config.history_file.read_text().splitlines()
    config.history_file.write_text("\n".join(lines[:-1]) + "\n")  # as if the publish crashed before logging
    publish_policy(config, "canary", {"upload": {"random_rate": 0.3}})
    assert [(r["version"], r["recovered"]) for r in policy_history(config, "canary")] == [(1, True), (2, False)]
    assert rollback_policy(config, "canary").content_of == 1


# --- the CLI, as a user runs it ---------------------------------------------------------------------------

def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, "config", *args, "--root", str(root)], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "HOME": str(root)})


def _in_process(root: Path, *args: str) -> str:
    """The command in this process (Typer's runner): for what succeeds, without paying for a process start."""
    result = CliRunner().invoke(app, ["config", *args, "--root", str(root)], env={"COLUMNS": "100"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.mark.slow
def test_cli_publish_show_history_rollback_and_one_line_errors(config: ReleaseConfig) -> None:
    root = config.repository.parent.parent
    good = root / "policy.yaml"
    good.write_text("settings:\n  upload:\n    random_rate: 0.2\ndevices:\n  press-2:\n    upload:\n"
                    "      random_rate: 0.6\n")
    assert "version 1" in _in_process(root, "publish", "--channel", "canary", str(good), "--note", "drift on press-2")
    assert "nothing published" in _in_process(root, "publish", "--channel", "canary", str(good))
    flat = root / "flat.json"
    flat.write_text(json.dumps({"upload": {"random_rate": 0.1}}))
    assert "version 2" in _in_process(root, "publish", "--channel", "canary", str(flat))

    bad_yaml = root / "bad.yaml"
    bad_yaml.write_text("settings:\n  upload:\n    random_rate: [0.2\n")
    bad_value = root / "bad_value.yaml"
    bad_value.write_text("upload:\n  random_rate: 7\n")
    for args, expected in ((("publish", "--channel", "canary", str(bad_yaml)), "line 4"),
                           (("publish", "--channel", "canary", str(bad_value)), "settings.upload.random_rate"),
                           (("show", "--channel", "canary", "--version", "9"), "no runner policy version 9")):
        failed = _run(root, *args)
        assert failed.returncode == 2, failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in failed.stderr

    shown = json.loads(_run(root, "show", "--channel", "canary", "--version", "1", "--json").stdout)
    assert shown["version"] == 1 and shown["note"] == "drift on press-2"
    assert shown["devices"] == {"press-2": {"upload": {"random_rate": 0.6}}}
    rolled = _in_process(root, "rollback", "--channel", "canary")
    assert "version 3" in rolled and "version 1" in rolled
    history = json.loads(_run(root, "history", "--channel", "canary", "--json").stdout)
    assert [(r["version"], r["content_of"]) for r in history] == [(1, None), (2, None), (3, 1)]
    table = _in_process(root, "show", "--channel", "canary")
    assert "press-2" in table and "upload.random_rate" in table and "version 3" in table
    assert "--note" in _in_process(root, "publish", "--help")
    verified = CliRunner().invoke(app, ["release", "verify", "--root", str(root)], env={"COLUMNS": "120"})
    assert verified.exit_code == 0, (verified.output, verified.exception)
    assert "runner policies" in verified.output
    row = next(line for line in verified.output.splitlines() if line.strip("│ ").startswith("canary") and "v1" in line)
    assert row.split("│")[2].strip() == "3"  # version 3, the content of v1, one device override


# --- the bucket: pushed like every release operation, and another host carries on from it ----------------

@pytest.mark.slow  # the moto server (s3_server)
def test_policies_reach_the_bucket_and_another_host_rolls_back_from_it(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket(public_read=True)
    config = replace(release_config(tmp_path / "publisher"),
                     mirror=Mirror(f"s3://{bucket}/releases", s3_server.endpoint_url))
    init_repository(config)
    publish_policy(config, "canary", {"upload": {"random_rate": 0.05}}, note="base")
    publish_policy(config, "canary", {"upload": {"random_rate": 0.4}})
    assert len(s3_server.keys(bucket, "releases/targets/config/")) == 2

    other_host = replace(config, repository=tmp_path / "other-host" / "releases")  # same keys, same bucket
    rolled = rollback_policy(other_host, "canary")  # pulls the bucket, finds version 1's bytes in it
    assert (rolled.version, rolled.content_of, rolled.settings) == (3, 1, {"upload": {"random_rate": 0.05}})
    assert current_policy(config, "canary") is not None
    assert [r["version"] for r in policy_history(other_host, "canary")] == [1, 2, 3]
    client = tmp_path / "device"
    client.mkdir()
    url = s3_server.http_url(bucket, "releases")
    updater = Updater(str(client), f"{url}/metadata/", str(client / "dl"), f"{url}/targets/",
                      bootstrap=(config.metadata_dir / "1.root.json").read_bytes())
    updater.refresh()
    target = updater.get_targetinfo(policy_target("canary"))
    assert target is not None and target.custom == {"config_version": 3}  # devices see the other host's rollback
