"""Test kit for the edge runner end to end: a plant's data, real models, a real hub serving a real TUF
repository, and a runner config pointing at it.

Models are scikit-learn HistGradientBoosting on the simulator's sensors, exported with the pipeline's own
``flows.stages.export.to_onnx_bytes``; manifests are built by the gate's ``build_manifest`` from the
repository's params.yaml (so features, classes and upload columns are the real ones), with an edge
policy a test can tighten. ``flip=True`` trains on inverted labels: a model that is confidently wrong.

Transport security: with a ``PlantPki`` (edgeloop.testkit.pki: the plant CA, a hub certificate for
127.0.0.1/localhost, device certificates signed from CSRs made by ``edge.device_keys``), ``tls_hub``
serves a small HTTPS stand-in for the hub's device endpoints (``POST /v1/enroll``, renewal at
``/v1/devices/<id>/certificate``, uploads, summaries, heartbeats, and a TUF repository folder under
``/releases/``) with ``edge.contracts.tls.server_context``: it records which device each request's
client certificate names, so the device side is tested apart from the real hub's own TLS tests.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import socket
import ssl
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.contracts.manifest import EdgePolicy
from edge.contracts.release_layout import MANIFEST_FILE
from edge.contracts.wire import IDEMPOTENCY_KEY
from edgeloop.testkit.pki import PlantPki
from edgeloop.testkit.project import REPO, override, repo_params_raw
from edgeloop.testkit.releases import make_candidate, make_manifest, release_config
from flows.params import Params, load_params
from flows.releases import init_repository, publish
from flows.releases.config import ReleaseConfig

FAST_POLICY = EdgePolicy(shadow_margin=0.02, min_shadow_rows=100, accuracy_floor=0.8, watch_window_s=600.0,
                         watch_min_feedback=40, max_model_errors=5)


@functools.lru_cache(maxsize=1)
def params() -> Params:
    return load_params(REPO / "params.yaml")


@functools.lru_cache(maxsize=4)
def site_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` rows of one simulated machine: features (NaN for dropouts) in schema order, labels."""
    from simulator.fleet import simulate_device

    frame = simulate_device(0, rows, seed, "2026-03-01", 60.0)
    names = params().schema.feature_names
    return frame[names].to_numpy(dtype=np.float64), frame[params().schema.label.name].to_numpy(dtype=np.int64)


@functools.lru_cache(maxsize=4)
def model_bytes(seed: int, flip: bool = False) -> bytes:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flows.stages.export import to_onnx_bytes

    x, y = site_data(6000, seed)
    if flip:
        y = 1 - y
    estimator = HistGradientBoostingClassifier(max_iter=40, random_state=seed).fit(x, y)
    return to_onnx_bytes(estimator, x.shape[1], 17, {})


def write_candidate(folder: Path, seed: int, flip: bool = False, policy: EdgePolicy = FAST_POLICY,
                    model: bytes | None = None, reference_rows: np.ndarray | None = None) -> Path:
    """A candidate folder as the gate writes it, with a manifest from the real params.yaml (``model``
    replaces the small model trained from ``seed``; ``reference_rows`` its training rows)."""
    import pandas as pd

    from flows.evaluation.bundle import build_manifest, reference_from_json
    from flows.reference_stats import reference_stats

    model = model_bytes(seed, flip) if model is None else model
    name = f"cand-{seed:06d}{'f' if flip else 'g'}00000"
    make_candidate(folder, model, name)
    x = site_data(6000, seed)[0] if reference_rows is None else reference_rows
    frame = pd.DataFrame(x, columns=params().schema.feature_names)
    reference = reference_from_json(reference_stats(frame, params().schema, 10))
    template = make_manifest(model, name)
    manifest = build_manifest(params(), name, model, reference, template.gate, template.lineage)
    (folder / MANIFEST_FILE).write_text(replace(manifest, policy=policy).to_json())
    return folder


