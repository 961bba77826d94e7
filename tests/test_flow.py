"""The Prefect retrain flow on a real temporary Prefect server: the stages run as named tasks, the
gate decision becomes artifacts, a blocked gate fails the run with its reasons, the whole pipeline
works on a schema unlike the simulator's, and the deployments carry their schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import second_schema, write_uploads
from flows.ingest.offline_docs import remote_loads
from flows.params import parse_params

pytestmark = pytest.mark.integration


def make_project(root: Path, changes: dict) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500, **changes})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def run_flow(root: Path):
    from flows.orchestration.retrain import retrain

    return retrain(root=str(root), return_state=True)


def test_flow_runs_every_stage_and_publishes_the_decision(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    root = make_project(tmp_path / "p", {})
    state = run_flow(root)
    result = state.result(raise_on_failure=False)
    assert state.is_completed(), state.message
    assert result["passed"] is True
    assert list(result["stages"]) == ["simulate", "ingest", "split", "train", "export", "evaluate", "gate"]
    assert all(s["seconds"] >= 0 for s in result["stages"].values())
    manifest = json.loads((root / "data/candidate/manifest.json").read_text())
    assert manifest["version"] == result["version"]
    assert result["release"]["version"] == 1 and result["release"]["channel"] == "canary"
    champion = json.loads((root / "data/champion/manifest.json").read_text())
    assert champion["version"] == "1" and champion["candidate"] == result["version"]
    assert (root / "data/champion/model.onnx").read_bytes() == (root / "data/candidate/model.onnx").read_bytes()
    overview = (root / "data/candidate/index.html").read_text()
    assert "PASSED" in overview and "quality_floor" in overview and "reports/drift.html" in overview
    pages = list((root / "data").rglob("*.html"))
    assert len(pages) > 5 and not [p for p in pages if remote_loads(p.read_text())]  # all open offline
    with get_client(sync_client=True) as client:
        for key in ("retrain-gate-decision", "retrain-metrics"):
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            assert found, f"artifact {key} missing"
        decision = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-gate-decision"]))
        )[0]
        assert "quality_floor" in decision.data


def test_blocked_gate_fails_the_run_with_reasons(prefect_server, tmp_path):
    root = make_project(tmp_path / "p", {"gate.min_quality": 0.999})
    state = run_flow(root)
    assert state.is_failed()
    assert "gate blocked the candidate" in state.message and "quality_floor" in state.message
    assert not (root / "data/candidate/model.onnx").exists()
    assert (root / "data/candidate/decision.md").exists()
    assert "BLOCKED" in (root / "data/candidate/index.html").read_text()


def test_second_schema_runs_the_whole_pipeline(prefect_server, tmp_path):
    raw_schema = second_schema()
    root = make_project(tmp_path / "p", {"simulate.rows_per_device": 0})
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["schema"] = raw_schema
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    write_uploads(root / "data/uploads", params.schema, devices=3, rows=1200, batch_rows=400, seed=11)

    state = run_flow(root)
    assert state.is_completed(), state.message
    manifest = json.loads((root / "data/candidate/manifest.json").read_text())
    assert manifest["classes"] == ["ok", "warn", "fail"]
    assert [f["name"] for f in manifest["features"]] == ["pressure_bar", "flow_lpm", "valve_pct"]
    ingest = json.loads((root / "data/metrics/ingest.json").read_text())
    assert ingest["curated"] == 9 and ingest["quarantined"] == 0


def test_deployments_carry_nightly_and_on_demand_schedules(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.orchestration.deployments import NIGHTLY, ON_DEMAND, REFRESH, REFRESH_CRON, build_deployments

    deployments = build_deployments(tmp_path, cron="15 3 * * *", timezone="Europe/Berlin")
    ids = [d.apply() for d in deployments]
    with get_client(sync_client=True) as client:
        stored = [client.read_deployment(i) for i in ids]
    assert [d.name for d in stored] == [NIGHTLY, ON_DEMAND, REFRESH]
    assert stored[2].schedules[0].schedule.cron == REFRESH_CRON
    assert stored[0].schedules[0].schedule.cron == "15 3 * * *"
    assert stored[0].schedules[0].schedule.timezone == "Europe/Berlin"
    assert stored[1].schedules == []
    assert stored[0].parameters == {"root": str(tmp_path)}


def test_republishing_is_idempotent_and_channel_moves_are_flow_runs(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.orchestration.release_flows import promote_flow, rollback_flow

    root = make_project(tmp_path / "p", {})
    first = run_flow(root).result(raise_on_failure=False)["release"]
    again = run_flow(root).result(raise_on_failure=False)["release"]  # nothing new: same candidate
    assert first["version"] == again["version"] == 1 and again["already_published"] is True

    raw = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(override(raw, {"train.hgb.max_iter": 50}), sort_keys=False))
    second = run_flow(root).result(raise_on_failure=False)["release"]
    assert second["version"] == 2 and second["channel"] == "canary"

    assert promote_flow(root=str(root), version=2, channel="stable")["to_version"] == 2
    assert json.loads((root / "data/champion/manifest.json").read_text())["version"] == "2"
    assert promote_flow(root=str(root), version=1, channel="stable")["to_version"] == 1
    back = rollback_flow(root=str(root), channel="stable")
    assert (back["from_version"], back["to_version"]) == (1, 2)
    with get_client(sync_client=True) as client:
        names = {client.read_flow(run.flow_id).name for run in client.read_flow_runs()}
    assert {"promote", "rollback", "retrain"} <= names
