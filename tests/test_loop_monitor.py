"""The ``monitor`` flow on a real temporary Prefect server against a real hub (uvicorn on 127.0.0.1), with
devices registered in the hub and heartbeats POSTed over HTTP as runners send them.

Covers: a drifting fleet fires exactly once within the cooldown and the fired pass runs the REAL retrain
flow as a subflow (gate passed, release 1 published, outcome logged); later passes are suppressed with
their values recorded, including the IPW accuracy of the released model's edge rows; a hub that is
down makes the fleet trigger "unknown" while the landing zone still fires; the decision log and
artifacts; ``edgeloop loop status`` (table, --json, --last) and ``loop monitor --once``; the
``loop-monitor`` deployment's interval. (Retrains of the other sources: tests/test_loop_scheduler.py.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.testkit.hub import free_port, running_hub
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from flows.loop.log import read_decisions
from flows.params import load_params
from hub.registry import add_device
from simulator.batches import write_batch

pytestmark = pytest.mark.integration


def make_project(root: Path, changes: dict | None = None) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500,
                                       "loop.monitor.cooldown_s": 3600, **(changes or {})})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def heartbeat(hub, device: str, token: str, psi: float, channel: str = "stable") -> None:
    body = {"channel": channel, "health": "ok", "model_version": None, "drift": {"temperature": psi, "rpm": 0.01},
            "clock": datetime.now(UTC).isoformat()}
    got = httpx.post(f"{hub.url}/v1/devices/{device}/heartbeat", json=body,
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 200, got.text


def fleet_with(hub, psis: dict[str, float]) -> None:
    for device, psi in psis.items():
        heartbeat(hub, device, add_device(hub.app.state.sessions, device, "stable"), psi)


def run_monitor(root: Path, **kwargs):
    from flows.orchestration.monitor import monitor

    return monitor(root=str(root), **kwargs)


def land_edge_rows(root: Path, version: str, rows: int, wrong_share: float, seed: int) -> float:
    """Land an edge-style batch made by model ``version``: wrong rows uploaded always (p=1), right ones
    at p=0.1. Returns the IPW accuracy those rows estimate."""
    schema = load_params(root / "params.yaml").schema
    frame = make_rows(schema, "edge-a", rows, seed)
    rng = np.random.default_rng(seed)
    wrong = rng.random(rows) < wrong_share
    classes = list(schema.label.classes)
    frame["prediction"] = [classes[(classes.index(y) + 1) % len(classes)] if w else y
                           for y, w in zip(frame[schema.label.name], wrong, strict=True)]
    frame["model_version"] = version
    frame["probabilities"] = "[0.5, 0.5]"
    frame["upload_reason"] = np.where(wrong, "uncertain", "random")
    frame["inclusion_probability"] = np.where(wrong, 1.0, 0.1)
    write_batch(root / "data" / "uploads", "edge-a", frame)
    weights = 1.0 / frame["inclusion_probability"].to_numpy()
    return float((weights * ~wrong).sum() / weights.sum())


def test_drifting_fleet_retrains_once_within_the_cooldown(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    # min_fresh_rows 0: this project's landing zone is small; the wait for fresh rows has its own test
    root = make_project(tmp_path / "p", {"loop.monitor.min_rows_for_accuracy": 50, "loop.monitor.min_fresh_rows": 0})
    with running_hub(root) as hub:
        fleet_with(hub, {"press-1": 0.62, "press-2": 0.41, "press-3": 0.02})  # 2/3 drift (> 0.25): share >= 0.3
        first = run_monitor(root, hub_url=hub.url)
        assert first["decision"]["fired"] is True
        assert set(first["decision"]["would_fire"]) == {"fleet_drift", "scheduled"}  # scheduled: never trained
        outcome = first["outcome"]
        assert outcome["passed"] is True and outcome["release"] == 1 and outcome["channel"] == "canary"
        assert (root / "data/model/model.onnx").is_file()

        expected = land_edge_rows(root, "1", rows=400, wrong_share=0.8, seed=7)  # release 1 does badly at the edge
        later = [run_monitor(root, hub_url=hub.url) for _ in range(3)]

    for result in later:
        decision = result["decision"]
        assert not decision["fired"] and decision["suppressed"] and result["outcome"] is None
        assert decision["would_fire"] == ["fleet_drift", "accuracy_drop"]  # scheduled: the log now says trained
        assert "suppressed by cooldown" in decision["summary"]
    accuracy = {t["name"]: t for t in later[-1]["decision"]["triggers"]}["accuracy_drop"]
    assert accuracy["value"] == pytest.approx(expected, abs=1e-3) and accuracy["extra"]["versions"] == ["1"]
    assert accuracy["extra"]["rows"] == 400 and expected < 0.85  # below the floor: would fire, cooldown holds

    log = read_decisions(root / "data/loop/decisions.jsonl")
    retrains = [e for e in log if e["kind"] == "retrain"]
    assert [e["fired"] for e in retrains] == [True, False, False, False]  # exactly one retrain in the cooldown
    assert retrains[0]["observed"]["fleet_drift"] == pytest.approx(2 / 3, abs=1e-3)
    assert {t["name"]: t["extra"].get("drifting") for t in retrains[0]["triggers"]}["fleet_drift"] == [
        "press-1", "press-2"]
    outcomes = [e for e in log if e["kind"] == "retrain_outcome"]
    assert len(outcomes) == 1 and outcomes[0]["decision_at"] == retrains[0]["at"]
    assert outcomes[0]["source"] == "monitor" and outcomes[0]["flow_run"]  # written by the retrain subflow itself
    assert outcomes[0]["observed"]["release"] == 1 and "published release 1 to canary" in outcomes[0]["summary"]

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        names = {run.id: client.read_flow(run.flow_id).name for run in runs}
        subflows = [r for r in runs if names[r.id] == "retrain" and r.parent_task_run_id is not None
                    and r.parameters.get("root") == str(root)]  # the session's server also ran other tests' flows
        assert len(subflows) == 1 and subflows[0].state.is_completed()
        for key in ("monitor-decision", "monitor-retrain-outcome"):
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            assert found, f"artifact {key} missing"
        decision_md = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["monitor-decision"])))
        assert any("| fleet_drift | fired |" in a.data for a in decision_md)


def test_hub_down_leaves_the_fleet_unknown_and_the_landing_zone_still_fires(prefect_server, tmp_path):
    from edgeloop.testkit.synthetic import write_uploads

    root = make_project(tmp_path / "p", {"loop.monitor.min_new_rows": 500})
    params = load_params(root / "params.yaml")
    (root / "data/model").mkdir(parents=True)
    (root / "data/model/model.onnx").write_bytes(b"trained just now")  # only its time matters here
    dead = f"http://127.0.0.1:{free_port()}"
    quiet = run_monitor(root, hub_url=dead, action="none")  # no uploads, no releases, no hub, no token file
    triggers = {t["name"]: t for t in quiet["decision"]["triggers"]}
    assert not quiet["decision"]["fired"]
    assert triggers["fleet_drift"]["state"] == "unknown" and "no admin token" in triggers["fleet_drift"]["detail"]
    assert triggers["accuracy_drop"]["state"] == "unknown" and triggers["data_volume"]["value"] == 0

    (root / "keys").mkdir()
    (root / "keys/hub-admin.token").write_text("not-the-hub")
    write_uploads(root / "data/uploads", params.schema, devices=1, rows=600, batch_rows=300, seed=3)
    fired = run_monitor(root, hub_url=dead, action="none")
    triggers = {t["name"]: t for t in fired["decision"]["triggers"]}
    assert triggers["fleet_drift"]["state"] == "unknown" and "unreachable" in triggers["fleet_drift"]["detail"]
    assert fired["decision"]["fired"] and fired["decision"]["would_fire"] == ["data_volume"]
    assert triggers["data_volume"]["value"] == 600 and fired["outcome"] is None  # action none: nothing ran
    log = read_decisions(root / "data/loop/decisions.jsonl")
    assert [e["fired"] for e in log] == [False, True]
    assert "unreachable" in log[1]["fleet_error"] and log[1]["action"] == "none"
    assert not (root / "data/releases").exists()  # no retrain ran

    # the CLI shows the same log
    runner = CliRunner(env={"COLUMNS": "200"})
    table = runner.invoke(app, ["loop", "status", "--root", str(root)])
    assert table.exit_code == 0, table.output
    assert "data_volume fired" in table.output and "no trigger fired" in table.output
    as_json = runner.invoke(app, ["loop", "status", "--json", "--last", "1", "--root", str(root)])
    assert as_json.exit_code == 0
    newest = json.loads(as_json.output)
    assert len(newest) == 1 and newest[0]["fired"] is True and newest[0]["observed"]["data_volume"] == 600

    once = runner.invoke(app, ["loop", "monitor", "--once", "--action", "none", "--hub-url", dead, "--root", str(root)])
    assert once.exit_code == 0, once.output
    assert "no trigger fired" in once.output and "data_volume" in once.output  # those rows predate the retrain
    assert len(read_decisions(root / "data/loop/decisions.jsonl")) == 3


def test_loop_cli_user_mistakes_are_one_line(tmp_path):
    from edgeloop import loop_cli
    from flows.loop import retrains

    assert loop_cli.ACTIONS is retrains.ACTIONS  # one definition, in a module that does not load prefect
    root = make_project(tmp_path / "p")
    runner = CliRunner()
    empty = runner.invoke(app, ["loop", "status", "--root", str(root)])
    assert empty.exit_code == 0 and "no decisions yet" in empty.output
    for args, expected in ((["loop", "monitor", "--root", str(root)], "--once"),
                           (["loop", "monitor", "--once", "--action", "explode", "--root", str(root)], "explode"),
                           (["loop", "status", "--source", "robot", "--root", str(root)], "deployment")):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and expected in str(result.exception)


def test_monitor_deployment_runs_on_the_loop_interval(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.orchestration.deployments import MONITOR, build_loop_deployments

    root = make_project(tmp_path / "p", {"loop.monitor.interval_s": 120, "loop.promotion.interval_s": 90})
    watch, promote = build_loop_deployments(root)
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(watch.apply())
        soaked = client.read_deployment(promote.apply())
    assert stored.name == MONITOR and stored.parameters == {"root": str(root)}
    assert stored.schedules[0].schedule.interval.total_seconds() == 120
    assert soaked.name == "promote-soaked" and soaked.schedules[0].schedule.interval.total_seconds() == 90
