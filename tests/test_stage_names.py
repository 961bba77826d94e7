"""One name per stage across dvc.yaml, params.yaml, flows/stages/<name>.py and the Prefect task."""

from __future__ import annotations

import ast

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


NOT_STAGES = {"schema", "release", "hub", "loop"}  # release follows the gate; hub is a service; loop drives flows


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
