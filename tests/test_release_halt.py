"""``edgeloop release halt/resume`` and what a halt stops, plus ``release list --json`` and the 80-column table.

Real release repository (three signed releases: canary -> 3, stable -> 1), the real CLI (Typer's runner in
process; a real ``edgeloop`` process for what a user sees on stderr and at 80 columns), the real loop log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edgeloop.cli import app
from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import make_candidate
from flows.loop.halts import halts_path, read_halts
from flows.loop.log import read_decisions
from flows.loop.moves import apply_verdict
from flows.loop.promotion import SoakEvidence, Verdict
from flows.params import load_params
from flows.releases import ReleaseConfig, init_repository, list_channels, promote, publish

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def small_onnx(seed: int) -> bytes:
    """A real ONNX model (two features -> one score), made with onnx.helper: no scikit-learn import."""
    import numpy as np
    from onnx import TensorProto, checker, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((2, 1), float(seed), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["score"])], f"release{seed}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    checker.check_model(model)
    return model.SerializeToString()


def release_project(root: Path) -> None:
    """Releases 1..3 on canary (stable -> 1): canary's rollback target is 2."""
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    paths = Paths.at(root)
    config = ReleaseConfig.from_params(load_params(paths.params), paths)
    init_repository(config)
    for seed in (1, 2, 3):
        publish(config, make_candidate(root / f"cand{seed}", small_onnx(seed), f"cand-{seed:012d}"), "canary",
                create=True)
        if seed == 1:
            promote(config, 1, "stable", create=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("halt-template")
    release_project(root)
    return root


@pytest.fixture
def root(template, tmp_path) -> Path:
    shutil.copytree(template, tmp_path / "p")
    return tmp_path / "p"


def channels(root: Path) -> dict[str, int]:
    paths = Paths.at(root)
    return list_channels(ReleaseConfig.from_params(load_params(paths.params), paths))


def cli(root: Path, *args: str):
    """(exit code, output, the UserError message or "")."""
    result = CliRunner().invoke(app, ["release", *args, "--root", str(root)])
    refused = str(result.exception) if isinstance(result.exception, UserError) else ""
    assert refused or result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output, refused


def manual(root: Path) -> list[dict]:
    return read_decisions(root / "data/loop/decisions.jsonl", source="manual")


def test_halt_refuses_promote_unless_forced_and_resume_lifts_it(root) -> None:
    code, out, _ = cli(root, "halt", "stable", "--reason", "line 3 sensors replaced")
    assert code == 0 and "channel 'stable' halted: line 3 sensors replaced" in out
    halt = read_halts(halts_path(root / "data/loop/decisions.jsonl"))["stable"]
    assert halt.reason == "line 3 sensors replaced" and halt.by.endswith(" via cli")
    _, _, again = cli(root, "halt", "stable", "--reason", "twice")
    assert "already halted by" in again and "line 3 sensors replaced" in again
    _, _, refused = cli(root, "promote", "3", "--to", "stable")
    assert "channel 'stable' is halted by" in refused and "--force" in refused and "release resume stable" in refused
    assert channels(root) == {"canary": 3, "stable": 1}
    code, out, _ = cli(root, "rollback", "--channel", "canary")  # another channel is not affected
    assert code == 0 and channels(root)["canary"] == 2
    code, out, _ = cli(root, "promote", "3", "--to", "stable", "--force")
    assert code == 0 and "channel 'stable': 1 -> 3" in out and channels(root)["stable"] == 3
    code, out, _ = cli(root, "resume", "stable")
    assert code == 0 and "channel 'stable' resumed" in out
    assert read_halts(halts_path(root / "data/loop/decisions.jsonl")) == {}
    _, _, not_halted = cli(root, "resume", "stable")
    assert "channel 'stable' is not halted" in not_halted
    logged = [(e["kind"], e["fired"]) for e in manual(root)]
    assert logged == [("halt", True), ("rollback", True), ("promote", True), ("resume", True)]
    forced = manual(root)[2]
    assert "line 3 sensors replaced" in forced["forced_over_halt"] and forced["by"].endswith(" via cli")


def test_publish_into_a_halted_channel_needs_force(root) -> None:
    cli(root, "halt", "canary", "--reason", "no new releases during the audit")
    folder = make_candidate(root / "cand4", small_onnx(4), "cand-000000000004")
    _, _, refused = cli(root, "publish", str(folder))
    assert "channel 'canary' is halted" in refused and "nothing published; --force" in refused
    assert channels(root) == {"canary": 3, "stable": 1}
    code, out, _ = cli(root, "publish", str(folder), "--force")
    assert code == 0 and "published release 4 to channel 'canary'" in out and channels(root)["canary"] == 4


def test_a_retrain_does_not_publish_into_a_halted_channel(root) -> None:
    from flows.orchestration.release_flows import publish_task

    cli(root, "halt", "canary", "--reason", "no new releases during the audit")
    paths = Paths.at(root)
    params = load_params(paths.params)
    assert params.release.channel == "canary"
    with pytest.raises(UserError, match="channel 'canary' is halted by .*the candidate was not published"):
        publish_task.fn(params, paths)  # the retrain flow's publish step, before it signs anything
    assert channels(root) == {"canary": 3, "stable": 1}


@pytest.mark.parametrize(("args", "message"), [
    (("halt", "stabel", "--reason", "x"), "channel 'stabel' does not exist (channels: canary, stable)"),
    (("halt", "stable", "--reason", "   "), "a halt needs a reason"),
    (("halt", "stable", "--reason", "x" * 201), "keep it to 200"),
    (("resume", "canary"), "channel 'canary' is not halted"),
])
def test_halt_mistakes_are_refused_and_change_nothing(root, args, message) -> None:
    _, _, refused = cli(root, *args)
    assert message in refused
    assert read_halts(halts_path(root / "data/loop/decisions.jsonl")) == {} and manual(root) == []


@pytest.mark.parametrize(("action", "channel"), [("promote", "stable"), ("rollback", "canary")])
def test_automatic_moves_leave_a_halted_channel_alone(root, action, channel) -> None:
    """The promote-soaked flow's move (flows.loop.moves.apply_verdict) into a halted channel is refused;
    the flow records that refusal as "could not act"."""
    cli(root, "halt", channel, "--reason", "investigating")
    paths = Paths.at(root)
    params = load_params(paths.params)
    evidence = SoakEvidence(now=datetime.now(UTC), candidate=3, stable=1, on_channel_since=None)
    with pytest.raises(UserError, match=f"channel '{channel}' is halted .*the {action} waits"):
        apply_verdict(params, paths, Verdict(action, "soak verdict", rollback_to=None), evidence)
    assert channels(root) == {"canary": 3, "stable": 1}
    cli(root, "resume", channel)
    moved = apply_verdict(params, paths, Verdict(action, "soak verdict", rollback_to=None), evidence)
    assert moved is not None and moved["from_version"] != moved["to_version"]


def test_list_json_has_the_table_fields_newest_first(root) -> None:
    cli(root, "halt", "stable", "--reason", "x")
    result = CliRunner().invoke(app, ["release", "list", "--json", "--root", str(root)])
    rows = json.loads(result.output)
    assert [r["version"] for r in rows] == [3, 2, 1]
    assert rows[0]["channels"] == ["canary"] and rows[2]["channels"] == ["stable"] and rows[2]["halted"] == ["stable"]
    assert rows[0]["metrics"] == {"accuracy": 0.93, "f1_macro": 0.91} and rows[0]["metric"] == "f1_macro"
    assert rows[0]["data_hash"] == "d" * 64 and rows[0]["candidate"] == "cand-000000000003"
    assert set(rows[0]) == {"version", "channels", "created", "metric", "metrics", "data_hash", "candidate", "halted"}


@pytest.mark.slow
def test_a_user_sees_one_line_and_tables_that_fit_80_columns(root) -> None:
    """Real processes: a refused halt/promote is one line on stderr with exit 2; at COLUMNS=80 every table line
    fits and no version, channel or candidate name is cut."""
    from flows.releases import promote

    paths = Paths.at(root)
    promote(ReleaseConfig.from_params(load_params(paths.params), paths), 2, "edge-lab-line-three-long-name",
            create=True)
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("PREFECT_API_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EDGELOOP, "release", *args, "--root", str(root)], capture_output=True, text=True,
                              env=env, timeout=120)

    assert run("halt", "stable", "--reason", "frozen for the audit").returncode == 0
    refused = run("promote", "3", "--to", "stable")
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "Traceback" not in refused.stderr + refused.stdout
    assert "is halted by" in lines[0]
    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    shown = listed.stdout.splitlines()
    assert max(map(len, shown)) <= 80, listed.stdout
    assert str(root / "data/releases") in "".join(shown)  # a long path wraps, whole
    names = ["edge-lab-line-three-long-name", "canary"]
    if "candidate" in shown[2]:  # an optional column: dropped on a narrow terminal, never cut
        names += ["cand-000000000001", "cand-000000000003"]
    for name in names:
        assert any(name in line for line in shown), (name, listed.stdout)
    assert any("stable (halted)" in line for line in shown)
    for version in ("1", "2", "3"):
        assert any(line.startswith(f"│ {version} ") for line in shown), listed.stdout
    detail = run("show", "3")
    assert detail.returncode == 0 and max(map(len, detail.stdout.splitlines())) <= 80, detail.stdout


@pytest.mark.slow
def test_the_promote_soaked_flow_leaves_a_halted_stable_alone(prefect_server, tmp_path) -> None:
    """The real promote-soaked Prefect flow, a real hub and devices (the set-up of tests/test_loop_promotion.py):
    a canary release that has soaked is not promoted while stable is halted; the decision says why and acts
    once the halt is lifted."""
    from edgeloop.testkit.hub import running_hub
    from edgeloop.testkit.runner_world import ReleaseWorld
    from tests.test_loop_promotion import RULES, Loop, activated, beat, upload, write_params

    world = ReleaseWorld(tmp_path / "world")
    write_params(world, RULES)
    stable = world.publish(1)
    promote(world.config, stable, "stable")
    with running_hub(world.hub_root) as hub:
        loop = Loop(world, hub, world.hub_root, stable, {})
        candidate = world.publish(2)
        for name, seed in (("can-1", 21), ("can-2", 22)):
            device = loop.device(name, "canary")
            beat(device, candidate, "canary", (activated(candidate),))
            upload(device, candidate, correct=45, wrong=5, seed=seed)
        code, _, _ = cli(loop.root, "halt", "stable", "--reason", "quarterly audit")
        assert code == 0
        held = loop.run()
        assert held["action"] == "promote" and held["fired"] is False
        assert "could not act: channel 'stable' is halted by" in held["summary"]
        assert "quarterly audit" in held["summary"]
        assert loop.channels()["stable"] == stable
        cli(loop.root, "resume", "stable")
        moved = loop.run()
        assert moved["action"] == "promote" and moved["fired"] is True and loop.channels()["stable"] == candidate
