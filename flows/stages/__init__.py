"""The pipeline's stages, in order. Each is a module here with a plain ``main(params, paths)``.

Stage modules never import Prefect: ``dvc.yaml`` drives them through ``python -m flows STAGE`` and the
Prefect ``retrain`` flow drives the very same ``main`` functions as tasks. One name per stage across
dvc.yaml, params.yaml, the module and the Prefect task (tests/test_stage_names.py checks it).
Leaves out: orchestration (``flows.orchestration.retrain``) and the stages' helpers (``flows.ingest``,
``flows.evaluation``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

STAGES: tuple[str, ...] = ("simulate", "ingest", "split", "train", "export", "evaluate", "gate")


class StageError(Exception):
    """A stage could not produce a trustworthy output; the message says what and why."""


def run_stage(name: str, params: Params, paths: Paths) -> dict[str, Any]:
    """Run one stage's ``main`` and return its summary (numbers and paths for people and artifacts)."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    module = importlib.import_module(f"flows.stages.{name}")
    summary: dict[str, Any] = module.main(params, paths)
    return summary
