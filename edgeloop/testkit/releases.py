"""Test kit for signed releases: tiny real ONNX models, fake candidate folders, a release config in a
temporary folder, an HTTP server on 127.0.0.1 that can tamper with what it serves, and a publish
worker process (``python -m edgeloop.testkit.releases publish CONFIG_JSON CANDIDATE CHANNEL``) that
imports everything, says ``ready``, and publishes when it reads a line on stdin (so a test can kill it
at a chosen moment inside the publish, not during imports).

Candidates are what the gate writes (model.onnx, manifest.json, decision.json, decision.md,
index.html, reports/) with a manifest built with edge.contracts.manifest; no pipeline stage runs.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.contracts.manifest import GateResult, GateRule, Lineage, Manifest, ReferenceStats, model_file
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE
from edge.contracts.schema import FeatureSpec
from edge.releases import ClientLimits, FetchedRelease, fetch_release
from flows.releases import Expiry, ReleaseConfig
from flows.releases.verify import QuietHandler


@functools.lru_cache(maxsize=4)
def tiny_onnx(seed: int = 0, pad_bytes: int = 0) -> bytes:
    """A real ONNX model: logistic regression on two features (skl2onnx); ``pad_bytes`` of metadata
    make it as large as a test needs."""
    import numpy as np
    import onnx
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = to_onnx(LogisticRegression().fit(x, y), x[:1], options={"zipmap": False}, target_opset=17)
    if pad_bytes:
        entry = model.metadata_props.add()
        entry.key, entry.value = "padding", "x" * pad_bytes
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_manifest(model: bytes, candidate: str = "cand-0123456789ab", passed: bool = True) -> Manifest:
    rules = (GateRule("quality_floor", True, 0.6, 0.91, "f1_macro 0.91 >= 0.6"),)
    return Manifest(
        version=candidate,
        created="2026-11-27T02:00:00Z",
        features=(FeatureSpec("x0", "float", -5.0, 5.0, "", True), FeatureSpec("x1", "float", -5.0, 5.0, "", True)),
        label="failure",
        classes=(0, 1),
        positive_class=1,
        decision_threshold=0.5,
        reference={name: ReferenceStats((0.0,), (0.5, 0.5), 0.0) for name in ("x0", "x1")},
        gate=GateResult(passed, "f1_macro", {"f1_macro": 0.91, "accuracy": 0.93}, rules),
        lineage=Lineage("d" * 64, "p" * 64, "s" * 64, None, "unknown", {"numpy": "2"}),
        min_runner_version="0.1.0",
        model=model_file(model),
    )


def make_candidate(folder: Path, model: bytes, candidate: str = "cand-0123456789ab", passed: bool = True) -> Path:
    """A candidate folder as the gate writes it (blocked candidates have no model or manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    decision = {"passed": passed, "version": candidate, "reasons": [] if passed else ["quality_floor"]}
    (folder / "decision.json").write_text(json.dumps(decision))
    (folder / "decision.md").write_text("PASSED\n" if passed else "BLOCKED\n")
    (folder / "index.html").write_text("<html></html>")
    if passed:
        (folder / MODEL_FILE).write_bytes(model)
        (folder / MANIFEST_FILE).write_text(make_manifest(model, candidate).to_json())
        (folder / "reports").mkdir(exist_ok=True)
        (folder / "reports" / "drift.html").write_text("<html></html>")
    return folder


def release_config(root: Path, **expiry: float) -> ReleaseConfig:
    return ReleaseConfig(
        repository=root / "releases", root_key=root / "keys" / "offline", online_keys=root / "keys" / "online",
        expiry_days=Expiry(**expiry),
    )


def config_json(config: ReleaseConfig) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()})


def config_from_json(text: str) -> ReleaseConfig:
    raw = json.loads(text)
    return ReleaseConfig(
        repository=Path(raw["repository"]), root_key=Path(raw["root_key"]), online_keys=Path(raw["online_keys"]),
        expiry_days=Expiry(**raw["expiry_days"]), channel=raw["channel"],
    )


# --- HTTP: a static server whose responses a test can rewrite ----------------------------------------

Rule = Callable[[bytes], bytes] | bytes | str  # new body, a function of the real body, or "endless"/"trickle"


