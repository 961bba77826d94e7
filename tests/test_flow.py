"""The Prefect flows on a real temporary Prefect server: the retrain flow's stages run as named tasks, the
gate decision becomes artifacts, a blocked gate fails the run with its reasons, the whole pipeline works
on a schema unlike the simulator's; the deployments ``edgeloop serve`` builds hold one retraining
scheduler (the loop monitor) and no nightly retrain schedule; every entrypoint in flows/prefect.yaml
names a flow that takes its parameters; channel moves are flow runs, and the ``promote`` flow refuses a
channel that does not exist unless told to create it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edge.contracts.errors import UserError
from edgeloop.testkit.project import REPO, override, repo_params_raw
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


def test_serve_builds_one_retraining_scheduler_and_no_nightly_retrain(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.orchestration.deployments import MONITOR, ON_DEMAND, PROMOTE, REFRESH, REFRESH_CRON, build_deployments

    root = make_project(tmp_path / "p", {"loop.monitor.interval_s": 120, "loop.promotion.interval_s": 90})
    deployments = build_deployments(root, timezone="Europe/Berlin")  # what `edgeloop serve` serves
    with get_client(sync_client=True) as client:
        stored = {d.name: d for d in (client.read_deployment(x.apply()) for x in deployments)}
        flows = {name: client.read_flow(d.flow_id).name for name, d in stored.items()}
    assert set(stored) == {ON_DEMAND, REFRESH, MONITOR, PROMOTE}
    assert [name for name, flow in flows.items() if flow == "retrain"] == [ON_DEMAND]  # no retrain-nightly
    assert stored[ON_DEMAND].schedules == [] and stored[ON_DEMAND].parameters == {"root": str(root),
                                                                                  "source": "deployment"}
    crons = {name: [s.schedule.cron for s in d.schedules if hasattr(s.schedule, "cron")] for name, d in stored.items()}
    assert crons == {ON_DEMAND: [], REFRESH: [REFRESH_CRON], MONITOR: [], PROMOTE: []}  # the nightly slot: a trigger
    assert stored[REFRESH].schedules[0].schedule.timezone == "Europe/Berlin"
    assert stored[MONITOR].schedules[0].schedule.interval.total_seconds() == 120
    assert stored[PROMOTE].schedules[0].schedule.interval.total_seconds() == 90
    assert all(d.parameters["root"] == str(root) for d in stored.values())


def test_every_prefect_yaml_entrypoint_names_a_flow_that_takes_its_parameters(monkeypatch):
    import inspect

    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)  # prefect deploy runs from the project root
    deployments = yaml.safe_load((REPO / "flows/prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in deployments} == {"retrain-on-demand", "release-refresh", "loop-monitor",
                                                "promote-soaked"}
    for deployment in deployments:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (REPO / path).is_file(), deployment["entrypoint"]
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert isinstance(flow, Flow) and flow.fn.__name__ == name
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment.get("parameters", {})) <= set(accepted), deployment["name"]
        if flow.name == "retrain":  # retraining is scheduled by the monitor's triggers only
            assert not deployment.get("schedules") and deployment["parameters"]["source"] == "deployment"


def test_republishing_is_idempotent_and_channel_moves_are_flow_runs(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

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
    with pytest.raises(UserError, match=r"channel 'stabel' does not exist \(channels: canary, stable\)"):
        promote_flow(root=str(root), version=2, channel="stabel")
    made = promote_flow(root=str(root), version=2, channel="stabel", create=True)
    assert (made["channel"], made["from_version"], made["to_version"]) == ("stabel", None, 2)
    from flows.loop.log import read_decisions

    manual = [(e["kind"], e["observed"]["channel"], e["observed"]["to_version"])
              for e in read_decisions(root / "data/loop/decisions.jsonl", source="manual")
              if e["kind"] in ("promote", "rollback")]
    assert manual == [("promote", "stable", 2), ("promote", "stable", 1), ("rollback", "stable", 2),
                      ("promote", "stabel", 2)]  # the refused promote left no trace
    with get_client(sync_client=True) as client:
        names = {client.read_flow(run.flow_id).name for run in client.read_flow_runs()}
        promote_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])))
    assert {"promote", "rollback", "retrain"} <= names
    asked = {"root": str(root), "version": 2, "channel": "stabel", "create": False}
    stabel = [r for r in promote_runs if {key: r.parameters.get(key) for key in asked} == asked]
    assert len(stabel) == 1 and stabel[0].state.is_failed()  # the refusal is a failed flow run, on record
