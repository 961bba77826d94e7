"""One name per stage across dvc.yaml, params.yaml, flows/stages/<name>.py and the Prefect task; and every
module of the cloud side and of the command line opens with a docstring that says what it leaves out."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from edgeloop.testkit.project import REPO
from flows.stages import STAGES


def test_dvc_stages_match_the_stage_list_and_driver():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert tuple(dvc) == STAGES
    for name, stage in dvc.items():
        assert stage["cmd"] == f"python -m flows {name}"
        assert f"flows/stages/{name}.py" in stage["deps"]
        assert name in stage["params"] or any(str(p).startswith(f"{name}") for p in stage["params"])


NOT_STAGES = {"schema", "release", "hub", "loop", "storage"}  # release follows the gate; hub is a service;
# loop drives flows; storage says where folders live (local or a bucket)


def test_params_sections_are_the_stages():
    sections = [key for key in yaml.safe_load((REPO / "params.yaml").read_text()) if key not in NOT_STAGES]
    assert tuple(sections) == STAGES


def test_each_stage_module_has_main_and_never_imports_prefect():
    for name in STAGES:
        source = (REPO / "flows" / "stages" / f"{name}.py").read_text()
        tree = ast.parse(source)
        assert ast.get_docstring(tree), f"{name}.py needs a module docstring"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert "prefect" not in imported, f"flows/stages/{name}.py imports prefect"


def test_prefect_tasks_carry_the_stage_names():
    from flows.orchestration.retrain import TASKS

    assert tuple(TASKS) == STAGES
    assert [task.name for task in TASKS.values()] == list(STAGES)


CLOUD_MODULES = sorted(
    [*(REPO / "flows").rglob("*.py"), *(REPO / "edgeloop" / "demo").glob("*.py"),
     *(REPO / "edgeloop" / name for name in ("cli.py", "loop_cli.py", "release_cli.py", "fleet_cli.py",
                                             "demo_cli.py"))]
)
STALE = ("flows.retrain", "flows.paths", "flows.monitor", "flows.promote", "flows.release_flows", "edgeloop.errors",
         "hub.fleet_cli", "next issue", "arrive with their issues", "retrain-nightly")


@pytest.mark.parametrize("path", CLOUD_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_says_what_it_does_and_what_it_leaves_out(path):
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert len(docstring.split()) >= 8, f"{path.name}: a module docstring saying what it does"
    assert re.search(r"leaves\s+out|does\s+not", docstring, re.IGNORECASE), f"{path.name}: what it leaves out"
    stale = [name for name in STALE if re.search(rf"{re.escape(name)}\b", docstring)]
    assert not stale, f"{path.name} names what is gone: {stale}"
