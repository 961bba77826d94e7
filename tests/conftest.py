"""Shared test fixtures: telemetry off, the repository's params, and params overrides.

Heavier shared harnesses (the Prefect temporary server) live in their own fixtures below and are
session-scoped so their start-up cost is paid once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.telemetry import switch_off

switch_off()

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def raw_params() -> dict[str, Any]:
    return repo_params_raw()


@pytest.fixture(scope="session")
def prefect_server():
    """One real temporary Prefect server for the whole session (about 8 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
