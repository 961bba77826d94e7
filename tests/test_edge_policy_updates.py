"""The signed runner policy on a real device: one python-tuf repository (flows.releases) served by one real
hub on 127.0.0.1 for the module, real runners (edge.runner.Runner in-process, driven by ``poll_now`` and
``heartbeat_now`` instead of waiting on their loops), real onnxruntime models.

Covers: a policy published to canary (flows.releases.runner_config.publish_policy) is verified, applied
live (upload policy, batch size, drift window, watch, intervals), shows in the heartbeat the hub stores and
in ``edge-runner status``, and is applied again after a restart with no network; a pinned key keeps its
local value; refusals (schema-invalid values signed past the cloud's check, a privacy loosening, tampered
target bytes, a replayed older version, expired metadata) leave the policy in force as it was, produce a
``config_rejected`` event and are not fetched again; the upload byte budget holds per day against the hub.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.contracts.runner_policy import RunnerPolicy, policy_bytes, policy_target
from edge.runner import Runner
from edgeloop.testkit.hub import HubHandle, running_hub
from edgeloop.testkit.runner_world import ReleaseWorld, runner_config, site_data, wait_for
from flows.releases.repository import LocalRepository, repository_lock
from flows.releases.runner_config import current_policy, publish_policy
from hub.registry import add_device

pytestmark = pytest.mark.slow  # a hub, a repository and runners

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReleaseWorld, HubHandle, str]]:
    w = ReleaseWorld(tmp_path_factory.mktemp("policy-world"))
    w.publish(1)  # runners serve a model, so the drift window and the watch have something to act on
    with running_hub(w.hub_root) as hub:
        yield w, hub, add_device(hub.app.state.sessions, "press-1", "canary")


def make_runner(world: tuple[ReleaseWorld, HubHandle, str], folder: Path, **sections: dict[str, Any]) -> Runner:
    w, hub, token = world
    return Runner(load_config(runner_config(folder, hub.url, token, w.root_bytes, **sections), environ={}))


def sign_directly(w: ReleaseWorld, policy: RunnerPolicy) -> None:
    """Sign ``policy`` as the channel's target with the repository's own keys, past the cloud's checks
    (what a compromised or buggy publisher could do)."""
    with repository_lock(w.config):
        repo = LocalRepository(w.config)
        repo.prepare_signers("targets", "snapshot", "timestamp")
        info = repo.store_target(policy_target(policy.channel), data=policy_bytes(policy),
                                 custom={"config_version": policy.version})
        with repo.edit_targets() as edited:
            edited.targets[info.path] = info
        repo.commit()


def rejected(runner: Runner) -> list[dict[str, Any]]:
    return [e for e in runner.state.events() if e["event"] == "config_rejected"]


def fleet_device(hub: HubHandle) -> dict[str, Any]:
    fleet = httpx.get(f"{hub.url}/v1/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"}).json()
    return next(d for d in fleet["devices"] if d["device_id"] == "press-1")


def test_a_published_policy_is_applied_live_heartbeated_and_restored(world, tmp_path: Path) -> None:
    w, hub, _ = world
    runner = make_runner(world, tmp_path / "device", policy={"pinned": ["upload.uncertain_margin"]})
    try:
        assert runner.poll_now().kind == "activated" and runner.model_version is not None
        policy = publish_policy(w.config, "canary", {
            "upload": {"random_rate": 0.3, "batch_rows": 50, "uncertain_margin": 0.4, "daily_byte_budget": 10**6},
            "drift": {"window_rows": 800, "min_rows": 100, "major_psi": 0.5},
            "watch": {"accuracy_floor": 0.42}, "releases": {"poll_interval_s": 7}, "hub": {"heartbeat_interval_s": 9},
        }, devices={"press-1": {"upload": {"random_rate": 0.35}}, "press-2": {"upload": {"random_rate": 0.9}}})
        runner.poll_now()
        assert runner.policy.version == policy.version
        # the parts run with the new values: upload filter, uploader, drift window, watch, intervals
        assert runner.truth.policy.random_rate == 0.35  # this device's override
        assert runner.truth.policy.uncertain_margin == 0.1  # pinned locally
        assert runner.uploader.batch_rows == 50 and runner.uploader.daily_byte_budget == 10**6
        assert runner.slot.current is not None and runner.slot.current.drift.window_rows == 800
        assert runner.monitor.watch is not None and runner.monitor.watch.rules.accuracy_floor == 0.42
        assert runner.updates.poll_wait() == 7 and runner.config.hub.heartbeat_interval_s == 9
        applied = json.loads((runner.config.state_dir / "policy" / "applied.json").read_text())
        assert applied["version"] == policy.version and applied["kept"] == {"upload.uncertain_margin": 0.1}
        assert "uncertain_margin" not in applied["settings"]["upload"]
        # the heartbeat carries it and the hub shows it
        assert runner.heartbeat_now()
        device = fleet_device(hub)
        assert (device.get("last_heartbeat") or {}).get("state", {}).get("config_version") == policy.version
        if "config_version" in device:
            assert device["config_version"] == policy.version
        assert runner.health()["config_version"] == policy.version
        # a poll with nothing new downloads nothing: the refreshed metadata names the applied version
        assert runner.updates.fetch_policy(runner.policy._skip).data is None
        assert runner.health()["config_channel"] == "canary"
    finally:
        runner.stop()
    # edge-runner status (a real command, daemon stopped) shows the applied version
    shown = subprocess.run([EDGE_RUNNER, "status", "--config", str(runner.config.source), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["config_version"] == policy.version
    text = subprocess.run([EDGE_RUNNER, "status", "--config", str(runner.config.source)], capture_output=True,
                          text=True, timeout=60).stdout
    assert f"version {policy.version} of channel canary" in text and "upload.uncertain_margin kept 0.1" in text
    # restarted with the hub gone: applied.json is applied again on top of runner.toml, no network needed
    config = load_config(runner.config.source, environ={})
    again = Runner(replace(config, hub=replace(config.hub, url="http://127.0.0.1:9")))
    try:
        assert again.policy.version == policy.version and again.config.upload.random_rate == 0.35
        assert again.truth.policy.random_rate == 0.35 and again.config.drift.window_rows == 800
    finally:
        again.stop()


def test_refused_policies_leave_the_one_in_force(world, tmp_path: Path) -> None:
    from flows.releases import Expiry, refresh

    w, _, _ = world
    runner = make_runner(world, tmp_path / "device", upload={"local_only": ["operator"]})
    try:
        first = publish_policy(w.config, "canary", {"upload": {"random_rate": 0.11}})
        runner.poll_now()
        good = publish_policy(w.config, "canary", {"upload": {"random_rate": 0.12, "local_only": ["operator", "x"]}})
        runner.poll_now()
        assert runner.policy.version == good.version and runner.truth.policy.random_rate == 0.12

        def holds() -> None:
            assert runner.policy.version == good.version and runner.config.upload.random_rate == 0.12
            assert runner.truth.policy.random_rate == 0.12 and runner.config.upload.local_only == ("operator", "x")
            assert runner.truth._local_only == ("operator", "x")  # what rows are built with (edge.feedback)
            applied = json.loads((runner.config.state_dir / "policy" / "applied.json").read_text())
            assert applied["version"] == good.version

        # schema-invalid values, signed past the cloud's own check
        invalid = good.version + 1
        sign_directly(w, RunnerPolicy("canary", invalid, {"upload": {"random_rate": 5}}))
        runner.poll_now()
        holds()
        last = rejected(runner)[-1]
        assert last["version"] == str(invalid) and "upload.random_rate" in last["detail"]
        runner.poll_now()  # remembered: not fetched or reported again
        assert len([e for e in rejected(runner) if e["version"] == str(invalid)]) == 1
        # a remote attempt to loosen a local-only rule
        loose = publish_policy(w.config, "canary", {"upload": {"local_only": []}})
        runner.poll_now()
        holds()
        assert rejected(runner)[-1]["version"] == str(loose.version)
        assert "upload.local_only" in rejected(runner)[-1]["detail"]
        # tampered target bytes in the repository
        tampered = publish_policy(w.config, "canary", {"upload": {"random_rate": 0.13}})
        stored = LocalRepository(w.config).target_file(LocalRepository(w.config).targets().targets[
            policy_target("canary")])
        original = stored.read_bytes()
        stored.write_bytes(original.replace(b"0.13", b"0.99"))
        try:
            runner.poll_now()
        finally:
            stored.write_bytes(original)
        holds()
        assert rejected(runner)[-1]["version"] == str(tampered.version)
        assert "does not verify" in rejected(runner)[-1]["detail"]
        # a replayed older version, signed again
        sign_directly(w, first)
        runner.poll_now()
        holds()
        assert rejected(runner)[-1]["version"] == str(first.version) and "replay" in rejected(runner)[-1]["detail"]
        # expired metadata
        refresh(replace(w.config, expiry_days=Expiry(timestamp=-1.0)))
        try:
            runner.poll_now()
            holds()
            assert rejected(runner)[-1]["version"] is None and "Expired" in rejected(runner)[-1]["detail"]
        finally:
            refresh(w.config, force=True)
        status = runner.state_report()["policy"]
        assert status["version"] == good.version and str(invalid) in status["refused"]
        # the refusals travel to the hub as runner events with the next heartbeat
        assert runner.heartbeat_now()
        sent = (fleet_device(world[1]).get("last_heartbeat") or {}).get("state", {}).get("events", [])
        kinds = {(e["kind"], e["version"]) for e in sent}
        assert {("config_rejected", str(v)) for v in (invalid, loose.version, tampered.version)} <= kinds, sent
    finally:
        runner.stop()
    assert current_policy(w.config, "canary") is not None


def test_the_upload_budget_holds_per_day_and_nothing_is_lost(world, tmp_path: Path) -> None:
    """An uploader with a small daily budget and its own clock, against the module's hub."""
    from edge.ground_truth import UploadColumns, build_row, encode_rows
    from edge.hub_client import HubClient
    from edge.inference import Predictor
    from edge.spool import Spool, SpoolEntry
    from edge.upload_filter import UploadPolicy, select
    from edge.uploader import Uploader
    from edgeloop.testkit.runner_world import write_candidate

    w, hub, token = world
    predictor = Predictor.from_folder(write_candidate(tmp_path / "model", 1))
    x, y = site_data(400, 5)
    policy = UploadPolicy(random_rate=1.0)
    spool = Spool(tmp_path / "spool.db", 64 * 1024 * 1024)
    rows = []
    for i, prediction in enumerate(predictor.predict_batch(x[:300], list(range(1, 301)))):
        values = [None if np.isnan(v) else float(v) for v in x[i]]
        chosen = select(policy, prediction, int(y[i]), "press-1", predictor.manifest, values)
        assert chosen is not None
        rows.append(build_row(predictor.manifest, prediction, values, int(y[i]), datetime.now(UTC), "press-1", {},
                              chosen, UploadColumns(), ()))
    spool.put([SpoolEntry(str(r["upload_reason"]), r) for r in rows])
    total = len(encode_rows(rows))
    budget = total // 3 + 1000  # about a third of the rows per day
    now = [86_400.0 * 20_000 + 100]
    client = HubClient(hub.url, "press-1", token, 10.0)
    uploader = Uploader(spool, client, tmp_path / "quarantine", batch_rows=40, daily_byte_budget=budget,
                        budget_file=tmp_path / "budget.json", clock=lambda: now[0])
    sent_per_day = []
    try:
        for _day in range(5):
            before = uploader.counters["batch_bytes"]
            while uploader.upload_once():
                pass
            sent_per_day.append(uploader.counters["batch_bytes"] - before)
            assert uploader.spent_today <= budget
            if not spool.has_backlog():
                break
            # a restart the same day keeps the day's spending (budget.json)
            again = Uploader(spool, client, tmp_path / "quarantine", batch_rows=40, daily_byte_budget=budget,
                             budget_file=tmp_path / "budget.json", clock=lambda: now[0])
            assert again.upload_once() == 0 and again.spent_today == uploader.spent_today
            now[0] += 86_400
        assert all(0 < sent <= budget for sent in sent_per_day), (sent_per_day, budget)
        assert len(sent_per_day) >= 3 and not spool.has_backlog()
        assert uploader.counters["rows_uploaded"] == 300  # nothing lost
        landed = wait_for(lambda: sorted((hub.settings.landing / "press-1").glob("*.csv")), what="landed batches")
        assert sum(p.stat().st_size for p in landed) == sum(sent_per_day)
    finally:
        spool.close()
    shutil.rmtree(tmp_path / "quarantine", ignore_errors=True)
