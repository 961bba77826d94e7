"""The monitor's adaptive-collection step on a real project: a real hub (uvicorn on 127.0.0.1) with devices
heartbeating over HTTP, edge batches in the landing zone, a real signed release repository, and the real
``monitor`` flow on the session's Prefect server.

One scenario, pass by pass: a drifting device gets a raised random rate in its channel's signed runner
policy (published once, logged as a ``collection`` decision with what it saw); a pass with nothing new
publishes and logs nothing; a halted channel gets nothing (logged, not fired); once a release trained after
the raise is stable and the device runs it without drift, it goes back to base in the next version; and
a heartbeat whose rolling accuracy fell raises the device again with no PSI at all (the default trigger).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from edge.contracts.layout import Paths
from edge.contracts.manifest import Manifest
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE
from edge.contracts.runner_policy import parse_policy, policy_bytes, policy_target
from edgeloop.testkit.hub import running_hub
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.releases import make_candidate, tiny_onnx
from edgeloop.testkit.synthetic import make_rows
from flows.loop.halts import halt_channel, halts_path, resume_channel
from flows.loop.log import read_decisions
from flows.params import load_params
from hub.registry import add_device
from simulator.batches import write_batch

pytestmark = pytest.mark.integration


def make_project(root: Path) -> Path:
    raw = override(repo_params_raw(), {
        "loop.monitor.drift_device_share": 1.0,  # one drifting device of two: the retrain trigger stays quiet
        "loop.collection.device_daily_bytes": 10**12, "loop.collection.fleet_daily_bytes": 10**13,
        "loop.collection.drift_psi": 0.25,  # raise by PSI here (off by default; rolling accuracy: test_loop_collection)
    })
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    model = root / "data/model" / MODEL_FILE  # trained just now: the nightly slot is not due
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(tiny_onnx())
    return root


def release(root: Path, name: str) -> int:
    """Publish a small real release to canary, built now (``created``: after any raise so far)."""
    from flows.releases import ReleaseConfig, init_repository, is_initialised, publish

    config = ReleaseConfig.from_params(load_params(root / "params.yaml"), Paths.at(root))
    if not is_initialised(config):
        init_repository(config)
    folder = make_candidate(root / "candidates" / name, tiny_onnx(), name)
    manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    (folder / MANIFEST_FILE).write_text(replace(manifest, created=now).to_json())
    return publish(config, folder, "canary").version


def land(root: Path, device: str, version: str, seed: int) -> None:
    """400 edge rows: 20 mistakes (p = 1), the rest sampled at random (p = 0.02)."""
    schema = load_params(root / "params.yaml").schema
    frame = make_rows(schema, device, 400, seed)
    wrong = np.arange(400) < 20
    frame["prediction"] = np.where(wrong, 1 - frame[schema.label.name].astype(int), frame[schema.label.name])
    frame["model_version"] = version
    frame["probabilities"] = "[0.5, 0.5]"
    frame["upload_reason"] = np.where(wrong, "labelled", "random")
    frame["inclusion_probability"] = np.where(wrong, 1.0, 0.02)
    write_batch(root / "data" / "uploads", device, frame)


def beat(hub, device: str, token: str, psi: float, version: str, rolling: tuple[float, int] | None = None) -> None:
    body = {"channel": "canary", "health": "ok", "model_version": version, "drift": {"torque_nm": psi},
            "clock": datetime.now(UTC).isoformat()}
    if rolling is not None:  # the runner's accuracy on its last labels, and how many labels it has had
        body |= {"rolling_accuracy": rolling[0], "counters": {"feedback": rolling[1]}}
    got = httpx.post(f"{hub.url}/v1/devices/{device}/heartbeat", json=body,
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 200, got.text


def signed_policy(root: Path) -> dict:
    """The canary policy, checked against the length and hashes the signed targets metadata gives it."""
    from flows.releases import ReleaseConfig
    from flows.releases.repository import LocalRepository
    from flows.releases.runner_config import current_policy

    config = ReleaseConfig.from_params(load_params(root / "params.yaml"), Paths.at(root))
    policy = current_policy(config, "canary")
    assert policy is not None
    signed = LocalRepository(config).targets().targets[policy_target("canary")]
    signed.verify_length_and_hashes(policy_bytes(policy))  # raises when the bytes are not what was signed
    assert parse_policy(policy_bytes(policy)) == policy
    return {"version": policy.version, "devices": policy.devices, "settings": policy.settings}


def collection_log(root: Path) -> list[dict]:
    return read_decisions(root / "data/loop/decisions.jsonl", kind="collection")


def test_the_monitor_raises_a_drifting_device_and_brings_it_back_down(prefect_server, tmp_path):
    from flows.orchestration.monitor import monitor

    root = make_project(tmp_path / "p")
    assert release(root, "cand-000000000001") == 1
    for device, seed in (("press-1", 1), ("press-2", 2)):
        land(root, device, "1", seed)
    with running_hub(root) as hub:
        tokens = {d: add_device(hub.app.state.sessions, d, "canary") for d in ("press-1", "press-2")}
        beat(hub, "press-1", tokens["press-1"], 0.62, "1")
        beat(hub, "press-2", tokens["press-2"], 0.02, "1")

        first = monitor(root=str(root), hub_url=hub.url)
        assert not first["decision"]["fired"] and first["outcome"] is None  # no retrain: collection acts alone
        assert first["collection"]["published"] == {"canary": 1}, first["collection"]
        policy = signed_policy(root)
        assert policy == {"version": 1, "devices": {"press-1": {"upload": {"random_rate": 0.5}}}, "settings": {}}
        (entry,) = collection_log(root)
        assert entry["fired"] and entry["source"] == "monitor" and entry["channel"] == "canary"
        seen = entry["observed"]
        assert seen["press-1 rate"] == "base -> 0.5" and seen["press-1 psi"] == 0.62
        assert seen["policy_version"] == 1 and seen["press-1 expected_bytes"] <= seen["device_daily_bytes"]
        assert "drifts (largest PSI 0.62 >= 0.25)" in entry["summary"] + seen["press-1 why"]

        second = monitor(root=str(root), hub_url=hub.url)  # nothing new: no version, no log line
        assert second["collection"]["published"] == {} and "no change" in second["collection"]["summary"]
        assert signed_policy(root)["version"] == 1 and len(collection_log(root)) == 1

        halts = halts_path(root / "data/loop/decisions.jsonl")
        halt_channel(halts, "canary", "test", "freeze for the audit")
        beat(hub, "press-2", tokens["press-2"], 0.9, "1")  # press-2 drifts too, but canary is frozen
        third = monitor(root=str(root), hub_url=hub.url)
        assert third["collection"]["halted"] == ["canary"] and third["collection"]["published"] == {}
        assert signed_policy(root)["version"] == 1
        halted = collection_log(root)[-1]
        assert not halted["fired"] and "not published: channel 'canary' is halted by test" in halted["summary"]
        resume_channel(halts, "canary")

        # a release trained after the raise, promoted to stable; press-1 runs it without drift: back to base
        from flows.releases import ReleaseConfig, promote

        assert release(root, "cand-000000000002") == 2
        promote(ReleaseConfig.from_params(load_params(root / "params.yaml"), Paths.at(root)), 2, "stable",
                create=True)
        beat(hub, "press-1", tokens["press-1"], 0.03, "2")
        fourth = monitor(root=str(root), hub_url=hub.url)
        policy_then, last = signed_policy(root), collection_log(root)[-1]
        # then press-1's own labels show a drop (its heartbeat's rolling accuracy; no PSI): raised again
        beat(hub, "press-1", tokens["press-1"], 0.03, "2", rolling=(0.70, 1000))
        fifth = monitor(root=str(root), hub_url=hub.url)
    assert fourth["collection"]["published"] == {"canary": 2}
    assert policy_then["devices"] == {"press-2": {"upload": {"random_rate": 0.5}}}
    assert last["fired"] and last["observed"]["press-1 rate"] == "0.5 -> base"
    assert last["observed"]["press-2 rate"] == "base -> 0.5"
    assert "back to base: release 2 (trained after the raise) is stable" in last["observed"]["press-1 why"]
    assert fifth["collection"]["published"] == {"canary": 3}
    again = collection_log(root)[-1]["observed"]
    assert again["press-1 rate"] == "base -> 0.5" and again["press-1 rolling_accuracy"] == "0.7000 on 500 labels"
    assert "accuracy 0.700 on its last 500 labels" in again["press-1 why"]
