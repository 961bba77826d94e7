"""The hub behind a real TLS-terminating nginx (Debian package), started by the test with a generated config.

nginx serves TLS with the hub's certificate, asks for client certificates (``ssl_verify_client optional``,
``ssl_client_certificate`` = the plant CA), and proxies to the hub on loopback plain HTTP with
``X-Client-Cert: $ssl_client_escaped_cert`` and ``X-Client-Verify: $ssl_client_verify``. The hub
(``hub.tls.trusted_proxies: [127.0.0.1]``) authenticates devices from those headers, verifying the
certificate against the plant CA itself; from any other address the headers mean nothing. Skipped only
where nginx is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from edge.contracts.tls import client_context
from edge.contracts.wire import IDEMPOTENCY_KEY, device_path
from edgeloop.testkit.hub import HubHandle, free_port, hub_project, running_hub
from edgeloop.testkit.pki import Identity, PlantPki, issue_recorded, make_pki
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.registry import add_device, revoke_device
from simulator.batches import encode_batch

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")]

BEAT = {"model_version": None, "channel": "canary", "health": "ok", "drift": {}, "rolling_accuracy": None,
        "spool_backlog": 0, "counters": {}, "clock": "2026-11-27T02:00:00+00:00"}
CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 128; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate {ca};
    ssl_verify_client optional;
    client_max_body_size 64m;
    location / {{
      proxy_pass http://127.0.0.1:{hub_port};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_set_header Host $host;
      proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
      proxy_set_header X-Client-Verify $ssl_client_verify;
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def hub(pki: PlantPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHandle]:
    tls = {"ca_dir": str(pki.ca_dir), "client_certificates": "optional", "trusted_proxies": ["127.0.0.1"]}
    with running_hub(hub_project(tmp_path_factory.mktemp("proxied"), tls=tls)) as handle:
        assert handle.url.startswith("http://127.0.0.1:")  # plain HTTP on loopback, behind the proxy
        add_device(handle.app.state.sessions, "press-1", "canary")
        add_device(handle.app.state.sessions, "press-2", "canary")
        yield handle


@pytest.fixture(scope="module")
def proxy(hub: HubHandle, pki: PlantPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx in front of the hub; its https URL."""
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(CONFIG.format(
        user="user root root;" if os.geteuid() == 0 else "", tmp=tmp, port=port, cert=pki.hub_cert,
        key=pki.hub_key, ca=pki.ca_file, hub_port=hub.url.rsplit(":", 1)[1]))
    process = subprocess.Popen([str(NGINX), "-p", str(tmp), "-c", str(config), "-e", str(tmp / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz", verify=client_context(pki.ca_file), timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    _, err = process.communicate(timeout=5)
                    log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                    pytest.fail(f"nginx did not start: {err.decode()} {log}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def through(proxy: str, pki: PlantPki, identity: Identity | None) -> httpx.Client:
    context = client_context(pki.ca_file, identity and identity.cert_file, identity and identity.key_file)
    return httpx.Client(base_url=proxy, verify=context, timeout=30)


def test_the_proxy_path_authenticates_a_device_by_its_certificate(proxy: str, hub: HubHandle, pki: PlantPki) -> None:
    identity = issue_recorded(pki, hub, "press-1")
    with through(proxy, pki, identity) as http:
        assert http.post(device_path("press-1", "heartbeat"), json=BEAT).status_code == 200
        schema = load_params(Path(__file__).resolve().parents[1] / "params.yaml").schema
        body = encode_batch(make_rows(schema, "press-1", 500, 3))
        stored = http.post(device_path("press-1", "uploads"), content=body, headers={
            "Content-Type": "application/vnd.apache.parquet", IDEMPOTENCY_KEY: hashlib.sha256(body).hexdigest()})
        assert stored.status_code == 201, stored.text
        assert http.post(device_path("press-2", "heartbeat"), json=BEAT).status_code == 403  # not its own path


def test_the_proxy_path_refuses_what_the_direct_path_refuses(proxy: str, hub: HubHandle, pki: PlantPki) -> None:
    with through(proxy, pki, None) as http:
        no_cert = http.post(device_path("press-2", "heartbeat"), json=BEAT)
        assert no_cert.status_code == 401
        # a client's own X-Client-* headers do not get through nginx (proxy_set_header replaces them)
        forged = issue_recorded(pki, hub, "press-2")
        spoof = http.post(device_path("press-2", "heartbeat"), json=BEAT, headers={
            "X-Client-Cert": quote(forged.pem), "X-Client-Verify": "SUCCESS"})
        assert spoof.status_code == 401
    with through(proxy, pki, pki.device("press-2")) as http:  # plant CA, but never issued by the hub
        answer = http.post(device_path("press-2", "heartbeat"), json=BEAT)
        assert answer.status_code == 401 and answer.json() == no_cert.json()
    for identity in (pki.expired_device("press-2"), pki.foreign_device("press-2")):
        with through(proxy, pki, identity) as http:
            try:
                status = http.post(device_path("press-2", "heartbeat"), json=BEAT).status_code
            except httpx.HTTPError:
                status = 0  # refused in the handshake
            assert status in (0, 400, 401)  # nginx says 400 for a certificate it cannot verify
    revoked = issue_recorded(pki, hub, "press-2")
    with through(proxy, pki, revoked) as http:
        assert http.post(device_path("press-2", "heartbeat"), json=BEAT).status_code == 200
        revoke_device(hub.app.state.sessions, "press-2")
        assert http.post(device_path("press-2", "heartbeat"), json=BEAT).status_code == 401


def test_forwarded_headers_from_any_other_address_are_ignored(hub: HubHandle, pki: PlantPki) -> None:
    identity = issue_recorded(pki, hub, "press-1")
    headers = {"X-Client-Cert": quote(identity.pem), "X-Client-Verify": "SUCCESS"}
    elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=10)
    answer = elsewhere.post(f"{hub.url}{device_path('press-1', 'heartbeat')}", json=BEAT, headers=headers)
    assert answer.status_code == 401  # not from the proxy: the headers mean nothing
    from_proxy = httpx.post(f"{hub.url}{device_path('press-1', 'heartbeat')}", json=BEAT, headers=headers)
    assert from_proxy.status_code == 200  # the same headers from the proxy's address are believed


def test_the_hub_verifies_a_forwarded_certificate_itself(hub: HubHandle, pki: PlantPki, tmp_path: Path) -> None:
    """A misconfigured proxy that forwards anything with SUCCESS: the hub still checks CA and expiry."""
    url = f"{hub.url}{device_path('press-1', 'heartbeat')}"
    stranger = make_pki(tmp_path / "stranger")
    for identity in (stranger.device("press-1"), pki.expired_device("press-1")):
        answer = httpx.post(url, json=BEAT, headers={"X-Client-Cert": quote(identity.pem),
                                                    "X-Client-Verify": "SUCCESS"})
        assert answer.status_code == 401
    good = issue_recorded(pki, hub, "press-1")
    for verify in ("FAILED:certificate has expired", "NONE", ""):
        answer = httpx.post(url, json=BEAT, headers={"X-Client-Cert": quote(good.pem), "X-Client-Verify": verify})
        assert answer.status_code == 401