class TamperHandler(QuietHandler):
    """Serves the folder; a URL path matching one of ``server.rules`` (regex -> Rule) is rewritten."""

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        self.server.requests.append(path)  # type: ignore[attr-defined]
        for pattern, rule in list(self.server.rules.items()):  # type: ignore[attr-defined]
            if re.search(pattern, path):
                return self._apply(path, rule)
        return super().do_GET()

    def _apply(self, path: str, rule: Rule) -> None:
        if rule == "endless":
            return self._stream(b"\0" * 65536, 0.0)
        if rule == "trickle":
            return self._stream(b"\0", 0.05)
        file = Path(self.directory) / path.lstrip("/")
        real = file.read_bytes() if file.is_file() else b""
        body = rule(real) if callable(rule) else rule
        assert isinstance(body, bytes)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunk: bytes, pause: float) -> None:
        self.send_response(200)
        self.end_headers()  # no Content-Length: the body ends when the connection does
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client hung up


@contextmanager
def tamper_server(folder: Path) -> Iterator[ThreadingHTTPServer]:
    """Serve ``folder`` on 127.0.0.1; ``server.rules`` (regex -> Rule) rewrite responses, ``server.url``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(TamperHandler, directory=str(folder)))
    server.daemon_threads = True
    server.rules = {}  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, client: Path, channel: str = "canary", root: bytes | None = None,
          limits: ClientLimits | None = None, current: int | None = None) -> FetchedRelease:
    """A device fetch with metadata in ``client/metadata`` and staging in ``client/staging``."""
    return fetch_release(client / "metadata", f"{url}/metadata/", f"{url}/targets/", channel, client / "staging",
                         root, limits, current)


def staged(client: Path) -> list[str]:
    """Everything under the client's staging folder (must stay empty when a fetch is rejected)."""
    folder = client / "staging"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- a publish in its own process --------------------------------------------------------------------

def _worker(config_text: str, candidate: str, channel: str) -> None:
    from flows.releases import publish

    config = config_from_json(config_text)
    print("ready", flush=True)
    sys.stdin.readline()
    result = publish(config, Path(candidate), channel)
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        _worker(*sys.argv[2:5])


# --- an attacker's tools: new metadata written with chosen keys, bypassing every check ----------------

def real_signer(config: ReleaseConfig, role: str) -> Any:
    """The repository's current signer for ``role`` (from its key file)."""
    from securesystemslib.signer import Signer

    from flows.releases.keys import key_file
    from flows.releases.repository import LocalRepository

    root = LocalRepository(config).root()
    key = root.get_key(root.roles[role].keyids[0])
    return Signer.from_priv_key_uri(f"file2:{key_file(config, role, key.keyid)}", key)


def forge(config: ReleaseConfig, folder: Path, edit: Callable[[Any], None] = lambda targets: None,
          targets_signer: Any = None) -> None:
    """In repository ``folder`` (a copy), write targets N+1 (``edit`` applied, signed by
    ``targets_signer``, default the real key), then snapshot and timestamp with the real keys."""
    from tuf.api.metadata import Metadata, MetaFile

    meta = folder / "metadata"
    timestamp = Metadata.from_bytes((meta / "timestamp.json").read_bytes())
    snapshot = Metadata.from_bytes((meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json").read_bytes())
    targets = Metadata.from_bytes((meta / f"{snapshot.signed.meta['targets.json'].version}.targets.json").read_bytes())
    edit(targets.signed)
    targets.signed.version += 1
    targets.sign(targets_signer or real_signer(config, "targets"))
    data = targets.to_bytes()
    (meta / f"{targets.signed.version}.targets.json").write_bytes(data)
    snapshot.signed.meta["targets.json"] = MetaFile.from_data(targets.signed.version, data, ["sha256"])
    snapshot.signed.version += 1
    snapshot.sign(real_signer(config, "snapshot"))
    data = snapshot.to_bytes()
    (meta / f"{snapshot.signed.version}.snapshot.json").write_bytes(data)
    timestamp.signed.snapshot_meta = MetaFile.from_data(snapshot.signed.version, data, ["sha256"])
    timestamp.signed.version += 1
    timestamp.sign(real_signer(config, "timestamp"))
    (meta / "timestamp.json").write_bytes(timestamp.to_bytes())