class ReleaseWorld:
    """A TUF repository in ``base/project`` served by a hub rooted at ``base/hub``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.config: ReleaseConfig = release_config(base / "project")
        self.root_bytes = init_repository(self.config).read_bytes()
        self.hub_root = base / "hub"
        self.hub_root.mkdir(parents=True, exist_ok=True)
        raw = override(repo_params_raw(), {"release.repository": str(self.config.repository)})
        (self.hub_root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.published = 0

    def publish(self, seed: int, flip: bool = False, policy: EdgePolicy = FAST_POLICY, model: bytes | None = None,
                reference_rows: np.ndarray | None = None) -> int:
        self.published += 1
        folder = write_candidate(self.base / f"cand-{self.published}", seed, flip, policy, model, reference_rows)
        return publish(self.config, folder, "canary").version


def runner_config(folder: Path, hub_url: str, token: str | None, root_bytes: bytes,
                  **sections: dict[str, Any]) -> Path:
    """A runner config file in ``folder`` (state dir ``folder/state``); ``sections`` override keys.
    ``token`` None: no token file (a device that authenticates with its client certificate)."""
    folder.mkdir(parents=True, exist_ok=True)
    hub: dict[str, Any] = {"url": hub_url}
    if token is not None:
        (folder / "token").write_text(token + "\n")
        os.chmod(folder / "token", 0o600)
        hub["token_file"] = "token"
    (folder / "root.json").write_bytes(root_bytes)
    values: dict[str, dict[str, Any]] = {
        "hub": {**hub, "heartbeat_interval_s": 1, "timeout_s": 5},
        "releases": {"trusted_root": "root.json", "poll_interval_s": 1, "poll_jitter": 0.0},
        "api": {"port": 0},
        "upload": {"batch_rows": 200, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    }
    for name, keys in sections.items():
        values.setdefault(name, {}).update(keys)
    lines = ['device_id = "press-1"', 'state_dir = "state"']
    for name, keys in values.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in keys.items())
    path = folder / "runner.toml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` every 50 ms until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- transport security: a plant CA and an HTTPS stand-in for the hub's device endpoints ---------------

@dataclass
class Seen:
    """One request the stand-in hub answered."""

    method: str
    path: str
    device: str | None  # the device its client certificate names (None: no certificate)
    serial: str | None  # that certificate's serial number
    status: int
    at: float


@dataclass
class HubState:
    """What the stand-in hub knows and did; tests change ``codes``, ``tokens`` and the failure knobs."""

    pki: PlantPki
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # one-time code -> (device id, channel)
    tokens: dict[str, str] = field(default_factory=dict)  # device id -> bearer token
    trusted_root: str = '{"signed": {"_type": "root"}, "signatures": []}'
    certificate_days: float = 90.0  # validity of the certificates it issues (fractions for tests)
    fail_renewals: int = 0  # answer this many renewals with 503 first
    echo_code_on_422: bool = False  # a 422 that repeats the code back (the device must not show it)
    releases: Path | None = None  # serve <releases>/metadata and <releases>/targets under /releases/
    seen: list[Seen] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # Idempotency-Key -> decoded body
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    renewals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, csr: str, device_id: str, channel: str) -> dict[str, Any]:
        from hub.pki import load_certificate

        certificate = self.pki.sign(csr, device_id, timedelta(days=self.certificate_days))
        ends = load_certificate(certificate).not_valid_after_utc
        return {"device_id": device_id, "channel": channel, "certificate": certificate.decode(),
                "ca": self.pki.ca.pem.decode(), "trusted_root": self.trusted_root, "not_after": ends.isoformat()}


_DEVICE_ACTION = re.compile(r"^/v1/devices/([^/]+)/([a-z]+)$")


class _TlsHubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real hub
    server: _TlsHubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _peer(self) -> tuple[str | None, str | None]:
        from edge.contracts.identity import device_id_from_uri

        connection = self.connection
        peer = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
        if not peer:
            return None, None
        uris = [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
        ids = {device_id_from_uri(uri) for uri in uris} - {None}
        return (ids.pop() if len(ids) == 1 else None), str(peer.get("serialNumber"))

    def _answer(self, status: int, body: Any, device: str | None, serial: str | None) -> None:
        data = json.dumps(body).encode()
        state = self.server.state
        with state.lock:
            state.seen.append(Seen(self.command, self.path, device, serial, status, time.time()))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        state, device_serial = self.server.state, self._peer()
        folder = state.releases
        match = re.match(r"^/releases/(metadata|targets)/((?:[A-Za-z0-9_-][A-Za-z0-9._-]*/?)+)$", self.path)
        file = None if folder is None or match is None else folder / match.group(1) / match.group(2)
        if file is None or not file.is_file():
            return self._answer(404, {"detail": "not found"}, *device_serial)
        data = file.read_bytes()
        with state.lock:
            state.seen.append(Seen("GET", self.path, *device_serial, 200, time.time()))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        device, serial = self._peer()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/enroll":
            return self._enroll(body, device, serial)
        match = _DEVICE_ACTION.match(self.path)
        if match is None:
            return self._answer(404, {"detail": "not found"}, device, serial)
        device_id, action = match.groups()
        bearer = self.headers.get("Authorization", "")
        by_token = device_id in state.tokens and bearer == f"Bearer {state.tokens[device_id]}"
        if device != device_id and not by_token:
            return self._answer(401, {"detail": "no valid device credential"}, device, serial)
        if action == "certificate":
            return self._renew(body, device_id, device, serial)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if action == "heartbeat":
            with state.lock:
                state.heartbeats.append(json.loads(body))
            return self._answer(200, {"ok": True}, device, serial)
        key = self.headers.get(IDEMPOTENCY_KEY, "")
        with state.lock:
            duplicate = key in state.uploads
            state.uploads[key] = body
        return self._answer(200 if duplicate else 201, {"deduplicated": duplicate, "location": f"{key}.csv"},
                            device, serial)

    def _enroll(self, body: bytes, device: str | None, serial: str | None) -> None:
        from hub.pki import PkiError

        state = self.server.state
        request = json.loads(body)
        code = request.get("code", "")
        with state.lock:
            owner = state.codes.pop(code, None)
        if owner is None:
            return self._answer(401, {"detail": "unknown, used or expired enrollment code"}, device, serial)
        try:
            answer = state.issue(request.get("csr", ""), *owner)
        except PkiError as exc:
            detail: Any = str(exc)
            if state.echo_code_on_422:
                detail = [{"loc": ["body", "csr"], "msg": str(exc), "input": request}]
            return self._answer(422, {"detail": detail}, device, serial)
        return self._answer(201, answer, device, serial)

    def _renew(self, body: bytes, device_id: str, device: str | None, serial: str | None) -> None:
        from hub.pki import PkiError

        state = self.server.state
        if device != device_id:
            return self._answer(403, {"detail": "renewal needs the device's current certificate"}, device, serial)
        with state.lock:
            failing = state.fail_renewals > 0
            state.fail_renewals -= 1 if failing else 0
        if failing:
            return self._answer(503, {"detail": "try again later"}, device, serial)
        try:
            answer = state.issue(json.loads(body)["csr"], device_id, "canary")
        except PkiError as exc:
            return self._answer(422, {"detail": str(exc)}, device, serial)
        with state.lock:
            state.renewals += 1
        return self._answer(201, answer, device, serial)


class _TlsHubServer(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    context: ssl.SSLContext | None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:  # the handshake in the connection's own thread, not the accept loop
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up or failed its handshake


@contextmanager
def tls_hub(state: HubState, require_client: bool = True, tls: bool = True) -> Iterator[tuple[str, HubState]]:
    """Serve the stand-in hub on 127.0.0.1: (its https URL, ``state``). ``require_client``: the handshake
    needs a client certificate (else one is optional, as for enrollment); ``tls=False``: plain http."""
    from edge.contracts.tls import server_context

    server = _TlsHubServer(("127.0.0.1", 0), _TlsHubHandler)
    server.state = state
    server.context = (server_context(state.pki.hub_cert, state.pki.hub_key, client_ca=state.pki.ca_file,
                                     require_client=require_client) if tls else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
