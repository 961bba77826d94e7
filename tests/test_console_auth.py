"""The console's login: wrong token, rate limit, cookie flags, tampered/expired cookies, safe redirects, CSRF,
no token in logs or pages, and the page shell's headers (the hub's real app, FastAPI's TestClient)."""

from __future__ import annotations

import logging
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeloop.console import auth, mount
from edgeloop.console.charts import bar_chart, line_chart
from edgeloop.testkit.project import REPO
from hub.app import create_app
from hub.clock import ManualClock
from hub.settings import HubSettings


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, ManualClock]]:
    root = tmp_path_factory.mktemp("console-auth")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    clock = ManualClock(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    app = create_app(HubSettings.load(root), clock, (mount,))
    token = HubSettings.load(root).admin_token_file.read_text().strip()
    yield TestClient(app, base_url="http://testserver"), token, clock


@pytest.fixture(autouse=True)
def fresh_limits() -> None:
    auth._failures.clear()


def _client(hub: tuple[TestClient, str, ManualClock]) -> TestClient:
    client = hub[0]
    client.cookies.clear()
    return client


def _login_form(client: TestClient, next_path: str = "") -> str:
    page = client.get("/console/login", params={"next": next_path} if next_path else None)
    assert page.status_code == 200
    value = re.search(r'name="login_csrf" value="([0-9a-f]{32})"', page.text)
    assert value is not None
    return value.group(1)


def _login(client: TestClient, token: str, who: str = "ada", next_path: str = "", **headers: str):  # type: ignore[no-untyped-def]
    value = _login_form(client, next_path)
    return client.post("/console/login", data={"who": who, "token": token, "login_csrf": value, "next": next_path},
                       headers=headers, follow_redirects=False)


def test_pages_redirect_to_login_with_next(hub) -> None:  # type: ignore[no-untyped-def]
    client = _client(hub)
    answer = client.get("/console/fleet?channel=stable", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/fleet%3Fchannel%3Dstable"


def test_login_sets_a_strict_cookie_and_goes_to_next(hub, caplog) -> None:  # type: ignore[no-untyped-def]
    client, token = _client(hub), hub[1]
    caplog.set_level(logging.DEBUG)
    answer = _login(client, token, next_path="/console/fleet?status=offline")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/fleet?status=offline"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(auth.COOKIE + "="))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert f"max-age={8 * 3600}" in flags and "secure" not in flags  # plain HTTP here
    assert token not in cookie and token not in caplog.text
    page = client.get("/console/fleet")
    assert page.status_code == 200 and "Logged in as <strong>ada</strong>" in page.text
    assert token not in page.text


def test_secure_flag_over_https(hub) -> None:  # type: ignore[no-untyped-def]
    app, token = hub[0].app, hub[1]
    client = TestClient(app, base_url="https://testserver")
    answer = _login(client, token)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(auth.COOKIE + "="))
    assert "secure" in cookie.lower()


def test_wrong_token_says_so_logs_without_it_and_rate_limits(hub, caplog) -> None:  # type: ignore[no-untyped-def]
    client = _client(hub)
    caplog.set_level(logging.WARNING, logger="edgeloop.console")
    wrong = "ela_" + "x" * 43
    for _ in range(auth.LOGIN_ATTEMPTS):
        answer = _login(client, wrong)
        assert answer.status_code == 401
        assert "That is not this hub&#x27;s admin token." in answer.text
        assert auth.COOKIE not in answer.cookies
    assert "console login refused" in caplog.text and wrong not in caplog.text
    limited = _login(client, hub[1])  # even the right token waits now
    assert limited.status_code == 429 and "Too many failed logins" in limited.text
    assert auth.COOKIE not in limited.cookies


def test_name_is_required(hub) -> None:  # type: ignore[no-untyped-def]
    answer = _login(_client(hub), hub[1], who="<script>")
    assert answer.status_code == 400 and "Type your name" in answer.text and "<script>" not in answer.text


def test_login_csrf_and_origin(hub) -> None:  # type: ignore[no-untyped-def]
    client, token = _client(hub), hub[1]
    _login_form(client)
    no_value = client.post("/console/login", data={"who": "ada", "token": token, "login_csrf": "0" * 32},
                           follow_redirects=False)
    assert no_value.status_code == 403 and "login form is out of date" in no_value.text
    assert auth.COOKIE not in no_value.cookies
    other_site = _login(client, token, origin="http://evil.example")
    assert other_site.status_code == 403 and "another site" in other_site.text
    assert auth.COOKIE not in other_site.cookies


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example/x", "/console/..\\evil",
                                    "/elsewhere", "/console/\nx", "javascript:alert(1)"])
