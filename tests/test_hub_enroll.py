"""Enrollment with keys born on the device, renewal, re-enrollment and the devices CLI, over real TLS on 127.0.0.1.

``edgeloop devices add`` prints a one-time code inside the gateway's command (stderr) and the token
(stdout); ``POST /v1/enroll`` {code, csr} answers ENROLLMENT_FIELDS; the code works once (also when two
requests race), expires, and a tampered or malformed CSR is refused without using it up. Renewal is by the
current certificate only and keeps the old one valid. No code, key or token reaches a log line, a response
(except the CLI printing the code once) or the database.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from edge.contracts.identity import device_uri
from edge.contracts.tls import client_context
from edge.contracts.wire import ENROLL_PATH, ENROLLMENT_FIELDS, ENROLLMENT_REQUEST, RENEWAL_REQUEST, device_path
from edgeloop.devices_cli import devices_app
from edgeloop.testkit.hub import HubHandle, hub_project, running_hub
from edgeloop.testkit.pki import PlantPki, csr_pem, issue_recorded, key_pem, make_pki, new_key, tampered_csr
from hub.clock import ManualClock
from hub.db import EnrollmentCode
from hub.registry import add_device, issue_enrollment_code, revoke_device
from hub.schemas.enrollment import EnrollmentRequest, EnrollmentResult, RenewalRequest
from hub.store.enrollment_codes import claim_code

pytestmark = pytest.mark.slow  # servers: not in the fast lane

UNKNOWN = {"detail": "enrollment code unknown, used or expired"}
BEAT = {"model_version": None, "channel": "canary", "health": "ok", "drift": {}, "rolling_accuracy": None,
        "spool_backlog": 0, "counters": {}, "clock": "2026-11-27T02:00:00+00:00"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def hub(pki: PlantPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHandle]:
    root = hub_project(tmp_path_factory.mktemp("enroll"), tls=pki.tls_params("optional", device_cert_days=30),
                       repository=True)
    with running_hub(root) as handle:
        yield handle


def anonymous(hub: HubHandle, pki: PlantPki) -> httpx.Client:
    return httpx.Client(base_url=hub.url, verify=client_context(pki.ca_file), timeout=30)


def as_device(hub: HubHandle, pki: PlantPki, folder: Path, answer: dict, key: object) -> httpx.Client:
    """A client presenting the certificate from an enrollment answer with its key (files in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "device.pem", folder / "device.key"
    cert_file.write_text(answer["certificate"])
    key_file.write_bytes(key_pem(key))  # type: ignore[arg-type]
    context = client_context(pki.ca_file, cert_file, key_file)
    return httpx.Client(base_url=hub.url, verify=context, timeout=30)


def enroll(hub: HubHandle, pki: PlantPki, code: str, csr: str) -> httpx.Response:
    return anonymous(hub, pki).post(ENROLL_PATH, json={"code": code, "csr": csr})


def new_device(hub: HubHandle, name: str) -> str:
    add_device(hub.app.state.sessions, name, "canary")
    return issue_enrollment_code(hub.app.state.sessions, name, 3600)


def test_the_bodies_are_the_contracts() -> None:
    assert tuple(EnrollmentRequest.model_fields) == ENROLLMENT_REQUEST
    assert tuple(RenewalRequest.model_fields) == RENEWAL_REQUEST
    assert tuple(EnrollmentResult.model_fields) == ENROLLMENT_FIELDS


def test_devices_add_prints_the_gateway_command_and_the_token(hub: HubHandle, pki: PlantPki) -> None:
    added = CliRunner().invoke(devices_app, ["add", "line-4", "--channel", "canary", "--root", str(hub.root)])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("elt_") and added.stdout.strip() == token  # stdout: the token alone
    command = next(line.strip() for line in added.stderr.splitlines() if "edge-runner enroll" in line)
    parts = command.split()
    assert parts[:2] == ["edge-runner", "enroll"]
    options = dict(zip(parts[2::2], parts[3::2], strict=True))
    assert options["--hub"].startswith("https://") and options["--hub"].endswith(":8700")
    assert options["--ca"] == "hub-ca.pem" and str(pki.ca_file) in added.stderr
    code = options["--code"]
    assert code.startswith("elc_") and added.output.count(code) == 1
    key = new_key()
    answer = enroll(hub, pki, code, csr_pem(key))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert tuple(body) == ENROLLMENT_FIELDS
    assert (body["device_id"], body["channel"]) == ("line-4", "canary")
    certificate = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()  # its own key
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [device_uri("line-4")]
    assert body["ca"] == pki.ca_file.read_text()
    assert body["trusted_root"] == (hub.settings.releases / "metadata" / "root.json").read_text()
    not_after = datetime.fromisoformat(body["not_after"])
    assert not_after == certificate.not_valid_after_utc
    assert timedelta(days=29) < not_after - datetime.now(UTC) <= timedelta(days=30)
    with as_device(hub, pki, hub.root.parent / "line-4", body, key) as device:
        assert device.post(device_path("line-4", "heartbeat"), json=BEAT).status_code == 200

    listed = CliRunner().invoke(devices_app, ["list", "--root", str(hub.root)], env={"COLUMNS": "250"})
    row = next(line for line in listed.stdout.splitlines() if "line-4" in line)
    assert not_after.strftime("%Y-%m-%d") in row and "d left" in row
    fresh = CliRunner().invoke(devices_app, ["add", "line-5", "--root", str(hub.root)], env={"COLUMNS": "250"})
    assert fresh.exit_code == 0
    listed = CliRunner().invoke(devices_app, ["list", "--root", str(hub.root)], env={"COLUMNS": "250"})
    assert "token only" in next(line for line in listed.stdout.splitlines() if "line-5" in line)


def test_a_code_works_once_and_every_bad_code_gets_one_answer(hub: HubHandle, pki: PlantPki) -> None:
    code = new_device(hub, "once-1")
    assert enroll(hub, pki, code, csr_pem(new_key())).status_code == 201
    again = enroll(hub, pki, code, csr_pem(new_key()))
    forged = code[:21] + "B" * 43  # the real code's id, a wrong secret
    unknown = "elc_" + "0" * 16 + "_" + "A" * 43
    for answer in (again, enroll(hub, pki, forged, csr_pem(new_key())), enroll(hub, pki, unknown, csr_pem(new_key())),
                   enroll(hub, pki, "not a code", csr_pem(new_key()))):
        assert (answer.status_code, answer.json()) == (401, UNKNOWN)
    revoked = new_device(hub, "once-2")
    revoke_device(hub.app.state.sessions, "once-2")
    assert enroll(hub, pki, revoked, csr_pem(new_key())).json() == UNKNOWN


def test_an_expired_code_is_refused(hub: HubHandle, pki: PlantPki) -> None:
    add_device(hub.app.state.sessions, "late-1", "canary")
    yesterday = ManualClock(datetime.now(UTC) - timedelta(days=1))
    code = issue_enrollment_code(hub.app.state.sessions, "late-1", 3600, clock=yesterday)  # expired 23 h ago
    assert enroll(hub, pki, code, csr_pem(new_key())).json() == UNKNOWN
    newer = issue_enrollment_code(hub.app.state.sessions, "late-1", 3600)
    assert enroll(hub, pki, newer, csr_pem(new_key())).status_code == 201


def test_a_new_code_replaces_the_unused_one(hub: HubHandle, pki: PlantPki) -> None:
    first = new_device(hub, "twice-1")
    second = issue_enrollment_code(hub.app.state.sessions, "twice-1", 3600)
    assert enroll(hub, pki, first, csr_pem(new_key())).json() == UNKNOWN
    assert enroll(hub, pki, second, csr_pem(new_key())).status_code == 201


def test_bad_csrs_and_bodies_are_refused_without_using_the_code(hub: HubHandle, pki: PlantPki) -> None:
    code = new_device(hub, "csr-1")
    http = anonymous(hub, pki)
    tampered = enroll(hub, pki, code, tampered_csr(new_key()))
    assert tampered.status_code == 422 and "does not verify" in tampered.json()["detail"]
    malformed = enroll(hub, pki, code, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----")
    assert malformed.status_code == 422
    assert http.post(ENROLL_PATH, json={"code": code}).status_code == 422
    extra = http.post(ENROLL_PATH, json={"code": code, "csr": csr_pem(new_key()), "name": "x"})
    assert extra.status_code == 422 and code not in extra.text  # the code is never echoed
    assert http.post(ENROLL_PATH, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    form = http.post(ENROLL_PATH, content=json.dumps({"code": code, "csr": "x"}),
                     headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    huge = http.post(ENROLL_PATH, json={"code": code, "csr": "A" * 40_000})
    assert huge.status_code == 413
    assert enroll(hub, pki, code, csr_pem(new_key())).status_code == 201  # the code survived all of that


def test_two_racing_enrollments_with_one_code_get_one_certificate(hub: HubHandle, pki: PlantPki) -> None:
    for attempt in range(3):
        code = new_device(hub, f"race-{attempt}")
        barrier = threading.Barrier(4)
        answers: list[int] = []

        def go(code: str = code, barrier: threading.Barrier = barrier, answers: list[int] = answers) -> None:
            barrier.wait()
            answers.append(enroll(hub, pki, code, csr_pem(new_key())).status_code)

        threads = [threading.Thread(target=go) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [201, 401, 401, 401]


def test_claiming_a_code_is_a_conditional_update(hub: HubHandle) -> None:
    code = new_device(hub, "claim-1")
    code_id = code.split("_")[1]
    engine, now = hub.app.state.engine, datetime.now(UTC)
    with engine.begin() as connection:
        assert not claim_code(connection, code_id, now + timedelta(hours=2))  # expired by then: no row changes
    with engine.begin() as connection:
        assert claim_code(connection, code_id, now)
    with engine.begin() as connection:
        assert not claim_code(connection, code_id, now)  # used: no row changes


def test_renewal_needs_the_current_certificate_and_keeps_the_old_one(hub: HubHandle, pki: PlantPki,
                                                                     tmp_path: Path) -> None:
    code = new_device(hub, "renew-1")
    key = new_key()
    first = enroll(hub, pki, code, csr_pem(key)).json()
    path = device_path("renew-1", "certificate")
    assert anonymous(hub, pki).post(path, json={"csr": csr_pem(new_key())}).status_code == 401  # no certificate
    with as_device(hub, pki, tmp_path / "old", first, key) as old:
        new_key_ = new_key()
        renewed = old.post(path, json={"csr": csr_pem(new_key_)})
        assert renewed.status_code == 201, renewed.text
        second = renewed.json()
        assert tuple(second) == ENROLLMENT_FIELDS and second["certificate"] != first["certificate"]
        assert old.post(device_path("renew-1", "heartbeat"), json=BEAT).status_code == 200  # old still valid
        assert old.post(device_path("other-1", "certificate"), json={"csr": csr_pem(new_key())}).status_code == 403
        assert old.post(path, json={"csr": tampered_csr(new_key())}).status_code == 422
    with as_device(hub, pki, tmp_path / "new", second, new_key_) as new:
        assert new.post(device_path("renew-1", "heartbeat"), json=BEAT).status_code == 200
    tokened = anonymous(hub, pki).post(path, json={"csr": csr_pem(new_key())}, headers={
        "Authorization": f"Bearer {add_device(hub.app.state.sessions, 'renew-2', 'canary')}"})
    assert tokened.status_code == 401  # a token never renews (and renew-2's token on renew-1's path least of all)


def test_enrolling_again_revokes_the_earlier_certificates(hub: HubHandle, pki: PlantPki, tmp_path: Path) -> None:
    code = new_device(hub, "reimage-1")
    key = new_key()
    before = enroll(hub, pki, code, csr_pem(key)).json()
    fresh = CliRunner().invoke(devices_app, ["enroll-code", "reimage-1", "--root", str(hub.root)])
    assert fresh.exit_code == 0, fresh.output
    command = fresh.stdout.strip()
    assert command.startswith("edge-runner enroll --hub https://")
    new_code = command.split("--code ")[1].split()[0]
    key2 = new_key()
    after = enroll(hub, pki, new_code, csr_pem(key2)).json()
    with as_device(hub, pki, tmp_path / "before", before, key) as old:
        assert old.post(device_path("reimage-1", "heartbeat"), json=BEAT).status_code == 401
    with as_device(hub, pki, tmp_path / "after", after, key2) as new:
        assert new.post(device_path("reimage-1", "heartbeat"), json=BEAT).status_code == 200
    unknown = CliRunner().invoke(devices_app, ["enroll-code", "nobody", "--root", str(hub.root)])
    assert unknown.exit_code != 0


def test_no_release_repository_is_a_clear_409_and_keeps_the_code(pki: PlantPki, tmp_path: Path) -> None:
    root = hub_project(tmp_path / "bare", tls=pki.tls_params("optional"))
    with running_hub(root) as hub:
        code = new_device(hub, "early-1")
        answer = enroll(hub, pki, code, csr_pem(new_key()))
        assert answer.status_code == 409 and "no release repository" in answer.json()["detail"]
        with hub.app.state.sessions() as session:
            assert session.scalars(select(EnrollmentCode.used_at)).all() == [None]  # still unused


def test_no_code_key_or_token_in_logs_responses_or_database(pki: PlantPki, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    root = hub_project(tmp_path / "quiet", tls=pki.tls_params("optional"), repository=True)
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):  # they do not propagate
        logging.getLogger(name).addHandler(caplog.handler)
    with running_hub(root) as hub:
        token = add_device(hub.app.state.sessions, "quiet-1", "canary")
        code = issue_enrollment_code(hub.app.state.sessions, "quiet-1", 3600)
        key = new_key()
        secret_key = key_pem(key).decode()
        answers = [enroll(hub, pki, code, tampered_csr(new_key())), enroll(hub, pki, code, "x"),
                   enroll(hub, pki, code, csr_pem(key)), enroll(hub, pki, code, csr_pem(key))]
        assert [a.status_code for a in answers] == [422, 422, 201, 401]
        device = issue_recorded(pki, hub, "quiet-1")
        http = httpx.Client(base_url=hub.url, verify=client_context(pki.ca_file, device.cert_file, device.key_file))
        assert http.post(device_path("quiet-1", "heartbeat"), json=BEAT).status_code == 200
        responses = "".join(a.text for a in answers)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).removeHandler(caplog.handler)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    secrets = [code, code.split("_", 2)[2], token.split("_", 2)[2], hub.admin_token, "PRIVATE KEY",
               secret_key.splitlines()[1], device.key_file.read_text().splitlines()[1]]
    for secret in secrets:
        assert secret not in logged, secret
        assert secret not in responses, secret
    database = Path(create_engine(hub.settings.database_url).url.database or "")
    stored = b"".join(p.read_bytes() for p in database.parent.iterdir() if p.is_file())
    for secret in secrets[:4]:
        assert secret.encode() not in stored
    assert "route=/v1/enroll status=201" in caplog.text  # the request log is there, without anything else


def test_a_renewed_certificates_predecessor_ends_at_its_own_expiry(pki: PlantPki, tmp_path: Path) -> None:
    """The hub's clock decides expiry too (the TLS layer uses the machine's): two days on, the old
    one-day certificate is refused and the renewed one works."""
    clock = ManualClock(datetime.now(UTC))
    root = hub_project(tmp_path / "expiry", tls=pki.tls_params("optional"), repository=True)
    with running_hub(root, clock=clock) as hub:
        add_device(hub.app.state.sessions, "kiln-7", "canary")
        old = issue_recorded(pki, hub, "kiln-7", days=1)
        old_client = httpx.Client(base_url=hub.url, verify=client_context(pki.ca_file, old.cert_file, old.key_file))
        key = new_key()
        renewed = old_client.post(device_path("kiln-7", "certificate"), json={"csr": csr_pem(key)})
        assert renewed.status_code == 201
        assert old_client.post(device_path("kiln-7", "heartbeat"), json=BEAT).status_code == 200
        clock.advance(2 * 86400)
        assert old_client.post(device_path("kiln-7", "heartbeat"), json=BEAT).status_code == 401
        with as_device(hub, pki, tmp_path / "renewed", renewed.json(), key) as new:
            assert new.post(device_path("kiln-7", "heartbeat"), json=BEAT).status_code == 200


def test_the_runners_own_enrollment_renewal_and_polls_work_against_this_hub(pki: PlantPki, tmp_path: Path) -> None:
    """Both sides together: ``edge.enroll`` (what ``edge-runner enroll`` runs) against the real hub with
    certificates required, then the runner's hub client heartbeats and renews with what it wrote."""
    enroll_module = pytest.importorskip("edge.enroll")
    from edge.device_keys import new_key as device_key
    from edge.device_keys import signing_request
    from edge.hub_client import HubClient

    root = hub_project(tmp_path / "both", tls=pki.tls_params("required"), repository=True)
    with running_hub(root) as hub:
        add_device(hub.app.state.sessions, "press-7", "canary")
        code = issue_enrollment_code(hub.app.state.sessions, "press-7", 3600)
        etc = tmp_path / "etc"
        enrolled = enroll_module.enroll(hub.url, code, pki.ca_file, etc, tmp_path / "state")
        assert (enrolled.device_id, enrolled.channel) == ("press-7", "canary")
        identity = etc / "identity" / "current"
        context = client_context(etc / "ca.pem", identity / "device.pem", identity / "device.key")
        runner = HubClient(hub.url, "press-7", tls=context)
        assert runner.heartbeat(BEAT)["device_id"] == "press-7"
        assert tuple(runner.renew_certificate(signing_request(device_key(), "press-7"))) == ENROLLMENT_FIELDS
        assert httpx.get(f"{hub.url}/releases/metadata/root.json", verify=context).status_code == 200
        with pytest.raises(enroll_module.EnrollError, match="unknown, used or expired"):
            enroll_module.enroll(hub.url, code, pki.ca_file, tmp_path / "etc2", tmp_path / "state2")
