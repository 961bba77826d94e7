"""A project folder for tests and benchmarks: the repository's params.yaml, with dotted-key overrides.

``REPO`` is the source checkout this package runs from (the test kit is for a clone, as the demo is);
``repo_params_raw()`` reads its params.yaml as a mapping; ``override(raw, {"train.model": "rf"})`` returns
a changed copy. Leaves out writing projects (each kit does what it needs) and pytest fixtures (tests/).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REPO", "override", "repo_params_raw"]

REPO = Path(__file__).resolve().parents[2]


def repo_params_raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def override(raw: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with ``{"train.model": "rf"}``-style keys replaced."""
    out = copy.deepcopy(raw)
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out
