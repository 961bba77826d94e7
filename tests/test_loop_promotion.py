"""Staged rollout: the ``promote-soaked`` flow decides canary -> stable by fleet health, with the real parts.

A real TUF repository (edgeloop.testkit.runner_world.ReleaseWorld: real HGB models) served by a real hub on
127.0.0.1, devices that heartbeat and upload through edge.hub_client as runners do (and one real edge
runner that rolls a bad release back by itself), the flow on the session's real Prefect temporary
server. Covers: a good canary release with enough devices and rows is promoted to stable, and the next
run does nothing; a release a canary device rolled back is rolled back on canary and never reaches
stable; a release not soaked yet (time, devices) waits, and an unreachable hub makes it wait too;
manual ``edgeloop release promote`` and the ``rollback`` flow are recorded in the loop log as
``manual``. Plus the pure soak rules on hand-made evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge.config import load_config
from edge.contracts.record import batch_id
from edge.ground_truth import encode_rows
from edge.heartbeat import heartbeat_body
from edge.hub_client import HubClient
from edge.runner import Runner
from edgeloop.testkit.hub import HubHandle, free_port, running_hub
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.runner_world import ReleaseWorld, model_bytes, params, runner_config, site_data
from flows.loop.estimates import Estimate
from flows.loop.log import read_decisions
from flows.loop.promotion import Rejection, SoakEvidence, decide
from flows.params import PromotionParams
from flows.releases import list_releases, promote
from flows.releases.history import read_events
from hub.registry import add_device

RULES = {"soak_s": 0, "min_devices": 2, "min_labelled_rows": 80, "accuracy_tolerance": 0.02}


@dataclass
class Loop:
    world: ReleaseWorld
    hub: HubHandle
    root: Path  # the hub's project folder: params.yaml, data/uploads, data/loop, keys/hub-admin.token
    stable: int
    tokens: dict[str, str]

    def rules(self, **promotion: Any) -> None:
        """Rewrite loop.promotion in params.yaml (the flow reads it on every run)."""
        write_params(self.world, {**RULES, **promotion})

    def device(self, name: str, channel: str) -> HubClient:
        token = self.tokens.get(name) or add_device(self.hub.app.state.sessions, name, channel)
        self.tokens[name] = token
        return HubClient(self.hub.url, name, token)

    def run(self, hub_url: str | None = None) -> dict[str, Any]:
        from flows.orchestration.promote import promote_soaked

        return promote_soaked(root=str(self.root), hub_url=hub_url or self.hub.url)

    def channels(self) -> dict[str, int]:
        return {channel: info.version for info in list_releases(self.world.config) for channel in info.channels}

    def decisions(self, source: str | None = None) -> list[dict[str, Any]]:
        return read_decisions(self.root / "data" / "loop" / "decisions.jsonl", source)


def write_params(world: ReleaseWorld, promotion: dict[str, Any]) -> None:
    keys = world.config
    dotted = {"release.repository": str(keys.repository), "release.root_key": str(keys.root_key),
              "release.online_keys": str(keys.online_keys)}
    dotted |= {f"loop.promotion.{k}": v for k, v in promotion.items()}
    raw = override(repo_params_raw(), dotted)
    (world.hub_root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def trained() -> None:
    for seed, flip in ((1, False), (2, False), (3, True)):
        model_bytes(seed, flip)  # train once per module, outside the timed waits


@pytest.fixture
def loop(tmp_path: Path, trained: None) -> Iterator[Loop]:
    """Release 1 on canary and stable, release 2 (a good model) published to canary; a hub serving them."""
    world = ReleaseWorld(tmp_path / "world")
    write_params(world, RULES)
    stable = world.publish(1)
    promote(world.config, stable, "stable")
    with running_hub(world.hub_root) as hub:
        yield Loop(world, hub, world.hub_root, stable, {})


def beat(client: HubClient, version: int, channel: str, events: tuple[dict[str, Any], ...] = ()) -> None:
    """A heartbeat as a runner builds it (edge.heartbeat) from its report and state-dir events."""
    report = {"model_version": str(version), "previous_version": None, "channel": channel, "health": "ok",
              "drift": {}, "rolling_accuracy": 0.95, "spool_backlog": 0, "counters": {"predictions": 500},
              "evictions": {}}
    client.heartbeat(heartbeat_body(report, list(events)))


def upload(client: HubClient, version: int, correct: int, wrong: int, seed: int) -> None:
    """One CSV batch as a runner sends it: ``wrong`` labelled mistakes (p = 1) and ``correct`` rows of
    the random sample (p = 0.5), made by release ``version``."""
    schema = params().schema
    x, y = site_data(correct + wrong, seed)
    rows = []
    for i, (features, label) in enumerate(zip(x, y.tolist(), strict=True)):
        right = i < correct
        rows.append({
            **{name: None if np.isnan(v) else float(v) for name, v in zip(schema.feature_names, features, strict=True)},
            schema.label.name: int(label), schema.event_id: seed * 10_000 + i, schema.device_id: client.device_id,
            schema.event_time: "2026-03-01T00:00:00Z", "model_version": str(version),
            "prediction": int(label) if right else 1 - int(label), "probabilities": json.dumps([0.5, 0.5]),
            "upload_reason": "random" if right else "labelled", "inclusion_probability": 0.5 if right else 1.0,
        })
    body = encode_rows(rows)
    client.upload(body, batch_id(body))


def activated(version: int) -> dict[str, Any]:
    return {"at": datetime.now(UTC).isoformat(), "event": "activated", "version": str(version), "detail": "shadow ok"}


def artifact_text(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, f"artifact {key} missing"
    return str(found[0].data)


# --- the flow end to end ------------------------------------------------------------------------------------

def test_good_canary_release_is_promoted_to_stable_once(prefect_server, loop: Loop) -> None:
    candidate = loop.world.publish(2)
    for name, seed in (("can-1", 21), ("can-2", 22)):
        device = loop.device(name, "canary")
        beat(device, candidate, "canary", (activated(candidate),))
        upload(device, candidate, correct=45, wrong=5, seed=seed)  # IPW accuracy 90/95 = 0.947
    old = loop.device("stable-1", "stable")
    beat(old, loop.stable, "stable")
    upload(old, loop.stable, correct=70, wrong=30, seed=23)  # IPW accuracy 140/170 = 0.82

    decision = loop.run()
    assert decision["action"] == "promote" and decision["fired"] is True, decision["summary"]
    assert decision["source"] == "promote" and decision["kind"] == "promote"
    assert loop.channels() == {"canary": candidate, "stable": candidate}
    observed = decision["observed"]
    assert observed["devices"] == ["can-1", "can-2"]
    assert observed["candidate_accuracy"]["rows"] == 100
    assert observed["candidate_accuracy"]["value"] == pytest.approx(90 / 95)
    assert observed["stable_accuracy"]["value"] == pytest.approx(140 / 170)
    assert json.loads((loop.root / "data/champion/manifest.json").read_text())["version"] == str(candidate)
    assert "promote" in artifact_text("promotion-decision")

    again = loop.run()  # already promoted: recorded, and nothing moves
    assert again["action"] == "wait" and again["fired"] is False and "already on stable" in again["summary"]
    promotions = [e for e in read_events(loop.world.config) if e["channel"] == "stable" and e["to"] == candidate]
    assert len(promotions) == 1
    assert [(d["action"], d["fired"]) for d in loop.decisions("promote")] == [("promote", True), ("wait", False)]


def test_release_a_canary_runner_rolled_back_goes_back_on_canary_and_never_reaches_stable(
        prefect_server, loop: Loop, tmp_path: Path) -> None:
    token = add_device(loop.hub.app.state.sessions, "press-1", "canary")
    folder = runner_config(tmp_path / "device", loop.hub.url, token, loop.world.root_bytes)
    runner = Runner(load_config(folder, environ={}))
    runner.start()
    try:
        _wait(lambda: runner.model_version == str(loop.stable), "first activation")
        bad = loop.world.publish(3, flip=True)  # confidently wrong; the device has no labels yet: it goes live
        _wait(lambda: runner.model_version == str(bad), "bad activation")
        x, y = site_data(200, 14)
        for row, label in zip(x, y.tolist(), strict=True):
            p = runner.predict_one([None if np.isnan(v) else float(v) for v in row])
            runner.feedback(p.event_id, label)
        _wait(lambda: runner.model_version == str(loop.stable), "the runner's own rollback")
        other = loop.device("can-2", "canary")  # a second canary device still runs it, happily
        beat(other, bad, "canary", (activated(bad),))
        upload(other, bad, correct=95, wrong=5, seed=31)
        _wait(lambda: _reported_rollback(loop, bad), "the rollback in a heartbeat")

        decision = loop.run()
        assert decision["action"] == "rollback" and decision["fired"] is True, decision["summary"]
        assert decision["kind"] == "rollback" and "press-1" in " ".join(decision["reasons"])
        assert decision["move"]["channel"] == "canary" and decision["move"]["to_version"] == loop.stable
        assert loop.channels() == {"canary": loop.stable, "stable": loop.stable}
        assert "rollback" in artifact_text("promotion-decision")

        again = loop.run()
        assert again["action"] == "wait" and again["fired"] is False
    finally:
        runner.stop()
    assert not [e for e in read_events(loop.world.config) if e["channel"] == "stable" and e["to"] == bad]


def _reported_rollback(loop: Loop, version: int) -> bool:
    from edge.contracts.layout import Paths
    from flows.loop.evidence import read_fleet
    from flows.params import load_params

    paths = Paths.at(loop.root)
    fleet, _ = read_fleet(load_params(paths.params), paths, loop.hub.url)
    states = [(d.get("last_heartbeat") or {}).get("state") or {} for d in fleet["devices"]]
    return any(e["kind"] == "rolled_back" and e["version"] == str(version) for s in states for e in s.get("events", []))


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_release_not_soaked_yet_waits_and_says_what_is_missing(prefect_server, loop: Loop) -> None:
    loop.rules(soak_s=3600)
    candidate = loop.world.publish(2)
    device = loop.device("can-1", "canary")
    beat(device, candidate, "canary", (activated(candidate),))
    upload(device, candidate, correct=95, wrong=5, seed=41)

    decision = loop.run()
    assert decision["action"] == "wait" and decision["fired"] is False
    reasons = " | ".join(decision["reasons"])
    assert "soak:" in reasons and "of 3600 s" in reasons and "devices: 1 of 2" in reasons
    assert "labelled rows" not in reasons  # 100 rows >= 80: not missing
    assert loop.channels() == {"canary": candidate, "stable": loop.stable}

    loop.rules(soak_s=0, min_devices=1)
    unreachable = loop.run(hub_url=f"http://127.0.0.1:{free_port()}")  # no fleet: wait, never act blind
    assert unreachable["action"] == "wait" and "fleet" in unreachable["summary"]
    assert loop.channels() == {"canary": candidate, "stable": loop.stable}
    assert [d["fired"] for d in loop.decisions("promote")] == [False, False]


def test_manual_promote_and_rollback_are_recorded_in_the_loop_log(prefect_server, loop: Loop, monkeypatch) -> None:
    from edgeloop.release_cli import release_app
    from flows.orchestration.release_flows import rollback_flow

    candidate = loop.world.publish(2)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # the CLI moves the channel directly
    done = CliRunner().invoke(release_app, ["promote", str(candidate), "--to", "stable", "--root", str(loop.root)])
    assert done.exit_code == 0, done.output
    assert loop.channels()["stable"] == candidate
    rollback_flow(root=str(loop.root), channel="stable", to=loop.stable)  # the Prefect flow path
    assert loop.channels()["stable"] == loop.stable

    manual = loop.decisions("manual")
    assert [(d["kind"], d["fired"]) for d in manual] == [("promote", True), ("rollback", True)]
    assert manual[0]["observed"] == {"channel": "stable", "from_version": loop.stable, "to_version": candidate}
    assert manual[1]["observed"] == {"channel": "stable", "from_version": candidate, "to_version": loop.stable}
    assert "manual promote" in manual[0]["summary"]


# --- the soak rules on hand-made evidence -------------------------------------------------------------------

def rules(**changes: Any) -> PromotionParams:
    values = {"from_channel": "canary", "to_channel": "stable", "interval_s": 60, **RULES, **changes}
    return PromotionParams(**values)


def estimate(value: float, low: float, high: float, rows: int = 200) -> Estimate:
    return Estimate(value, low, high, value, rows, float(rows))


NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
GOOD = SoakEvidence(NOW, 5, 4, NOW - timedelta(hours=2), ("a", "b"), (), estimate(0.94, 0.91, 0.96),
                    estimate(0.93, 0.90, 0.95), 0.95)


def replaced(**changes: Any) -> SoakEvidence:
    from dataclasses import replace

    return replace(GOOD, **changes)


def test_soak_rules() -> None:
    assert decide(GOOD, rules()).action == "promote"
    assert decide(GOOD, rules(soak_s=3 * 3600)).action == "wait"
    assert decide(replaced(candidate=None), rules()).action == "wait"
    older = decide(replaced(candidate=3), rules())
    assert older.action == "wait" and "older" in older.summary  # never promote a downgrade
    rejected = decide(replaced(rejections=(Rejection("a", "blocked", "", "shadow f1 0.4"),)), rules())
    assert rejected.action == "rollback" and rejected.rollback_to == 4 and "shadow f1 0.4" in rejected.reasons[0]
    # clearly worse: even the interval's top is below stable's low end - tolerance
    worse = decide(replaced(candidate_accuracy=estimate(0.80, 0.76, 0.84)), rules())
    assert worse.action == "rollback" and "clearly below" in worse.reasons[0]
    # below stable - tolerance, but the interval still reaches it: wait for more rows
    unsure = decide(replaced(candidate_accuracy=estimate(0.90, 0.84, 0.95)), rules())
    assert unsure.action == "wait" and "not clearly worse" in unsure.summary
    # too few rows: neither promoted nor rolled back on accuracy
    few = decide(replaced(candidate_accuracy=estimate(0.2, 0.0, 0.5, rows=10)), rules())
    assert few.action == "wait" and "labelled rows: 10 of 80" in few.summary


def test_without_stable_rows_the_gate_accuracy_is_the_reference() -> None:
    no_stable = replaced(stable_accuracy=Estimate(None, None, None, None, 0, 0.0))
    verdict = decide(no_stable, rules())
    assert verdict.action == "promote" and "gate accuracy" in verdict.checks["accuracy"]["note"]
    assert decide(replace_gate(no_stable, 0.975), rules()).action == "wait"  # 0.94 < 0.955 <= 0.96 (top)
    assert decide(replace_gate(no_stable, 0.99), rules()).action == "rollback"  # top 0.96 < 0.97: clearly worse
    neither = decide(replace_gate(no_stable, None), rules())
    assert neither.action == "promote" and "check passes" in neither.checks["accuracy"]["note"]


def replace_gate(evidence: SoakEvidence, gate: float | None) -> SoakEvidence:
    from dataclasses import replace

    return replace(evidence, gate_accuracy=gate)


def test_promotion_deployment_runs_every_interval_from_params(loop: Loop) -> None:
    from flows.orchestration.deployments import PROMOTE, build_loop_deployments

    loop.rules(interval_s=120)
    deployment = next(d for d in build_loop_deployments(loop.root) if d.name == PROMOTE)
    assert (deployment.name, deployment.flow_name) == ("promote-soaked", "promote-soaked")
    assert deployment.parameters == {"root": str(loop.root)}
    assert deployment.schedules[0].schedule.interval == timedelta(seconds=120)
