"""The hub over real TLS on 127.0.0.1 with real certificates (edgeloop.testkit.pki): mutual TLS, who is refused
and how, revocation on the next request, the three client-certificate modes, certificate rotation without a
restart, the ASGI TLS extension (httptools and h11), the start-up rules and the cloud's hub client over https.

Every refusal is checked to store nothing (no heartbeat row, no landing-zone file).
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from sqlalchemy import func, select

from edge.contracts.errors import UserError
from edge.contracts.tls import client_context
from edge.contracts.wire import FLEET_PATH, IDEMPOTENCY_KEY, device_path
from edgeloop.testkit.hub import HubHandle, free_port, hub_project, running_hub
from edgeloop.testkit.pki import Identity, PlantPki, issue_recorded, make_pki
from edgeloop.testkit.synthetic import make_rows
from flows.hub_client import HUB_CA_FILE_ENV, HubAdminClient, HubUnreachable
from flows.params import load_params
from hub.db import Heartbeat, Upload
from hub.peer_certificates import read_peer
from hub.pki import fingerprint, issue_server_certificate
from hub.registry import add_device, revoke_device
from hub.settings import HubSettings
from hub.tls.context import ReloadingContext
from hub.tls.listen import ContextFactory, TlsConfigError, plan
from hub.tls.protocol import TlsH11Protocol, TlsHttpToolsProtocol
from simulator.batches import encode_batch

pytestmark = pytest.mark.slow  # servers: not in the fast lane

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
PARQUET = "application/vnd.apache.parquet"
BEAT = {"model_version": "3", "channel": "canary", "health": "ok", "drift": {}, "rolling_accuracy": None,
        "spool_backlog": 0, "counters": {}, "clock": "2026-11-27T02:00:00+00:00"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def hub(pki: PlantPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHandle]:
    """A TLS hub, client certificates optional, with press-1 and press-2 registered (tokens in hub.tokens)."""
    root = hub_project(tmp_path_factory.mktemp("tlshub"), tls=pki.tls_params("optional"))
    with running_hub(root) as handle:
        sessions = handle.app.state.sessions
        handle.tokens = {d: add_device(sessions, d, "canary") for d in ("press-1", "press-2")}  # type: ignore[attr-defined]
        yield handle


def client(hub: HubHandle, pki: PlantPki, identity: Identity | None = None, ca: Path | None = None) -> httpx.Client:
    context = client_context(ca or pki.ca_file, identity and identity.cert_file, identity and identity.key_file)
    return httpx.Client(base_url=hub.url, verify=context, timeout=10)


def stored(hub: HubHandle) -> tuple[int, int, int]:
    """(heartbeat rows, upload rows, landing-zone files): what a refused request must not change."""
    with hub.app.state.sessions() as session:
        beats = session.scalar(select(func.count()).select_from(Heartbeat)) or 0
        uploads = session.scalar(select(func.count()).select_from(Upload)) or 0
    files = sum(1 for p in hub.settings.landing.rglob("*") if p.is_file()) if hub.settings.landing.exists() else 0
    return int(beats), int(uploads), files


def batch(device: str, seed: int) -> bytes:
    schema = load_params(Path(__file__).resolve().parents[1] / "params.yaml").schema
    return encode_batch(make_rows(schema, device, 20, seed))


def upload(http: httpx.Client, device: str, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": PARQUET, IDEMPOTENCY_KEY: hashlib.sha256(body).hexdigest()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.post(device_path(device, "uploads"), content=body, headers=headers)


def heartbeat(http: httpx.Client, device: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(device_path(device, "heartbeat"), json=BEAT, headers=headers)


def refused_by_tls(call: Any) -> bool:
    try:
        call()
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError):
        return True
    return False


def test_a_device_certificate_authenticates_without_a_token(hub: HubHandle, pki: PlantPki) -> None:
    identity = issue_recorded(pki, hub, "press-1")
    with client(hub, pki, identity) as http:
        assert heartbeat(http, "press-1").status_code == 200
        body = batch("press-1", 1)
        first = upload(http, "press-1", body)
        assert first.status_code == 201, first.text
        assert first.json()["device_id"] == "press-1"
    devices = {d["device_id"]: d for d in client(hub, pki).get(
        FLEET_PATH, headers={"Authorization": f"Bearer {hub.admin_token}"}).json()["devices"]}
    assert devices["press-1"]["certificate_not_after"] is not None
    assert devices["press-2"]["certificate_not_after"] is None  # token only


def test_plain_http_to_a_tls_hub_is_refused(hub: HubHandle) -> None:
    plain = hub.url.replace("https://", "http://")
    assert refused_by_tls(lambda: httpx.get(f"{plain}/healthz", timeout=5))
    with socket.create_connection(("127.0.0.1", int(hub.url.rsplit(":", 1)[1])), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = raw.recv(4096)
    assert b"200" not in answer and b"status" not in answer  # no HTTP answer over plain TCP


def test_a_client_that_does_not_trust_the_hub_refuses_it(hub: HubHandle, pki: PlantPki, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "stranger")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client(hub, pki, ca=stranger.ca_file).get("/healthz")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{hub.url}/healthz", timeout=5)  # the system store does not know the plant CA
    assert client(hub, pki).get("/healthz").status_code == 200


def test_refused_certificates_store_nothing(hub: HubHandle, pki: PlantPki) -> None:
    before = stored(hub)
    body = batch("press-1", 99)
    # expired, or from another CA: the TLS layer refuses the handshake
    for identity in (pki.expired_device("press-1"), pki.foreign_device("press-1")):
        with client(hub, pki, identity) as http:
            assert refused_by_tls(lambda http=http: heartbeat(http, "press-1"))
            assert refused_by_tls(lambda http=http: upload(http, "press-1", body))
    # signed by the plant CA but never issued by the hub (not recorded): 401, the body of a bad token
    bad_token = heartbeat(client(hub, pki), "press-1", "elt_" + "0" * 16 + "_" + "A" * 43)
    assert bad_token.status_code == 401
    with client(hub, pki, pki.device("press-1")) as http:
        for answer in (heartbeat(http, "press-1"), upload(http, "press-1", body)):
            assert answer.status_code == 401 and answer.json() == bad_token.json()
        # a certificate decides: a good token does not rescue a bad certificate
        assert heartbeat(http, "press-1", hub.tokens["press-1"]).status_code == 401  # type: ignore[attr-defined]
    # device 2's own certificate on device 1's path: 403, as tokens
    with client(hub, pki, issue_recorded(pki, hub, "press-2")) as http:
        assert heartbeat(http, "press-1").status_code == 403
        assert upload(http, "press-1", body).status_code == 403
    # no certificate (optional mode): no token is 401
    assert heartbeat(client(hub, pki), "press-1").status_code == 401
    assert stored(hub) == before


def test_a_revoked_device_is_refused_on_its_next_request(pki: PlantPki, tmp_path: Path) -> None:
    root = hub_project(tmp_path / "revoke", tls=pki.tls_params("optional"))
    with running_hub(root) as hub:
        sessions = hub.app.state.sessions
        add_device(sessions, "mill-1", "canary")
        identity = issue_recorded(pki, hub, "mill-1")
        with client(hub, pki, identity) as http:  # one keep-alive connection throughout
            assert heartbeat(http, "mill-1").status_code == 200
            revoke_device(sessions, "mill-1")
            assert heartbeat(http, "mill-1").status_code == 401
        add_device(sessions, "mill-1", "canary")  # added again: a new token, the old certificate stays dead
        with client(hub, pki, identity) as http:
            assert heartbeat(http, "mill-1").status_code == 401


def test_keep_alive_requests_do_not_parse_the_certificate_again(hub: HubHandle, pki: PlantPki) -> None:
    identity = issue_recorded(pki, hub, "press-2")
    with client(hub, pki, identity) as http:
        assert heartbeat(http, "press-2").status_code == 200
        before = read_peer.cache_info()
        for _ in range(5):
            assert heartbeat(http, "press-2").status_code == 200
        after = read_peer.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 5


def test_required_mode_takes_certificates_only_but_the_admin_token_still_reads(pki: PlantPki, tmp_path: Path) -> None:
    root = hub_project(tmp_path / "required", tls=pki.tls_params("required"))
    with running_hub(root) as hub:
        token = add_device(hub.app.state.sessions, "kiln-1", "canary")
        identity = issue_recorded(pki, hub, "kiln-1")
        anonymous, admin = client(hub, pki), {"Authorization": f"Bearer {hub.admin_token}"}
        before = stored(hub)
        assert heartbeat(anonymous, "kiln-1", token).status_code == 401  # a valid token is not enough
        assert upload(anonymous, "kiln-1", batch("kiln-1", 5), token).status_code == 401
        assert stored(hub) == before
        timestamp = "/releases/metadata/timestamp.json"
        assert anonymous.get(timestamp).status_code == 401
        assert anonymous.get(timestamp, headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert anonymous.get(timestamp, headers=admin).status_code == 404  # admin passes (no repository here)
        assert anonymous.get(FLEET_PATH, headers=admin).status_code == 200
        assert anonymous.get("/healthz").status_code == 200
        with client(hub, pki, identity) as http:
            assert heartbeat(http, "kiln-1").status_code == 200
            assert http.get(timestamp).status_code == 404  # a device certificate reads the repository
        with client(hub, pki, pki.device("kiln-1")) as http:  # not issued by this hub
            assert http.get(timestamp).status_code == 401


def test_off_mode_takes_tokens_only(pki: PlantPki, tmp_path: Path) -> None:
    root = hub_project(tmp_path / "off", tls=pki.tls_params("off"))
    with running_hub(root) as hub:
        token = add_device(hub.app.state.sessions, "oven-1", "canary")
        identity = issue_recorded(pki, hub, "oven-1")
        with client(hub, pki, identity) as http:  # the hub asks for no certificate: the token counts
            assert heartbeat(http, "oven-1").status_code == 401
            assert heartbeat(http, "oven-1", token).status_code == 200


def server_fingerprint(url: str, ca_file: Path) -> str:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client_context(ca_file).wrap_socket(
            raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    return fingerprint(x509.load_der_x509_certificate(der))


def test_a_reissued_hub_certificate_is_used_without_a_restart(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    root = hub_project(tmp_path / "rotate", tls=pki.tls_params("optional"))
    with running_hub(root) as hub:
        first = server_fingerprint(hub.url, pki.ca_file)
        with client(hub, pki) as kept:
            assert kept.get("/healthz").status_code == 200
            issue_server_certificate(pki.ca, ["localhost"], ["127.0.0.1"], pki.hub_cert.parent, days=30)
            second = server_fingerprint(hub.url, pki.ca_file)
            assert second != first
            assert second == fingerprint(_leaf(pki.hub_cert))
            assert kept.get("/healthz").status_code == 200  # an open connection keeps its session
        assert client(hub, pki).get("/healthz").status_code == 200
        assert server_fingerprint(hub.url, pki.ca_file) == second  # loaded once, not per handshake


def _leaf(chain: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain.read_bytes())[0]


def test_a_half_written_rotation_keeps_the_working_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    reloading = ReloadingContext(pki.hub_cert, pki.hub_key, pki.ca_file)
    assert reloading.current() is reloading.context
    other = make_pki(tmp_path / "other")
    pki.hub_key.write_bytes(other.hub_key.read_bytes())  # a new key beside the old certificate
    assert reloading.current() is reloading.context and reloading.reloads == 0
    pki.hub_cert.write_bytes(other.hub_cert.read_bytes())  # now both: loads
    assert reloading.current() is not reloading.context and reloading.reloads == 1


async def _echo_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    tls = scope.get("extensions", {}).get("tls", {})
    body = (tls.get("client_cert_chain") or [""])[0].encode() + b"|" + str(tls.get("tls_version")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def bare_server(factory: ContextFactory, http: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_echo_tls, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", ssl_context_factory=factory, http=http))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("protocol", [TlsHttpToolsProtocol, TlsH11Protocol], ids=["httptools", "h11"])
def test_the_scope_carries_the_asgi_tls_extension(pki: PlantPki, protocol: Any) -> None:
    identity = pki.device("echo-1")
    factory = ContextFactory(str(pki.hub_cert), str(pki.hub_key), str(pki.ca_file))
    with bare_server(factory, protocol) as url:
        with httpx.Client(verify=client_context(pki.ca_file, identity.cert_file, identity.key_file)) as http:
            pem, version = http.get(url).text.split("|")
            assert pem == identity.pem and version in ("771", "772")  # 0x0303 / 0x0304
            assert http.get(url).text.split("|")[0] == identity.pem  # every request of the connection
        pem, _ = httpx.get(url, verify=client_context(pki.ca_file)).text.split("|")
        assert pem == ""  # no certificate: an empty chain


def test_listening_rules(pki: PlantPki, tmp_path: Path) -> None:
    plain = HubSettings.load(hub_project(tmp_path / "plain"))
    assert plan(plain).kind == "loopback" and plan(plain).url.startswith("http://127.0.0.1:")
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(TlsConfigError) as refused:
            plan(plain, host=host)
        message = str(refused.value)
        assert "refusing plain HTTP" in message and "hub.tls.cert_file" in message and "\n" not in message
    assert plan(plain, host="127.0.0.2").kind == "loopback"
    behind = HubSettings.load(hub_project(tmp_path / "proxy", tls={"trusted_proxies": ["127.0.0.1"]}))
    assert plan(behind).kind == "proxy"
    with pytest.raises(TlsConfigError, match="refusing plain HTTP"):
        plan(behind, host="0.0.0.0")  # a proxy does not make plain HTTP on the network safe
    required = HubSettings.load(hub_project(tmp_path / "req", tls={"client_certificates": "required"}))
    with pytest.raises(TlsConfigError, match="no certificate can reach"):
        plan(required)
    tls = HubSettings.load(hub_project(tmp_path / "tls", tls=pki.tls_params()))
    listening = plan(tls, host="0.0.0.0")
    assert (listening.kind, listening.scheme) == ("tls", "https") and listening.uvicorn_options()["ssl_context_factory"]
    no_ca = HubSettings.load(hub_project(tmp_path / "noca", tls={**pki.tls_params(), "ca_dir": str(tmp_path / "x")}))
    with pytest.raises(TlsConfigError, match="edgeloop hub ca init"):
        plan(no_ca)
    assert plan(HubSettings.load(hub_project(tmp_path / "noca-off", tls={
        **pki.tls_params("off"), "ca_dir": str(tmp_path / "x")}))).kind == "tls"
    with pytest.raises(TlsConfigError, match="do they belong together"):
        plan(tls, cert_file=pki.hub_cert, key_file=make_pki(tmp_path / "o").hub_key)
    with pytest.raises(UserError, match="--cert and --key go together"):
        plan(tls, cert_file=pki.hub_cert)


def test_serve_refuses_plain_http_on_the_network_in_one_line(tmp_path: Path) -> None:
    root = hub_project(tmp_path / "p")
    done = subprocess.run([EDGELOOP, "hub", "serve", "--host", "0.0.0.0", "--root", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing plain HTTP on 0.0.0.0" in lines[0] and "Traceback" not in done.stderr


def test_serve_says_it_serves_tls(pki: PlantPki, tmp_path: Path) -> None:
    port = free_port()
    root = hub_project(tmp_path / "p", tls=pki.tls_params("optional"), **{"hub.port": port})
    process = subprocess.Popen([EDGELOOP, "hub", "serve", "--root", str(root)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=client_context(pki.ca_file)).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the hub did not start")
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert f"hub on https://127.0.0.1:{port} (TLS 1.2+" in err and "without a restart" in err
    assert "client certificate or a token" in err


def test_the_clouds_hub_client_verifies_an_https_hub(hub: HubHandle, pki: PlantPki, tmp_path: Path) -> None:
    section = load_params(hub.root / "params.yaml").hub
    assert section.local_url.startswith("https://")
    found = HubAdminClient.for_project(hub.root, section, url=hub.url, environ={})
    assert found.ca_file == pki.ca_file  # <hub.tls.ca_dir>/ca.pem
    assert {d["device_id"] for d in found.fleet()["devices"]} >= {"press-1", "press-2"}
    stranger = make_pki(tmp_path / "stranger")
    env = {HUB_CA_FILE_ENV: str(stranger.ca_file)}
    with pytest.raises(HubUnreachable) as untrusted:
        HubAdminClient.for_project(hub.root, section, url=hub.url, environ=env).fleet()
    assert "not trusted" in str(untrusted.value) and "\n" not in str(untrusted.value)
    assert HubAdminClient.for_project(hub.root, section, url=hub.url, environ=env, ca_file=pki.ca_file).fleet()
    with pytest.raises(HubUnreachable, match="no CA file"):
        HubAdminClient.for_project(hub.root, section, url=hub.url, environ={HUB_CA_FILE_ENV: str(tmp_path / "no")}
                                   ).fleet()
    plain = HubAdminClient.for_project(hub.root, section, url="http://127.0.0.1:1", environ={})
    assert plain.ca_file is None



def test_ca_init_and_cert_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeloop.hub_cli import hub_app

    root = hub_project(tmp_path / "p")
    runner = CliRunner()
    made = runner.invoke(hub_app, ["ca", "init", "--root", str(root)])
    assert made.exit_code == 0, made.output
    folder = root / "keys" / "hub-ca"
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600 and "never commit it" in made.output
    again = runner.invoke(hub_app, ["ca", "init", "--root", str(root)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    nameless = runner.invoke(hub_app, ["cert", "--root", str(root)])
    assert nameless.exit_code != 0 and "--name" in str(nameless.exception)
    issued = runner.invoke(hub_app, ["cert", "--name", "hub.plant.local", "--ip", "10.0.0.5", "--root", str(root)])
    assert issued.exit_code == 0, issued.output
    assert "cert_file: keys/hub-tls/hub.pem" in issued.stdout and "key_file: keys/hub-tls/hub.key" in issued.stdout
    leaf = _leaf(root / "keys" / "hub-tls" / "hub.pem")
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.plant.local", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "127.0.0.1"]
    assert (root / "keys" / "hub-tls" / "hub.key").stat().st_mode & 0o777 == 0o600
    # with those lines in params.yaml the hub serves them, and re-issuing says a restart is not needed
    hub_project(root, tls={"cert_file": "keys/hub-tls/hub.pem", "key_file": "keys/hub-tls/hub.key"})
    settings = HubSettings.load(root)
    assert plan(settings, host="0.0.0.0").kind == "tls"
    reissued = runner.invoke(hub_app, ["cert", "--name", "hub.plant.local", "--root", str(root)])
    assert reissued.exit_code == 0 and "no restart" in reissued.output


def test_a_revocation_from_another_process_counts_on_the_next_request(pki: PlantPki, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeloop.devices_cli import devices_app

    root = hub_project(tmp_path / "cli", tls=pki.tls_params("required"))
    with running_hub(root) as hub:
        add_device(hub.app.state.sessions, "belt-1", "canary")
        identity = issue_recorded(pki, hub, "belt-1")
        with client(hub, pki, identity) as http:
            for _ in range(3):  # answered from memory while nothing changes
                assert http.get("/releases/metadata/timestamp.json").status_code == 404
            done = subprocess.run([EDGELOOP, "devices", "revoke", "belt-1", "--root", str(root)], capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert http.get("/releases/metadata/timestamp.json").status_code == 401
            assert heartbeat(http, "belt-1").status_code == 401
        listed = CliRunner().invoke(devices_app, ["list", "--root", str(root)], env={"COLUMNS": "250"})
        assert "token only" in next(line for line in listed.stdout.splitlines() if "belt-1" in line)


def test_the_fleet_views_show_certificate_expiry(hub: HubHandle, pki: PlantPki) -> None:
    issue_recorded(pki, hub, "press-1", days=10)
    page = client(hub, pki).get("/fleet", headers={"Authorization": f"Bearer {hub.admin_token}"}).text
    assert "<th>certificate</th>" in page and "d left" in page


def test_edgeloop_fleet_over_https(hub: HubHandle, pki: PlantPki, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_HUB_")}
    add_device(hub.app.state.sessions, "token-9", "canary")
    issue_recorded(pki, hub, "press-1")
    done = subprocess.run([EDGELOOP, "fleet", "--url", hub.url, "--root", str(hub.root)], capture_output=True,
                          text=True, timeout=120, env={**env, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    assert "d left" in rows["press-1"] and "token only" in rows["token-9"] and "certificate" in done.stdout
    stranger = make_pki(tmp_path / "stranger")
    refused = subprocess.run([EDGELOOP, "fleet", "--url", hub.url, "--root", str(hub.root), "--ca-file",
                              str(stranger.ca_file)], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "not trusted" in refused.stderr and "Traceback" not in refused.stderr


def test_bring_your_own_hub_certificate(pki: PlantPki, tmp_path: Path) -> None:
    """The hub's certificate from a corporate CA; device certificates still from the plant CA."""
    from hub.tls.address import enrollment_target

    corporate = make_pki(tmp_path / "corporate")
    tls = {**pki.tls_params("optional"), "cert_file": str(corporate.hub_cert), "key_file": str(corporate.hub_key)}
    root = hub_project(tmp_path / "byo", tls=tls)
    with running_hub(root) as hub:
        add_device(hub.app.state.sessions, "saw-1", "canary")
        identity = issue_recorded(pki, hub, "saw-1")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client(hub, pki, identity).get("/healthz")  # the plant CA does not vouch for this hub
        with client(hub, pki, identity, ca=corporate.ca_file) as http:
            assert heartbeat(http, "saw-1").status_code == 200  # the device is still known by the plant CA
        section = load_params(root / "params.yaml").hub
        environ = {HUB_CA_FILE_ENV: str(corporate.ca_file)}
        tools = HubAdminClient.for_project(root, section, url=hub.url, environ=environ)
        assert tools.fleet()["devices"]
        target = enrollment_target(hub.settings)
        assert target.tls and target.ca_file is None  # the CLI says: the CA that issued the hub's certificate
    own = enrollment_target(HubSettings.load(hub_project(tmp_path / "own", tls=pki.tls_params())))
    assert own.ca_file == pki.ca_file and own.url == "https://127.0.0.1:8700"
