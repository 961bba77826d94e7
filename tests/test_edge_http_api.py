"""edge.http_api served over real sockets in front of a real Predictor (onnxruntime), through a minimal
Service written here: predict single and batch, feedback, every documented error status, health,
metrics, keep-alive, concurrency, the Unix socket, close(), and the 127.0.0.1 default bind."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.http_api import JSON_TYPE, METRICS_TYPE, ApiServer, Unavailable, UnknownEvent, serve
from edge.inference import InputError, Predictor
from edge.metrics import Registry
from tests.test_edge_inference import _release
from tests.test_edge_monitoring import parse_exposition

ROW = [42.0, 3.5, 7]


class MiniService:
    """The smallest Service a runner could be: predictions remembered for feedback, metrics from a Registry."""

    def __init__(self, predictor: Predictor | None, registry: Registry) -> None:
        self.predictor = predictor
        self.events: dict[int, object] = {}
        self.status = "ok"
        self.registry = registry
        self.predictions = registry.counter("predictions_total", "Predictions made")
        self.lock = threading.Lock()

    def _answer(self, p: Any) -> dict[str, Any]:
        with self.lock:
            self.events[p.event_id] = p.label
        self.predictions.inc()
        return {"label": p.label, "probabilities": p.probabilities, "model_version": p.model_version,
                "event_id": p.event_id}

    def _model(self) -> Predictor:
        if self.predictor is None:
            raise Unavailable("no model is active yet")
        return self.predictor

    def predict(self, features: list[Any] | dict[str, Any], context: dict[str, Any] | None) -> dict[str, Any]:
        if context and context.get("boom"):
            raise RuntimeError("token=SECRET-123 a bug inside the service")
        return self._answer(self._model().predict(features))

    def feedback(self, event_id: int, label: int | str, features: list[Any] | dict[str, Any] | None
                 ) -> dict[str, Any]:
        if label not in (0, 1):
            raise InputError(f"label: {label!r} is not one of the classes [0, 1]")
        with self.lock:
            if event_id not in self.events:
                raise UnknownEvent(f"{event_id} is not a known event")
            predicted = self.events[event_id]
        return {"event_id": event_id, "correct": predicted == label}

    def health(self) -> dict[str, Any]:
        return {"status": self.status, "model_version": None if self.predictor is None else self.predictor.version}

    def metrics_text(self) -> str:
        return self.registry.render()


class BatchMiniService(MiniService):
    def predict_batch(self, rows: list[Any], context: dict[str, Any] | None) -> list[dict[str, Any]]:
        return [self._answer(p) for p in self._model().predict_batch(rows)]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.from_folder(_release(tmp_path_factory.mktemp("api") / "v1", "v1"))


@pytest.fixture
def service(predictor: Predictor) -> MiniService:
    return MiniService(predictor, Registry())


@pytest.fixture
def api(service: MiniService) -> Iterator[ApiServer]:
    with serve(service, max_body_bytes=64 * 1024, registry=service.registry) as server:
        yield server


def call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None,
         content_type: str = JSON_TYPE, raw: bytes | None = None) -> tuple[int, http.client.HTTPResponse, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    is_json = response.getheader("Content-Type") == JSON_TYPE
    return response.status, response, json.loads(payload) if is_json else payload.decode()


def connect(api: ApiServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)


def test_predict_single_row_matches_the_predictor(api: ApiServer, predictor: Predictor) -> None:
    conn = connect(api)
    status, response, body = call(conn, "POST", "/predict", {"features": ROW})
    direct = predictor.predict(ROW)
    assert status == 200 and response.getheader("Content-Length") == str(len(json.dumps(body, separators=(",", ":"))))
    assert set(body) == {"label", "probabilities", "model_version", "event_id"}
    assert body["label"] == direct.label and body["model_version"] == "v1" and isinstance(body["event_id"], int)
    assert body["probabilities"] == {str(k): v for k, v in direct.probabilities.items()}  # JSON floats round-trip
    status, _, by_name = call(conn, "POST", "/predict", {"features": {"count": 7, "load": 3.5, "temp": 42.0},
                                                         "context": {"line": "A"}})
    assert status == 200 and by_name["probabilities"] == body["probabilities"]
    assert by_name["event_id"] > body["event_id"]


@pytest.mark.parametrize("kind", [MiniService, BatchMiniService])
def test_predict_batch(predictor: Predictor, kind: type[MiniService]) -> None:
    service = kind(predictor, Registry())
    rows: list[Any] = [ROW, {"count": 1, "load": 9.0, "temp": None}, [10.0, 0.5, 3]]
    with serve(service) as api:
        conn = connect(api)
        status, _, body = call(conn, "POST", "/predict", {"rows": rows})
        assert status == 200 and isinstance(body, list) and len(body) == 3
        for answer, row in zip(body, rows, strict=True):
            assert answer["probabilities"] == {str(k): v for k, v in predictor.predict(row).probabilities.items()}
        assert len({answer["event_id"] for answer in body}) == 3
        status, _, error = call(conn, "POST", "/predict", {"rows": [ROW, [1.0, None, 3]]})
        assert status == 422 and error["error"].startswith("rows[1].load: missing value")
        status, _, error = call(conn, "POST", "/predict", {"rows": [ROW, "x"]})
        assert status == 422 and error["error"].startswith("rows[1]: expected a list in feature order")
        assert call(conn, "POST", "/predict", {"rows": []})[2] == []


def test_feedback_known_unknown_and_invalid(api: ApiServer) -> None:
    conn = connect(api)
    _, _, prediction = call(conn, "POST", "/predict", {"features": ROW})
    status, _, body = call(conn, "POST", "/feedback", {"event_id": prediction["event_id"], "label": 1,
                                                      "features": ROW})
    assert status == 200 and body == {"event_id": prediction["event_id"], "correct": prediction["label"] == 1}
    status, _, body = call(conn, "POST", "/feedback", {"event_id": 12345, "label": 1})
    assert status == 404 and body == {"error": "event_id: 12345 is not a known event"}
    cases = [
        ({"label": 1}, "event_id: required field is missing"),
        ({"event_id": True, "label": 1}, "event_id: expected an integer, got a boolean"),
        ({"event_id": "7", "label": 1}, "event_id: expected an integer, got a string"),
        ({"event_id": 1, "label": None}, "label: expected a class"),
        ({"event_id": prediction["event_id"], "label": 7}, "label: 7 is not one of the classes"),
        ({"event_id": 1, "label": 1, "features": 3}, "features: expected a list in feature order"),
        ({"event_id": 1, "label": 1, "extra": 3}, "extra: unknown field"),
    ]
    for document, message in cases:
        status, _, body = call(conn, "POST", "/feedback", document)
        assert status == 422 and body["error"].startswith(message), (document, body)


def test_request_errors_have_their_status_and_name_the_field(api: ApiServer) -> None:
    conn = connect(api)
    status, _, body = call(conn, "POST", "/predict", raw=b'{"features": [1, 2,')
    assert status == 400 and body["error"].startswith("body: not valid JSON")
    status, _, body = call(conn, "POST", "/predict", raw=b'{"features": [NaN, 1, 2]}')
    assert status == 400 and "NaN" in body["error"]
    status, _, body = call(conn, "POST", "/predict", {"features": ROW}, content_type="text/plain")
    assert status == 415 and body["error"] == "Content-Type: expected application/json, got 'text/plain'"
    status, _, body = call(conn, "POST", "/predict", {"features": {"temp": 1.0, "load": 2.0, "count": 3,
                                                                   "speed": 9.0}})
    assert status == 422 and body["error"].startswith("speed: unknown feature")
    status, _, body = call(conn, "POST", "/predict", {"features": [1.0, "fast", 3]})
    assert status == 422 and body["error"].startswith("load: expected a number")
    status, _, body = call(conn, "POST", "/predict", {"features": ROW, "rows": [ROW]})
    assert status == 422 and "not both" in body["error"]
    status, _, body = call(conn, "POST", "/predict", {"context": {}})
    assert status == 422 and body["error"].startswith("features: required field is missing")
    status, _, body = call(conn, "POST", "/predict", [ROW])
    assert status == 422 and body["error"].startswith("body: expected a JSON object")
    status, _, body = call(conn, "POST", "/predict", {"features": ROW, "context": [1]})
    assert status == 422 and body["error"] == "context: expected an object, got a list"
    status, _, body = call(conn, "GET", "/nothing?x=1")
    assert status == 404 and body["error"].startswith("path: no endpoint '/nothing'")
    status, response, body = call(conn, "GET", "/predict")
    assert status == 405 and response.getheader("Allow") == "POST" and body["error"].startswith("method:")
    status, response, _ = call(conn, "DELETE", "/health", raw=b"{}")  # a small body is drained...
    assert status == 405 and response.getheader("Allow") == "GET"
    assert call(conn, "POST", "/predict", {"features": ROW})[0] == 200  # ...so the connection still works


def test_oversized_body_is_refused_from_the_header_without_reading_it(api: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000000\r\n\r\n" + b"[" * 1000)  # far less than announced
        reply = _read_until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
    assert json.loads(body) == {"error": "body: 5000000 bytes is over the limit of 65536"}
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:  # a client that keeps sending
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 3000000\r\n\r\n")
        sender = threading.Thread(target=_send_quietly, args=(sock, b"1" * 3_000_000))
        sender.start()
        reply = _read_until_closed(sock)
        sender.join(timeout=10)
    assert reply.startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n")
        reply = _read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 411 ") and b"chunked bodies are not accepted" in reply


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_health_and_metrics(api: ApiServer, service: MiniService) -> None:
    conn = connect(api)
    status, _, body = call(conn, "GET", "/health")
    assert status == 200 and body == {"status": "ok", "model_version": "v1"}
    service.status = "degraded"
    assert call(conn, "GET", "/health")[0] == 200
    service.status = "error"
    status, _, body = call(conn, "GET", "/health")
    assert status == 503 and body["status"] == "error"
    call(conn, "POST", "/predict", {"features": ROW})
    call(conn, "GET", "/nowhere")
    status, response, text = call(conn, "GET", "/metrics")
    assert status == 200 and response.getheader("Content-Type") == METRICS_TYPE
    families = parse_exposition(text)
    assert families["edgeloop_runner_predictions_total"]["samples"] == {(): 1.0}
    requests = families["edgeloop_runner_http_requests_total"]["samples"]
    assert isinstance(requests, dict)
    assert requests[(("route", "/predict"), ("code", "200"))] == 1.0
    assert requests[(("route", "other"), ("code", "404"))] == 1.0
    assert requests[(("route", "/health"), ("code", "503"))] == 1.0


def test_no_model_is_503_and_a_service_bug_is_500_without_details(
        predictor: Predictor, caplog: pytest.LogCaptureFixture) -> None:
    service = MiniService(None, Registry())
    with serve(service) as api:
        conn = connect(api)
        status, _, body = call(conn, "POST", "/predict", {"features": ROW})
        assert status == 503 and body == {"error": "service: no model is active yet"}
        service.predictor = predictor
        with caplog.at_level(logging.ERROR, logger="edge.http_api"):
            status, _, body = call(conn, "POST", "/predict", {"features": ROW, "context": {"boom": True}})
        assert status == 500 and body == {"error": "internal error"}
        assert any(r.exc_info and "a bug inside the service" in str(r.exc_info[1]) for r in caplog.records)
        assert call(conn, "POST", "/predict", {"features": ROW})[0] == 200  # still serving, same connection


def test_keep_alive_reuses_one_connection(api: ApiServer) -> None:
    conn = connect(api)
    call(conn, "GET", "/health")
    sock = conn.sock
    assert sock is not None
    local = sock.getsockname()
    for _ in range(10):
        status, response, _ = call(conn, "POST", "/predict", {"features": ROW})
        assert status == 200 and not response.will_close
    status, _, _ = call(conn, "POST", "/predict", {"features": [1.0]})  # an error answer keeps it open too
    assert status == 422
    assert conn.sock is sock and sock.getsockname() == local
    server_side = [c for c in api._server.api.connections if c.getpeername() == local]
    assert len(server_side) == 1 and server_side[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_two_hundred_concurrent_requests_are_all_answered(api: ApiServer, service: MiniService) -> None:
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def client(k: int) -> None:
        conn = connect(api)
        conn.connect()
        barrier.wait()  # all 200 connections open, then all requests at once
        status, _, body = call(conn, "POST", "/predict", {"features": [float(k % 100), float(k % 10), k % 50]})
        conn.close()
        if status == 200:
            with lock:
                results.append(body["event_id"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 200 and len(set(results)) == 200
    assert set(results) == set(service.events)


def test_binds_loopback_by_default_and_close_ends_keep_alive_connections(service: MiniService) -> None:
    api = serve(service)
    server_socket = api._server.socket
    assert server_socket.getsockname()[0] == "127.0.0.1" and api.url == f"http://127.0.0.1:{api.port}"
    assert api.port > 0
    conn = connect(api)
    assert call(conn, "GET", "/health")[0] == 200
    api.close()
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
        call(conn, "GET", "/health")  # the open keep-alive connection was shut down
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", api.port), timeout=2).close()
    api.close()  # idempotent


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_unix_socket(service: MiniService) -> None:
    with tempfile.TemporaryDirectory(prefix="el-") as scratch:
        path = str(Path(scratch) / "api.sock")
        with serve(service, unix_socket=path) as api:
            assert api.url == f"unix:{path}" and api.port == 0
            assert (Path(path).stat().st_mode & 0o777) == 0o660
            conn = UnixConnection(path)
            for _ in range(3):
                status, _, body = call(conn, "POST", "/predict", {"features": ROW})
                assert status == 200 and math.isclose(sum(body["probabilities"].values()), 1.0, rel_tol=1e-5)
            with pytest.raises(FileExistsError, match="in use"):
                serve(service, unix_socket=path)
            conn.close()
        assert not Path(path).exists()
        Path(path).write_text("not a socket")
        with pytest.raises(FileExistsError, match="not a socket"):
            serve(service, unix_socket=path)
        assert Path(path).read_text() == "not a socket"  # never deleted
