"""edge.policy_updates.PolicyFollower's decisions, fast: the policy bytes are handed to it directly (the
TUF fetch against a real repository is tests/test_edge_policy_updates.py).

Covers: a document for another channel, or whose version is not the signed one, is refused; refusals are
remembered across a restart (per channel) and not fetched again; a replayed older version is refused;
applied.json is applied again at start, and ignored (logged) when runner.toml changed so that it no longer
applies; ``[policy] enabled = false`` ignores both the channel's policy and applied.json.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import RunnerConfig, load_config
from edge.contracts.runner_policy import RunnerPolicy, policy_bytes
from edge.policy_updates import PolicyFollower
from edge.releases import FetchedPolicy, PolicyRejected
from edge.state import StateDir

MINIMAL = """
device_id = "press-1"
state_dir = "state"
[hub]
url = "http://127.0.0.1:9"
token_file = "token"
[releases]
trusted_root = "root.json"
"""


def config_of(folder: Path, extra: str = "") -> RunnerConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text("elt_press-1_secretsecret\n")
    os.chmod(folder / "token", 0o600)
    (folder / "root.json").write_text("{}")
    (folder / "runner.toml").write_text(MINIMAL + extra)
    return load_config(folder / "runner.toml", environ={})


class Channel:
    """What the repository serves: (signed version, document bytes), or an error to raise."""

    def __init__(self) -> None:
        self.served: tuple[int, bytes] | None = None
        self.error: Exception | None = None
        self.downloads = 0

    def serve(self, policy: RunnerPolicy, signed: int | None = None) -> None:
        self.served = (policy.version if signed is None else signed, policy_bytes(policy))

    def fetch(self, skip: Callable[[int], bool]) -> FetchedPolicy:
        if self.error is not None:
            raise self.error
        if self.served is None:
            return FetchedPolicy(None, None, 1, 0)
        version, data = self.served
        if skip(version):
            return FetchedPolicy(version, None, 1, 0)
        self.downloads += 1
        return FetchedPolicy(version, data, 2, len(data))


def follower(config: RunnerConfig, channel: Channel) -> PolicyFollower:
    f = PolicyFollower(config, StateDir(config.state_dir), channel.fetch)
    f.restore()
    return f


def events(config: RunnerConfig, kind: str = "config_rejected") -> list[dict[str, object]]:
    return [e for e in StateDir(config.state_dir).events() if e["event"] == kind]


def test_refusals_are_remembered_per_channel_and_not_fetched_again(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    channel = Channel()
    f = follower(config, channel)
    channel.serve(RunnerPolicy("stable", 1, {"upload": {"random_rate": 0.5}}))
    assert f.poll_now().kind == "rejected" and "channel stable" in f.last.detail  # type: ignore[union-attr]
    channel.serve(RunnerPolicy("canary", 2, {"upload": {"random_rate": 0.5}}), signed=3)
    assert "version 2, its signature 3" in f.poll_now().detail
    assert channel.downloads == 2 and f.config.upload.random_rate == 0.02
    f = follower(config, channel)  # restarted: version 3 is still refused, not downloaded again
    assert f.poll_now().kind == "rejected" and channel.downloads == 2
    assert [e["version"] for e in events(config)] == ["1", "3"]
    (tmp_path / "runner.toml").write_text(MINIMAL.replace('trusted_root = "root.json"',
                                                          'trusted_root = "root.json"\nchannel = "stable"'))
    stable = follower(load_config(tmp_path / "runner.toml", environ={}), channel)
    assert not stable._skip(3)  # another channel's refusals say nothing about this one's versions


def test_a_replayed_older_version_is_refused_and_the_applied_one_stays(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    channel = Channel()
    f = follower(config, channel)
    old = RunnerPolicy("canary", 1, {"upload": {"random_rate": 0.1}})
    channel.serve(old)
    assert f.poll_now().kind == "applied"
    channel.serve(RunnerPolicy("canary", 2, {"upload": {"random_rate": 0.2}}))
    assert f.poll_now().kind == "applied" and f.config.upload.random_rate == 0.2
    assert f.poll_now().kind == "unchanged" and channel.downloads == 2
    channel.serve(old)
    outcome = f.poll_now()
    assert outcome.kind == "rejected" and "replay" in outcome.detail and f.version == 2
    assert channel.downloads == 2  # an older version is never downloaded
    channel.error = PolicyRejected(3, "LengthOrHashMismatchError: hash mismatch")
    assert f.poll_now().kind == "rejected" and f.config.upload.random_rate == 0.2
    assert [e["version"] for e in events(config)] == ["1", "3"]
    assert [e["version"] for e in events(config, "config_applied")] == ["1", "2"]


def test_applied_json_is_applied_at_start_unless_runner_toml_no_longer_allows_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = config_of(tmp_path, '[upload]\nlocal_only = ["operator"]\n')
    channel = Channel()
    channel.serve(RunnerPolicy("canary", 4, {"upload": {"random_rate": 0.4, "local_only": ["operator", "x"]}}))
    f = follower(config, channel)
    assert f.poll_now().kind == "applied"
    applied = json.loads((tmp_path / "state" / "policy" / "applied.json").read_text())
    assert applied["version"] == 4 and applied["settings"]["upload"]["local_only"] == ["operator", "x"]
    assert (tmp_path / "state" / "policy" / "applied.json").stat().st_mode & 0o777 == 0o600
    again = follower(config, Channel())  # no network needed
    assert again.version == 4 and again.config.upload.random_rate == 0.4
    # runner.toml now keeps a name the policy dropped: the policy would loosen it, so it is ignored
    changed = config_of(tmp_path, '[upload]\nlocal_only = ["operator", "serial"]\n')
    with caplog.at_level(logging.ERROR, logger="edge.runner"):
        ignored = follower(changed, Channel())
    assert ignored.version is None and ignored.config.upload.random_rate == 0.02
    assert "policy 4 no longer applies on top of runner.toml (upload.local_only" in caplog.text
    off = follower(config_of(tmp_path, "[policy]\nenabled = false\n"), channel)
    assert off.version is None and off.poll_now().kind == "disabled" and off.config.upload.random_rate == 0.02
