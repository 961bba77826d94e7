"""The runner's local HTTP API: a stdlib threading HTTP/1.1 server in front of a ``Service``.

``serve(service)`` starts a ``ThreadingHTTPServer`` (one daemon thread per connection) on 127.0.0.1 and
an ephemeral port unless told otherwise, or on a Unix socket (``unix_socket=path``), in a daemon thread,
and returns an ``ApiServer`` (``.url``, ``.port``, ``.close()``). Endpoints:

* ``POST /predict`` ``{"features": [...] | {...}, "context": {...}?}`` -> ``service.predict(...)``'s dict
  (label, probabilities keyed by class as strings, model_version, event_id); ``{"rows": [...]}`` -> a
  list, through ``service.predict_batch(rows, context)`` when the service has one (all rows checked before
  any is predicted), else one ``predict`` per row.
* ``POST /feedback`` ``{"event_id": int, "label": int | str, "features": [...] | {...} | null?}``.
* ``GET /health`` -> ``service.health()``; 200 when its "status" is "ok" or "degraded", else 503.
* ``GET /metrics`` -> ``service.metrics_text()`` as ``text/plain; version=0.0.4``.

Errors are JSON ``{"error": "<field>: <what is wrong>"}``: 400 bad JSON or Content-Length, 404 unknown
path or (``UnknownEvent`` from the service) unknown event id, 409 (``LabelConflict``) a label that
contradicts the one recorded for the event, 405 wrong method (with ``Allow``), 411 no
Content-Length (chunked bodies are refused), 413 body over ``max_body_bytes`` (refused from the header,
without reading the body; the connection is closed), 415 not ``application/json``, 422 schema errors
(the service's ``edge.inference.InputError`` message, or the field of the request that is wrong), 503
``Unavailable`` from the service (no model yet). Any other exception from the service is logged with its
traceback and answered 500 ``{"error": "internal error"}``; the server keeps serving.

Keep-alive: every response has a Content-Length and goes out in one write; TCP_NODELAY is set; idle
connections close after ``idle_timeout_s``. Nothing is logged per request unless ``access_log`` is given
(method, path without query, status, milliseconds at DEBUG: never headers or bodies). ``close()`` stops
accepting, shuts down open keep-alive connections and closes the socket.

The service is called from many threads at once and must be thread-safe. Leaves out: TLS and
authentication (the API listens on loopback or a Unix socket whose permissions guard it), CORS, chunked
request bodies, HTTP/2. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast

from edge.config import ApiConfig
from edge.inference import InputError
from edge.metrics import Registry

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "JSON_TYPE",
    "LabelConflict",
    "METRICS_TYPE",
    "ApiServer",
    "in_use_message",
    "port_problem",
    "BatchService",
    "Service",
    "Unavailable",
    "UnknownEvent",
    "serve",
]

DEFAULT_MAX_BODY_BYTES = ApiConfig.max_body_bytes
DEFAULT_IDLE_TIMEOUT_S = 30.0  # an idle keep-alive connection is closed after this
LINGER_S = 1.0  # after refusing an unread body: how long to drain it before closing
JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES: Mapping[str, str] = {"/predict": "POST", "/feedback": "POST", "/health": "GET", "/metrics": "GET"}
HEALTHY = ("ok", "degraded")

log = logging.getLogger(__name__)


class UnknownEvent(LookupError):
    """Raised by ``Service.feedback`` for an event id it does not know (answered 404)."""


class LabelConflict(LookupError):
    """Raised by ``Service.feedback`` for a label that contradicts the one already recorded (answered 409)."""


class Unavailable(RuntimeError):
    """Raised by the service when it cannot answer now, e.g. no model is active (answered 503)."""


class Service(Protocol):
    """What the runner gives the API. Called from many threads at once."""

    def predict(self, features: list[Any] | dict[str, Any], context: dict[str, Any] | None) -> dict[str, Any]: ...

    def feedback(self, event_id: int, label: int | str, features: list[Any] | dict[str, Any] | None
                 ) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def metrics_text(self) -> str: ...


class BatchService(Service, Protocol):
    """A service that predicts many rows in one call (checked before any is predicted)."""

    def predict_batch(self, rows: list[Any], context: dict[str, Any] | None) -> list[dict[str, Any]]: ...


class _Reply(Exception):
    """An HTTP error answer; ``close`` when the connection cannot be reused (body left unread)."""

    def __init__(self, status: int, message: str, close: bool = False, headers: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = headers


@dataclass
class _Api:
    service: Service
    max_body_bytes: int
    access_log: logging.Logger | None
    requests: Any  # edge.metrics.Counter or None
    connections: set[socket.socket] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _HasApi(Protocol):
    api: _Api


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgeloop-runner"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.api: _Api = cast(_HasApi, self.server).api

    # -- dispatch --

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        started = time.perf_counter()
        self._body_read = False
        self._linger = False
        path = self.path.split("?", 1)[0]
        route = path if path in ROUTES else "other"
        try:
            status, body, content_type = self._route(path)
            headers: tuple[str, ...] = ()
        except _Reply as reply:
            status, content_type, headers = reply.status, JSON_TYPE, reply.headers
            body = json.dumps({"error": reply.message}).encode()
            if reply.close:
                self.close_connection = self._linger = True
        if not self._body_read:
            self._discard_body()
        self._send(status, body, content_type, headers)
        if self.api.requests is not None:
            self.api.requests.inc(route, status)
        if self.api.access_log is not None:
            self.api.access_log.debug("method=%s path=%s status=%d ms=%.2f", self.command, _short(path), status,
                                      (time.perf_counter() - started) * 1000)

    def _route(self, path: str) -> tuple[int, bytes, str]:
        method = ROUTES.get(path)
        if method is None:
            raise _Reply(404, f"path: no endpoint {_short(path)!r} (endpoints: {', '.join(ROUTES)})")
        if self.command != method:
            raise _Reply(405, f"method: {path} accepts {method} only, not {_short(self.command, 10)}",
                         headers=(f"Allow: {method}",))
        if path == "/health":
            report = self._call(self.api.service.health)
            return (200 if report.get("status") in HEALTHY else 503), _json(report), JSON_TYPE
        if path == "/metrics":
            return 200, self._call(self.api.service.metrics_text).encode(), METRICS_TYPE
        document = self._read_json()
        if path == "/predict":
            return 200, _json(self._predict(document)), JSON_TYPE
        return 200, _json(self._feedback(document)), JSON_TYPE

    # -- requests --

    def _predict(self, document: object) -> object:
        body = _object(document, ("features", "rows", "context"), "features or rows, and optionally context")
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise _Reply(422, f"context: expected an object, got {_kind(context)}")
        if "features" in body and "rows" in body:
            raise _Reply(422, "features: give either features (one row) or rows (a batch), not both")
        if "features" in body:
            features = _row(body["features"], "features")
            return self._call(lambda: self.api.service.predict(features, context))
        if "rows" not in body:
            raise _Reply(422, "features: required field is missing (or give rows for a batch)")
        raw = body["rows"]
        if not isinstance(raw, list):
            raise _Reply(422, f"rows: expected a list of rows, got {_kind(raw)}")
        rows = [_row(r, f"rows[{i}]") for i, r in enumerate(raw)]
        batch = getattr(self.api.service, "predict_batch", None)
        if callable(batch):
            return self._call(lambda: batch(rows, context))
        return [self._call(functools.partial(self.api.service.predict, row, context), f"rows[{i}].")
                for i, row in enumerate(rows)]

    def _feedback(self, document: object) -> object:
        body = _object(document, ("event_id", "label", "features"), "event_id, label and optionally features")
        for name in ("event_id", "label"):
            if name not in body:
                raise _Reply(422, f"{name}: required field is missing")
        event_id, label, features = body["event_id"], body["label"], body.get("features")
        if isinstance(event_id, bool) or not isinstance(event_id, int):
            raise _Reply(422, f"event_id: expected an integer, got {_kind(event_id)}")
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise _Reply(422, f"label: expected a class (an integer or a string), got {_kind(label)}")
        row = None if features is None else _row(features, "features")
        return self._call(lambda: self.api.service.feedback(event_id, label, row))

    def _call(self, fn: Callable[[], Any], where: str = "") -> Any:
        try:
            return fn()
        except InputError as exc:
            raise _Reply(422, f"{where}{exc}") from None
        except UnknownEvent as exc:
            raise _Reply(404, f"event_id: {exc.args[0] if exc.args else 'unknown event id'}") from None
        except LabelConflict as exc:
            raise _Reply(409, f"label: {exc.args[0] if exc.args else 'the event is labelled already'}") from None
        except Unavailable as exc:
            raise _Reply(503, f"service: {exc.args[0] if exc.args else 'unavailable'}") from None
        except Exception:
            log.error("%s %s: the service failed", self.command, self.path.split("?", 1)[0], exc_info=True)
            raise _Reply(500, "internal error") from None

    # -- body --

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Reply(411, "Content-Length: required (chunked bodies are not accepted)", close=True)
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise _Reply(411, "Content-Length: required", close=True)
        if not raw.strip().isdigit():
            raise _Reply(400, f"Content-Length: {_short(raw, 20)!r} is not a size in bytes", close=True)
        size = int(raw)
        if size > self.api.max_body_bytes:
            raise _Reply(413, f"body: {size} bytes is over the limit of {self.api.max_body_bytes}", close=True)
        return size

    def _read_json(self) -> object:
        size = self._content_length()
        data = self.rfile.read(size)
        self._body_read = True
        if len(data) != size:
            raise _Reply(400, f"body: ended after {len(data)} of {size} bytes", close=True)
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != JSON_TYPE:
            raise _Reply(415, f"Content-Type: expected {JSON_TYPE}, got {_short(content_type, 40) or 'none'!r}")
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Reply(400, f"body: not valid JSON ({_short(str(exc), 80)})") from None

    def _discard_body(self) -> None:
        """Keep the connection usable after an early answer: drain a small body, else close."""
        self._body_read = True
        if self.headers is None or self.close_connection:
            return
        raw = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") is not None or (raw is not None and not raw.strip().isdigit()):
            self.close_connection = self._linger = True
        elif raw is not None and int(raw) > 0:
            if int(raw) > self.api.max_body_bytes:
                self.close_connection = self._linger = True
            else:
                self.rfile.read(int(raw))

    # -- response --

    def _send(self, status: int, body: bytes, content_type: str, headers: tuple[str, ...] = ()) -> None:
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {_http_date()}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", *headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def finish(self) -> None:
        super().finish()
        if getattr(self, "_linger", False):
            _linger(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        if self.api.access_log is not None:
            self.api.access_log.debug("http: " + format, *args)


class _TcpHandler(_Handler):
    disable_nagle_algorithm = True  # TCP_NODELAY: small responses go out at once


def _linger(connection: socket.socket) -> None:
    """Half-close, then read and drop what the client still sends (up to LINGER_S), so closing with an
    unread body does not reset the connection before the client has read our error answer."""
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_S
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(65536):
                break
    except OSError:
        pass


def _json(value: object) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _object(document: object, keys: tuple[str, ...], expected: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise _Reply(422, f"body: expected a JSON object with {expected}, got {_kind(document)}")
    for key in document:
        if key not in keys:
            raise _Reply(422, f"{_short(key)}: unknown field (expected {expected})")
    return document


def _row(value: object, where: str) -> list[Any] | dict[str, Any]:
    if not isinstance(value, list | dict):
        raise _Reply(422, f"{where}: expected a list in feature order or an object by feature name, "
                          f"got {_kind(value)}")
    return value


# --- servers -----------------------------------------------------------------------------------------

class _Tracking:
    """Mixin: remember open connections so ``close`` can end keep-alive ones; log handler crashes."""

    api: _Api

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.api.lock:
            self.api.connections.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self.api.lock:
            self.api.connections.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # the client went away mid-response, a timeout, ...
            log.debug("connection ended with an error", exc_info=True)
        else:
            log.error("request handler failed", exc_info=True)


class _TcpServer(_Tracking, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup of the host
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _TcpServer6(_TcpServer):
    address_family = socket.AF_INET6


class _UnixServer(_Tracking, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256


class ApiServer:
    """A running API: ``url``, ``port`` (0 on a Unix socket), ``close()``. Usable as a context manager."""

    def __init__(self, server: _TcpServer | _UnixServer, url: str, port: int, unix_socket: str | None) -> None:
        self._server = server
        self.url = url
        self.port = port
        self.unix_socket = unix_socket
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="edge-http-api", daemon=True)
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop accepting, end open connections, close the socket (and remove our Unix socket file)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        api = self._server.api
        with api.lock:
            open_connections = list(api.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_socket)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(service: Service, host: str = "127.0.0.1", port: int = 0, *, unix_socket: str | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
          access_log: logging.Logger | None = None, registry: Registry | None = None) -> ApiServer:
    """Start the API for ``service`` in a daemon thread (TCP ``host:port``, or ``unix_socket`` when given).

    ``registry`` (optional) gets ``edgeloop_runner_http_requests_total{route,code}``.
    """
    requests = None if registry is None else registry.counter(
        "http_requests_total", "HTTP API requests answered, by route and status code", ("route", "code"))
    api = _Api(service, max_body_bytes, access_log, requests)
    handler: type[_Handler] = type("Handler", (_TcpHandler if unix_socket is None else _Handler,),
                                   {"timeout": idle_timeout_s})
    if unix_socket is not None:
        _clear_stale_socket(unix_socket)
        unix = _UnixServer(unix_socket, handler, bind_and_activate=False)
        unix.api = api
        try:
            unix.server_bind()
            os.chmod(unix_socket, 0o660)
            unix.server_activate()
        except OSError:
            unix.server_close()
            raise
        return ApiServer(unix, f"unix:{unix_socket}", 0, unix_socket)
    tcp = (_TcpServer6 if ":" in host else _TcpServer)((host, port), handler, bind_and_activate=False)
    tcp.api = api
    try:
        tcp.server_bind()
        tcp.server_activate()
    except OSError:
        tcp.server_close()
        raise
    bound = tcp.server_port
    shown = f"[{host}]" if ":" in host else host
    return ApiServer(tcp, f"http://{shown}:{bound}", bound, None)


def in_use_message(host: str, port: int) -> str:
    """The one line for a TCP port another process holds."""
    return (f"port {port} on {host} is already in use: another runner? set [api] port in runner.toml "
            f"or --port")


def port_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port`` (bound and released at once, with the server's
    SO_REUSEADDR), or None. Port 0 (any free port) never has one."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return in_use_message(host, port)
            return f"api: cannot serve on {host}:{port}: {exc.strerror or exc}"
    return None


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead runner; refuse a live one or any other kind of file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"unix_socket: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover of a previous run
        return
    finally:
        probe.close()
    raise FileExistsError(f"unix_socket: {path} is in use by another server")
