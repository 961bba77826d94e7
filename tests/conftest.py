"""Shared test fixtures: telemetry off, the repository's params, and params overrides.

Heavier shared harnesses (the Prefect temporary server) live in their own fixtures below and are
session-scoped so their start-up cost is paid once.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from edge.telemetry import switch_off

switch_off()
# The CLI's rich consoles are made when their modules are imported and read the width then: one fixed width
# for the whole session, whatever terminal (or none, as in a pytest-xdist worker) the tests run in.
os.environ["COLUMNS"] = "200"

from edgeloop.testkit.project import REPO, override, repo_params_raw  # noqa: E402

__all__ = ["REPO", "override", "repo_params_raw"]


@pytest.fixture
def raw_params() -> dict[str, Any]:
    return repo_params_raw()


@pytest.fixture(scope="session")
def prefect_server():
    """One real temporary Prefect server for the whole session (about 8 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs the Prefect server or the S3 server (``s3_server``, edgeloop/testkit/s3.py) is slow
    (the fast lane, ``-m "not slow"``, never starts them); other slow tests (other servers, processes, the
    demo, kill -9 loops) carry ``pytest.mark.slow`` themselves."""
    for item in items:
        if {"prefect_server", "s3_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
