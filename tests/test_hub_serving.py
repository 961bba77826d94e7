"""The hub's own overhead paths (hub.static_releases, hub.observe, hub.serving), on the real app in process
and, for the command line, a real `edgeloop hub serve`.

- GETs of the release repository are answered before FastAPI's routing, and exactly as the documented
  routes answer (status, headers, body), for files, 304s, 404s and traversal attempts; other methods are
  left to FastAPI (405 as before); with client certificates required, the same 401 as every route.
- The access log is off unless asked for; server errors are logged either way.
- The garbage collector is settled once the served app is built (start-up objects frozen).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from edge.contracts.wire import IDEMPOTENCY_KEY, PARQUET_TYPES
from edgeloop.testkit.hub import ManualClock, free_port, hub_project
from edgeloop.testkit.pki import make_pki
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.app import ROOT_ENV, app_from_environment, create_app
from hub.hot_paths import HotPaths
from hub.registry import add_device
from hub.serving import ACCESS_LOG_ENV, ACCESS_LOGGER, GC_THRESHOLDS, configure_logging
from hub.settings import HubSettings
from simulator.batches import encode_batch


def repository(folder: Path) -> Path:
    """A release repository's files as the hub sees them (static files; what signs them does not matter here)."""
    model = b"\x08\x07onnx-bytes" * 100
    files = {
        "metadata/timestamp.json": b'{"signed": {"_type": "timestamp", "version": 3}}',
        "metadata/root.json": b'{"signed": {"_type": "root", "version": 1}}',
        "metadata/1.root.json": b'{"signed": {"_type": "root", "version": 1}}',
        "metadata/.lock": b"",
        "history.jsonl": b"{}\n",
        f"targets/bundles/1/{hashlib.sha256(model).hexdigest()}.model.onnx": model,
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("serving")
    return hub_project(base / "hub", **{"release.repository": str(repository(base / "repository"))})


@pytest.fixture(scope="module")
def app(project: Path):
    return create_app(HubSettings.load(project))


def send_raw(app, path: str, headers: dict[str, str] | None = None, method: str = "GET",
             content: bytes | None = None) -> httpx.Response:
    """One request to the ASGI ``app`` in this process (httpx's ASGI transport), the path sent as written."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            request = client.build_request(method, "http://hub/", headers=headers, content=content)
            request.url = request.url.copy_with(raw_path=path.encode())
            response = await client.send(request)
            await response.aread()
            return response

    return asyncio.run(go())


def test_release_gets_skip_routing_and_answer_exactly_as_the_routes_do(app, project: Path) -> None:
    releases = HubSettings.load(project).releases
    timestamp = (releases / "metadata" / "timestamp.json").read_bytes()
    etag = f'"{hashlib.sha256(timestamp).hexdigest()}"'
    target = next((releases / "targets").rglob("*.model.onnx")).relative_to(releases / "targets").as_posix()
    cases = [
        ("/releases/metadata/timestamp.json", None),
        ("/releases/metadata/timestamp.json", {"If-None-Match": etag}),
        ("/releases/metadata/timestamp.json", {"If-None-Match": f'"x", W/{etag}'}),
        ("/releases/metadata/timestamp.json", {"If-None-Match": '"stale"'}),
        ("/releases/metadata/2.root.json", None),
        ("/releases/metadata/1.root.json", None),
        ("/releases/metadata/root.json", None),
        (f"/releases/targets/{target}", None),
        ("/releases/metadata/", None),
        ("/releases/targets/bundles", None),
        ("/releases/metadata/%2e%2e/history.jsonl", None),
        ("/releases/targets/..%2f..%2fparams.yaml", None),
        ("/releases/metadata/.lock", None),
    ]
    routes_seen = []

    async def observed(scope, receive, send):  # the full app, noting which route answered
        await app(scope, receive, send)
        routes_seen.append(scope.get("route"))

    documented = create_app(HubSettings.load(project))  # the same hub without the fast path: FastAPI's routes
    documented.user_middleware = [m for m in documented.user_middleware if m.cls is not HotPaths]
    statuses = set()
    for path, headers in cases:
        got, expected = send_raw(observed, path, headers), send_raw(documented, path, headers)
        assert (got.status_code, dict(got.headers), got.content) == (
            expected.status_code, dict(expected.headers), expected.content), path
        statuses.add(got.status_code)
    assert statuses == {200, 304, 404}
    assert len(routes_seen) == len(cases)
    assert not any(isinstance(route, APIRoute) for route in routes_seen)  # never through FastAPI's routing
    assert {route.path for route in routes_seen} == {"/releases/metadata/{path:path}", "/releases/targets/{path:path}"}
    counted = send_raw(app, "/metrics").text
    assert 'route="/releases/metadata/{path:path}",status="304"' in counted


def test_uploads_skip_routing_and_answer_exactly_as_the_route_does(tmp_path: Path) -> None:
    """Every outcome of an upload, through hub.hot_paths and through the documented FastAPI route (two hubs
    on their own projects, the same clock): the same status, headers and body, and nothing routed."""
    clock = ManualClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    hubs = {}
    for way in ("hot", "routed"):
        app = create_app(HubSettings.load(hub_project(tmp_path / way)), clock)
        if way == "routed":
            app.user_middleware = [m for m in app.user_middleware if m.cls is not HotPaths]
        tokens = {name: add_device(app.state.sessions, name, "canary") for name in ("press-1", "press-2")}
        hubs[way] = (app, tokens)
    schema = load_params(tmp_path / "hot" / "params.yaml").schema
    body = encode_batch(make_rows(schema, "press-1", 20, 0))
    key = hashlib.sha256(body).hexdigest()

    def cases(tokens: dict[str, str]) -> list[tuple[str, str, dict[str, str], bytes]]:
        auth = {"Authorization": f"Bearer {tokens['press-1']}"}
        parquet = {**auth, "Content-Type": PARQUET_TYPES[0], IDEMPOTENCY_KEY: key}
        return [
            ("POST", "/v1/devices/press-1/uploads", parquet, body),  # 201
            ("POST", "/v1/devices/press-1/uploads", parquet, body),  # 200, deduplicated
            ("POST", "/v1/devices/press-1/uploads", {**parquet, "Authorization": "Bearer nope"}, body),  # 401
            ("POST", "/v1/devices/press-2/uploads", parquet, body),  # 403
            ("POST", "/v1/devices/Bad!/uploads", parquet, body),  # 422 device id
            ("POST", "/v1/devices/press-1/uploads", {**parquet, IDEMPOTENCY_KEY: "abc"}, body),  # 422 bad_key
            ("POST", "/v1/devices/press-1/uploads", {**parquet, "Content-Type": "image/png"}, body),  # 415
            ("POST", "/v1/devices/press-1/uploads", {**parquet, "Content-Length": str(10**12)}, body),  # 413
            ("POST", "/v1/devices/press-1/uploads", {**parquet, IDEMPOTENCY_KEY: hashlib.sha256(b"x").hexdigest()},
             b"x"),  # 422 unreadable
            ("GET", "/v1/devices/press-1/uploads", auth, b""),  # 405
            ("POST", "/v1/devices//uploads", parquet, body),  # 404: no route
        ]

    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
    routes_seen = []
    for way, (app, tokens) in hubs.items():
        async def observed(scope, receive, send, app=app):
            await app(scope, receive, send)
            routes_seen.append((scope["method"], scope.get("route")))

        answers[way] = []
        for method, path, headers, content in cases(tokens):
            response = send_raw(observed if way == "hot" else app, path, headers, method, content)
            answers[way].append((response.status_code, dict(response.headers), response.content))
    assert answers["hot"] == answers["routed"]
    assert [status for status, _, _ in answers["hot"]] == [201, 200, 401, 403, 422, 422, 415, 413, 422, 405, 404]
    posts = [route for method, route in routes_seen if method == "POST"]
    assert not any(isinstance(route, APIRoute) for route in posts[:-1])  # answered before FastAPI's routing
    assert {route.path for route in posts[:-1]} == {"/v1/devices/{device_id}/uploads"}
    assert landed(hubs["hot"][0]) == landed(hubs["routed"][0]) == {f"press-1/{key}.parquet"}


def landed(app) -> set[str]:
    landing = app.state.settings.landing
    return {p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file()}


def test_other_methods_are_left_to_fastapi(app) -> None:
    for method in ("HEAD", "POST", "PUT", "DELETE"):
        response = send_raw(app, "/releases/metadata/timestamp.json", method=method)
        assert response.status_code == 405, method


def test_required_certificates_guard_the_fast_path_as_every_route(tmp_path: Path, project: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    root = hub_project(tmp_path / "required", tls=pki.tls_params("required"),
                       **{"release.repository": str(repository(tmp_path / "repository"))})
    required = create_app(HubSettings.load(root))
    timestamp = "/releases/metadata/timestamp.json"
    refused = send_raw(required, timestamp)
    fleet_refused = send_raw(required, "/v1/fleet")  # an ordinary route's 401, for comparison
    assert refused.status_code == 401 == fleet_refused.status_code
    assert refused.json() == {"detail": "not authenticated"} == fleet_refused.json()
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/json"
    assert send_raw(required, timestamp, {"Authorization": "Bearer elt_0_x"}).status_code == 401
    admin = HubSettings.load(root).admin_token_file.read_text().strip()
    allowed = send_raw(required, timestamp, {"Authorization": f"Bearer {admin}"})
    assert allowed.status_code == 200 and allowed.json()["signed"]["_type"] == "timestamp"


def _boom() -> None:
    raise RuntimeError("a bug")


def test_access_log_off_by_default_errors_always_logged(project: Path, caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What `edgeloop hub serve` sets up (hub.serving.configure_logging), without and with --access-log."""
    monkeypatch.setattr(logging.getLogger(ACCESS_LOGGER), "level", logging.NOTSET)  # restored afterwards
    monkeypatch.setenv(ACCESS_LOG_ENV, "")
    app = create_app(HubSettings.load(project))
    app.add_api_route("/boom", _boom)
    caplog.set_level(logging.DEBUG)  # capture anything: the access logger's own level decides
    for asked in (False, True):
        configure_logging(access_log=asked)
        caplog.clear()
        assert send_raw(app, "/healthz").status_code == 200
        assert send_raw(app, "/releases/metadata/timestamp.json").status_code == 200
        assert send_raw(app, "/boom").status_code == 500
        access = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
        errors = [r.getMessage() for r in caplog.records if r.name == "edgeloop.hub" and r.levelno >= logging.WARNING]
        assert len(errors) == 1 and "route=/boom status=500" in errors[0]
        assert [line.split(" ms=")[0] for line in access] == ([
            "method=GET route=/healthz status=200",
            "method=GET route=/releases/metadata/{path:path} status=200",
        ] if asked else [])


def test_the_served_app_settles_the_garbage_collector(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app uvicorn's processes build (``app_from_environment``): GC settled, the access log as asked."""
    monkeypatch.setenv(ROOT_ENV, str(project))
    monkeypatch.setattr(logging.getLogger(ACCESS_LOGGER), "level", logging.NOTSET)  # restored afterwards
    thresholds = gc.get_threshold()
    try:
        for asked in ("0", "1"):  # what `edgeloop hub serve` without and with --access-log passes its workers
            monkeypatch.setenv(ACCESS_LOG_ENV, asked)
            gc.unfreeze()
            served = app_from_environment()
            assert served.state.settings.root == project.resolve()
            assert gc.get_freeze_count() > 10_000  # the hub's libraries, out of every full collection
            assert gc.get_threshold() == GC_THRESHOLDS
            assert logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.DEBUG) == (asked == "1")
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.slow
def test_serve_access_log_writes_a_line_per_request(project: Path, tmp_path: Path) -> None:
    """``--access-log`` reaches the served app (off by default: test_the_served_app_settles_...)."""
    edgeloop = str(Path(sys.executable).parent / "edgeloop")
    port = free_port()
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        process = subprocess.Popen([edgeloop, "hub", "serve", "--root", str(project), "--port", str(port),
                                    "--access-log"], stdout=subprocess.DEVNULL, stderr=sink)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None and time.monotonic() < deadline, stderr.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            assert httpx.get(f"http://127.0.0.1:{port}/releases/metadata/timestamp.json").status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=30)
    logged = stderr.read_text()
    assert "edgeloop.hub.access method=GET route=/healthz status=200" in logged
    assert "route=/releases/metadata/{path:path} status=200" in logged
