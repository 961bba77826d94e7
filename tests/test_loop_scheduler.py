"""One retraining scheduler: every retrain, whatever started it, goes through one decision path into the loop log.

With the real parts: the ``edgeloop`` command as a user runs it (a real process) against the session's
real temporary Prefect server, the real retrain pipeline, a real loop log. Covers: a manual ``edgeloop
retrain`` is logged as a fired ``manual`` retrain with its outcome; a monitor pass right after it, with
a trigger that would fire, is held by the cooldown and says whose retrain holds it; ``loop status
--json`` lists all of it; a run of the ``retrain-on-demand`` deployment (its stored parameters) fires
inside that hold, is logged with source ``deployment`` and then holds the monitor itself. Plus the hold
rule on hand-made log entries (the longest hold wins; explicit requests are never refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeloop.cli import app
from edgeloop.testkit.hub import free_port
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.synthetic import write_uploads
from flows.loop.log import append_decision, read_decisions
from flows.loop.retrains import fired_retrains, record_request
from flows.loop.triggers import Observations, decide, running_hold
from flows.params import load_params, parse_params

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_project(root: Path) -> Path:
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500,
                                       "loop.monitor.cooldown_s": 3600, "loop.monitor.min_new_rows": 500})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def monitor_once(root: Path) -> dict:
    """One monitor pass that records only, against a hub that is not there (the fleet is then unknown)."""
    from flows.orchestration.monitor import monitor

    return monitor(root=str(root), hub_url=f"http://127.0.0.1:{free_port()}", action="none")


@pytest.mark.integration
def test_every_retrain_is_on_the_log_and_holds_the_monitor(prefect_server, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.orchestration.deployments import ON_DEMAND, build_deployments
    from flows.orchestration.retrain import retrain

    root = make_project(tmp_path / "p")
    log = root / "data/loop/decisions.jsonl"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    started = time.monotonic()
    done = subprocess.run([EDGELOOP, "retrain", "--root", str(root)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "recorded in" in done.stderr and "as a manual retrain" in done.stderr

    request, outcome = read_decisions(log)
    assert (request["source"], request["kind"], request["fired"]) == ("manual", "retrain", True)
    assert request["requested_by"] == "edgeloop retrain" and request["hold_s"] == 3600
    assert request["observed"]["overrode_hold_s"] == 0 and request["flow_run"]
    assert (outcome["source"], outcome["kind"], outcome["fired"]) == ("manual", "retrain_outcome", True)
    assert outcome["decision_at"] == request["at"] and outcome["flow_run"] == request["flow_run"]
    assert outcome["observed"]["release"] == 1 and "published release 1 to canary" in outcome["summary"]

    # New ground truth lands: the data volume trigger would fire, but the manual retrain holds it.
    write_uploads(root / "data/uploads", load_params(root / "params.yaml").schema, devices=1, rows=600,
                  batch_rows=300, seed=5)
    held = monitor_once(root)["decision"]
    assert held["would_fire"] == ["data_volume"] and not held["fired"] and held["suppressed"]
    assert held["held_by"] == "manual" and 3600 - (time.monotonic() - started) - 1 <= held["cooldown_left_s"] <= 3600
    assert "suppressed by cooldown" in held["summary"] and "manual retrain" in held["summary"]

    status = CliRunner().invoke(app, ["loop", "status", "--json", "--root", str(root)])
    assert status.exit_code == 0, status.output
    listed = [(e["source"], e["kind"], e["fired"]) for e in json.loads(status.output)]
    assert listed == [("manual", "retrain", True), ("manual", "retrain_outcome", True), ("monitor", "retrain", False)]

    # A run of the retrain-on-demand deployment, with the parameters stored on the server: never refused.
    deployment = next(d for d in build_deployments(root) if d.name == ON_DEMAND)
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment.apply())
    assert stored.parameters == {"root": str(root), "source": "deployment"} and stored.schedules == []
    state = retrain(**stored.parameters, return_state=True)
    assert state.is_completed() or state.is_failed()
    entries = read_decisions(log)
    request, outcome = entries[-2:]
    assert (request["source"], request["kind"], request["fired"]) == ("deployment", "retrain", True)
    left = request["observed"]["overrode_hold_s"]  # fired inside the manual retrain's hold
    assert 3600 - (time.monotonic() - started) - 1 <= left <= 3600
    assert "fired inside the hold of the manual retrain" in request["summary"]
    assert (outcome["source"], outcome["kind"]) == ("deployment", "retrain_outcome")
    assert outcome["decision_at"] == request["at"] and outcome["fired"] is state.is_completed()

    again = monitor_once(root)["decision"]  # the deployment's retrain holds the monitor now
    assert not again["fired"] and again["held_by"] == "deployment"
    assert again["would_fire"] == []  # the uploads landed before the newest training: nothing new to count
    assert [e["source"] for e in fired_retrains(log)] == ["manual", "deployment"]


# --- the hold rule on hand-made entries --------------------------------------------------------------------

def monitor_params(**changes):
    raw = override(repo_params_raw(), {f"loop.monitor.{k}": v for k, v in {"min_fresh_rows": 0, **changes}.items()})
    return parse_params(raw).loop.monitor


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat()


def test_the_hold_that_ends_last_wins_whatever_its_source() -> None:
    fired = [{"at": at(600), "source": "monitor", "fired": True},  # default hold: cooldown_s = 3600 -> 3000 s left
             {"at": at(60), "source": "manual", "fired": True, "hold_s": 0}]  # holds nothing
    hold = running_hold(fired, 3600)
    assert hold is not None and hold.source == "monitor" and hold.left_s(NOW) == pytest.approx(3000)
    wanting = Observations(new_labelled_rows=10**6, model_time=NOW - timedelta(hours=1))
    decision = decide(wanting, monitor_params(cooldown_s=3600), NOW, fired[-1], fired)
    assert decision.suppressed and decision.held_by == "monitor"
    assert decision.last_training == NOW - timedelta(seconds=60)  # the newest training, whatever its hold
    longer = [*fired, {"at": at(30), "source": "deployment", "fired": True, "hold_s": 7200}]
    assert running_hold(longer, 3600).source == "deployment"  # type: ignore[union-attr]
    free = decide(wanting, monitor_params(cooldown_s=3600), NOW, fired[-1], fired[-1:])
    assert free.fired and free.held_by is None  # only a hold-0 retrain: nothing holds the triggers
    assert running_hold([{"at": "not a time", "fired": True}], 3600) is None


def test_an_explicit_request_is_never_refused_and_holds_for_its_own_time(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    append_decision(log, "monitor", "retrain", True, "retrain: fleet_drift fired")
    inside = record_request(log, "manual", "a person", cooldown_s=3600)
    assert inside.fired and inside.extra["hold_s"] == 3600 and 3590 < inside.observed["overrode_hold_s"] <= 3600
    short = record_request(log, "deployment", "deployment retrain-on-demand", cooldown_s=3600, hold_s=0)
    assert short.extra["hold_s"] == 0 and "holds automatic triggers for 0 s" in short.summary
    assert [e["source"] for e in fired_retrains(log)] == ["monitor", "manual", "deployment"]
    for source, hold_s in (("monitor", None), ("manual", -1.0)):
        with pytest.raises(ValueError):
            record_request(log, source, "x", cooldown_s=3600, hold_s=hold_s)
    assert len(read_decisions(log)) == 3  # refused requests write nothing