def test_next_never_leaves_the_console(hub, target: str) -> None:  # type: ignore[no-untyped-def]
    answer = _login(_client(hub), hub[1], next_path=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/fleet"


def test_tampered_and_expired_cookies_are_refused(hub) -> None:  # type: ignore[no-untyped-def]
    client, token, clock = _client(hub), hub[1], hub[2]
    _login(client, token)
    good = client.cookies[auth.COOKIE]
    payload, _, signature = good.partition(".")
    assert client.get("/console/fleet", follow_redirects=False).status_code == 200
    forged_payload = auth._b64(auth._unb64(payload).replace(b'"ada"', b'"eve"'))
    for bad in (f"{forged_payload}.{signature}", f"{payload}.{signature[:-2]}AA", payload, "garbage"):
        client.cookies.set(auth.COOKIE, bad, path="/console")
        assert client.get("/console/fleet", follow_redirects=False).status_code == 303
    other_key = auth.session_cookie(b"k" * 32, "ada", clock.now().timestamp())
    client.cookies.set(auth.COOKIE, other_key, path="/console")
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303
    client.cookies.set(auth.COOKIE, good, path="/console")
    clock.advance(8 * 3600 + 1)
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303


def test_logout_needs_csrf_and_ends_the_session(hub) -> None:  # type: ignore[no-untyped-def]
    client = _client(hub)
    _login(client, hub[1])
    page = client.get("/console/fleet")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert csrf is not None
    for data in ({}, {"csrf": "0" * 64}):
        refused = client.post("/console/logout", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "security token" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
    assert client.get("/console/fleet", follow_redirects=False).status_code == 200  # still logged in
    cross = client.post("/console/logout", data={"csrf": csrf.group(1)}, headers={"origin": "http://evil.example"},
                        follow_redirects=False)
    assert cross.status_code == 403
    done = client.post("/console/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/console/login"
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303


def test_pages_carry_strict_headers(hub) -> None:  # type: ignore[no-untyped-def]
    client = _client(hub)
    answers = [client.get("/console/login")]
    _login(client, hub[1])
    answers.append(client.get("/console/fleet", follow_redirects=False))
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store"
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "<script" not in answer.text and "http://" not in answer.text and "https://" not in answer.text


def test_rotating_the_key_ends_sessions() -> None:
    cookie = auth.session_cookie(b"a" * 32, "ada", 1000.0)
    assert auth._read_session(b"a" * 32, cookie, 1001.0) is not None
    assert auth._read_session(b"b" * 32, cookie, 1001.0) is None
    assert auth._read_session(b"a" * 32, cookie, 1000.0 + auth.SESSION_S) is None


def _plot_points(svg: str) -> list[tuple[float, float]]:
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    return [(float(c.get("cx", 0)), float(c.get("cy", 0))) for c in root.iter(f"{ns}circle")]


def test_line_chart_parses_and_points_land_in_the_plot() -> None:
    start = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    values = [(start.replace(minute=m), 0.7 + m / 1000) for m in range(0, 60, 5)]
    svg = line_chart({"v3 <stable>": values, "v4": [(start, 0.9)]}, title="Accuracy & drift", y_label="accuracy",
                     thresholds=((0.8, "floor"),))
    root = ET.fromstring(svg)  # well-formed, text escaped
    assert "v3 &lt;stable&gt;" in svg and "Accuracy &amp; drift" in svg
    points = _plot_points(svg)
    assert len(points) == len(values)
    width, height = int(root.get("width", 0)), int(root.get("height", 0))
    assert all(50 <= x <= width - 10 and 25 <= y <= height - 35 for x, y in points)
    assert points == sorted(points)  # increasing accuracy over time: up and to the right in SVG terms (x asc)
    assert points[0][1] > points[-1][1]
    assert "floor 0.8" in svg and "14:00" in svg
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t and "0.7 at 2026-12-02 14:00:00 UTC" in t for t in titles)


def test_x_labels_never_overlap() -> None:
    values = [(float(i), float(i % 7)) for i in range(500)]
    svg = line_chart({"a": values}, title="t", y_label="y", width=300)
    root = ET.fromstring(svg)
    labels = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("text-anchor") == "middle"
              and float(t.get("y", 0)) > 150]
    spans = sorted((float(t.get("x", 0)) - len(t.text or "") * 3.1, float(t.get("x", 0)) + len(t.text or "") * 3.1)
                   for t in labels)
    assert len(spans) >= 2
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_release_numbers_get_whole_number_ticks() -> None:
    for releases in ((1, 2, 3), (1, 2), (4,), tuple(range(1, 101))):
        svg = line_chart({"f1": [(float(r), 0.9) for r in releases]}, title="gate", y_label="f1")
        labels = [t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")
                  if t.get("text-anchor") == "middle" and float(t.get("y", 0)) > 150]
        assert labels and all(label.replace(",", "").isdigit() for label in labels), (releases, labels)


def test_bar_chart_and_empty_charts() -> None:
    svg = bar_chart([("mon", 3), ("tue", 0), ("wed", 12)], title="uploads", y_label="batches")
    root = ET.fromstring(svg)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert len(bars) == 3 and float(bars[2].get("height", 0)) > float(bars[0].get("height", 0)) > 0
    assert float(bars[1].get("height", 1)) == 0
    assert "no data yet" in line_chart({}, title="x", y_label="y")
    ET.fromstring(bar_chart([], title="x", y_label="y"))


def test_origin_null_leaves_it_to_the_token(hub) -> None:  # type: ignore[no-untyped-def]
    # Chromium sends Origin: null for form POSTs from pages with Referrer-Policy: no-referrer (ours)
    answer = _login(_client(hub), hub[1], origin="null")
    assert answer.status_code == 303
    cross = _login(_client(hub), hub[1], origin="null", referer="http://evil.example/page")
    assert cross.status_code == 403


def _operator_certificate(ca, uri: str, days: float = 30.0) -> str:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")]))
        .issuer_name(ca.certificate.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_an_operator_certificate_logs_in_without_the_form(tmp_path: Path) -> None:
    from starlette.requests import Request

    from edgeloop.testkit.hub import hub_project
    from edgeloop.testkit.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    root = hub_project(tmp_path / "hub", tls=pki.tls_params("optional"))
    app = create_app(HubSettings.load(root), extensions=(mount,))

    def who(pem: str | None) -> auth.Operator | None:
        extensions = {"tls": {"client_cert_chain": [pem]}} if pem else {}
        scope = {"type": "http", "app": app, "headers": [], "path": "/console/fleet", "query_string": b"",
                 "client": ("127.0.0.1", 5000), "scheme": "https", "server": ("127.0.0.1", 8700),
                 "method": "GET", "extensions": extensions}
        return auth.optional_operator(Request(scope))

    found = who(_operator_certificate(pki.ca, "urn:edgeloop:operator:grace"))
    assert found is not None and found.name == "grace" and found.via == "certificate"
    assert found.csrf == auth.csrf_of(auth._key(Request({"type": "http", "app": app})), found.session_id)
    assert who(None) is None
    assert who(pki.device("press-01").pem) is None  # a device is not an operator
    assert who(_operator_certificate(pki.other_ca().ca, "urn:edgeloop:operator:mallory")) is None  # foreign CA
    assert who(_operator_certificate(pki.ca, "urn:edgeloop:operator:old", days=-1)) is None  # expired
    assert who(_operator_certificate(pki.ca, "urn:edgeloop:operator:<b>")) is None  # not a name


def test_layout_helpers_escape_and_carry_the_csrf_field() -> None:
    from edgeloop.console.layout import badge, confirm_form, page, table

    who = auth.Operator("ada", "s" * 32, "c" * 64)
    form = confirm_form(who, "/console/releases/halt", "<p>Halt stable?</p>", "Halt", "/console/releases",
                        {"channel": 'st"able'})
    assert 'name="csrf" value="' + "c" * 64 + '"' in form and 'value="st&quot;able"' in form
    assert 'method="post" action="/console/releases/halt"' in form and 'href="/console/releases">Cancel' in form
    assert badge("degraded") == '<span class="badge warn">degraded</span>' and "&lt;b&gt;" in badge("<b>")
    assert "&lt;x&gt;" in table(["a"], [["<x>"]], escape=True) and "nothing to show" in table(["a"], [])
    answer = page("T<", "<p>body</p>", who, "fleet", 404)
    assert answer.status_code == 404 and b"<title>T&lt; \xc2\xb7 edgeloop</title>" in answer.body
    assert b'class=active' in answer.body and b'action="/console/logout"' in answer.body


def test_origin_behind_a_proxy_on_another_port(hub) -> None:  # type: ignore[no-untyped-def]
    # nginx (docs/hub.md) passes Host: $host, without the port the browser used
    assert _login(_client(hub), hub[1], origin="http://testserver:8443").status_code == 303
    assert _login(_client(hub), hub[1], origin="http://testserver.evil.example").status_code == 403


def test_a_session_works_in_every_worker_of_the_hub(hub) -> None:  # type: ignore[no-untyped-def]
    client, token, clock = _client(hub), hub[1], hub[2]
    _login(client, token)
    cookie = client.cookies[auth.COOKIE]
    other = create_app(client.app.state.settings, clock, (mount,))  # another process of the same hub
    worker = TestClient(other, base_url="http://testserver")
    worker.cookies.set(auth.COOKIE, cookie, path="/console")
    answer = worker.get("/console/fleet", follow_redirects=False)
    assert answer.status_code == 200 and "Logged in as <strong>ada</strong>" in answer.text
    assert other.state.admin_digest != client.app.state.admin_digest  # each worker salts its own digest
