"""The console's reports: listing, serving with the right types and policies, traversal and symlink escapes
refused, and a missing report answered with a page naming the command that builds it (the hub's real app,
FastAPI's TestClient)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.contracts.layout import Paths
from edgeloop.console import mount
from edgeloop.console.report_pages import SANDBOXED_CSP
from edgeloop.testkit.console_world import START, login
from edgeloop.testkit.project import REPO
from hub.app import create_app
from hub.clock import ManualClock
from hub.settings import HubSettings

OVERVIEW = ('<html><body><h1>Candidate cand-1</h1><a href="reports/drift.html">drift</a>'
            '<a href="../reports/ingest/data_docs/index.html">Data Docs</a></body></html>')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("console-reports")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    paths = Paths.at(root)
    (paths.candidate / "reports").mkdir(parents=True)
    (paths.candidate / "index.html").write_text(OVERVIEW)
    (paths.candidate / "decision.json").write_text('{"passed": true}')
    (paths.candidate / "reports" / "drift.html").write_text("<html><script>var x=1;</script>drift</html>")
    (paths.reports / "evaluate").mkdir(parents=True)
    (paths.reports / "evaluate" / "candidate_quality.html").write_text("<html>quality</html>")
    (paths.data / "curated").mkdir(parents=True)
    (paths.data / "curated" / "secret.csv").write_text("a,b\n1,2\n")
    (root / "outside.html").write_text("<html>outside</html>")
    os.symlink(root / "outside.html", paths.reports / "escape.html")
    os.symlink(paths.data / "curated", paths.reports / "curated-link")
    app = create_app(HubSettings.load(root), ManualClock(START), (mount,))
    token = HubSettings.load(root).admin_token_file.read_text().strip()
    with TestClient(app, base_url="http://testserver") as client:
        login(client, token)
        yield client, root


def test_listing_names_the_reports(world) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    page = client.get("/console/reports")
    assert page.status_code == 200
    assert 'href="/console/reports/candidate/index.html">Candidate overview' in page.text
    assert 'href="/console/reports/reports/evaluate/candidate_quality.html"' in page.text
    assert "candidate/decision.json" in page.text and "secret.csv" not in page.text


def test_serves_reports_with_types_and_policies(world) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    overview = client.get("/console/reports/candidate/index.html")
    assert overview.status_code == 200 and overview.text == OVERVIEW
    assert overview.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in overview.headers["content-security-policy"]
    assert "script-src" not in overview.headers["content-security-policy"]
    drift = client.get("/console/reports/candidate/reports/drift.html")  # the overview's relative link
    assert drift.status_code == 200 and drift.headers["content-security-policy"] == SANDBOXED_CSP
    decision = client.get("/console/reports/candidate/decision.json")
    assert decision.headers["content-type"] == "application/json" and decision.json() == {"passed": True}
    assert decision.headers["x-content-type-options"] == "nosniff"


def test_reports_need_login(world) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    fresh = TestClient(client.app, base_url="http://testserver")
    answer = fresh.get("/console/reports/candidate/index.html", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=")


@pytest.mark.parametrize("path", ["candidate/../curated/secret.csv", "candidate/%2e%2e/curated/secret.csv",
                                  "reports/escape.html", "reports/curated-link/secret.csv", "curated/secret.csv",
                                  "candidate/..%2f..%2fparams.yaml", "../params.yaml", "reports/..%5c..%5cx.html"])
def test_nothing_outside_the_report_folders(world, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    answer = client.get(f"/console/reports/{path}")
    assert answer.status_code == 404 or answer.status_code == 303 and "/console/reports/" not in answer.text
    assert "a,b" not in answer.text and "outside" not in answer.text and "admin_token" not in answer.text


def test_missing_report_names_the_command(world) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    docs = client.get("/console/reports/reports/ingest/data_docs/index.html")  # the overview links it
    assert docs.status_code == 404 and docs.headers["content-type"].startswith("text/html")
    assert "Great Expectations Data Docs" in docs.text and "edgeloop stage ingest" in docs.text
    assert "ingest.data_docs: true" in docs.text and "Log out" in docs.text  # inside the console
    champion = client.get("/console/reports/reports/evaluate/champion_quality.html")
    assert champion.status_code == 404 and "edgeloop stage evaluate" in champion.text
