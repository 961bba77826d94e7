"""The runner renews its client certificate by itself: real certificates (hub.pki), a real HTTPS stand-in
for the hub on 127.0.0.1 that verifies client certificates (so an expired one is refused at the handshake).

Covers: the pair store (atomic switch, pruning, refusing a mismatched pair); kill -9 at random moments
of an install always leaves a matching pair; uploads going on through several renewals of a certificate
valid for seconds, with not one failed request; a renewal whose POST fails (503, unreachable) or whose
answer does not check out keeps the pair in use and is retried at the next check; the whole runner over
mutual TLS: a release pulled through TUF, heartbeats, renewals, ``certificate_expires`` in the state
report and ``edge-runner status`` but not in the heartbeat.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from edge.cert_renewal import CertificateRenewal
from edge.config import TlsConfig, load_config
from edge.contracts.tls import client_context
from edge.credentials import CERT_FILE, KEEP, KEY_FILE, CredentialStore
from edge.device_keys import CertificateError, load_certificate, new_key, not_after, pair_matches, signing_request
from edge.hub_client import HubClient, HubTlsError
from edge.loops import Loops
from edge.metrics import Registry
from edge.spool import Spool, SpoolEntry
from edge.state import StateDir
from edge.transport import ClientTls
from edge.uploader import Uploader
from edgeloop.testkit.pki import PlantPki, make_pki
from edgeloop.testkit.project import REPO
from edgeloop.testkit.runner_world import HubState, closed_port, tls_hub, wait_for

DEVICE = "press-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def parts(pki: PlantPki, folder: Path, valid_for: timedelta, url: str, renew_before: timedelta,
          check_s: float = 3600.0) -> tuple[TlsConfig, CredentialStore, ClientTls, HubClient]:
    """press-1's identity in ``folder``, its TLS context and hub client, wired as the runner wires them."""
    keys = pki.install_device(folder, DEVICE, valid_for)
    config = TlsConfig(ca_file=Path(keys["ca_file"]), cert_file=Path(keys["cert_file"]),
                       key_file=Path(keys["key_file"]), renew_before_days=renew_before / timedelta(days=1),
                       renew_check_s=check_s)
    assert config.cert_file is not None and config.key_file is not None
    store = CredentialStore.of(config.cert_file, config.key_file)
    assert store is not None
    tls = ClientTls.from_config(config)
    client = HubClient(url, DEVICE, None, tls=tls.context)
    tls.on_reload(client.use_tls)
    return config, store, tls, client


def current_pair(store: CredentialStore) -> tuple[bytes, bytes]:
    folder = store.current_folder()
    assert folder is not None
    return (folder / CERT_FILE).read_bytes(), (folder / KEY_FILE).read_bytes()


# --- the pair store ---------------------------------------------------------------------------------

def test_the_store_switches_pairs_atomically_and_keeps_the_last_two(tmp_path: Path, pki: PlantPki) -> None:
    store = CredentialStore(tmp_path / "identity")
    pairs = [pki.device_pair(DEVICE) for _ in range(3)]
    for pair in pairs:
        store.install(*pair)
    assert os.readlink(store.folder / "current") == "3" and current_pair(store) == pairs[2]
    assert [p.name for p in store.pairs()] == ["2", "3"] and KEEP == 2
    assert store.cert_file == store.folder / "current" / CERT_FILE  # what runner.toml names
    assert (store.folder.stat().st_mode & 0o777) == 0o700
    assert (store.folder / "3" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    certificate, _ = pairs[0]
    with pytest.raises(CertificateError, match="not for this private key"):
        store.install(certificate, pairs[1][1])
    assert current_pair(store) == pairs[2] and [p.name for p in store.pairs()] == ["2", "3"]
    assert not [p for p in store.folder.iterdir() if p.name.startswith(".partial-")]
    found = CredentialStore.of(store.cert_file, store.key_file)
    assert found is not None and found.folder == store.folder
    assert CredentialStore.of(store.folder / "3" / CERT_FILE, store.folder / "3" / KEY_FILE) is None  # plain files


CHILD = """
import sys
from pathlib import Path
from edge.credentials import CredentialStore
store, pairs = CredentialStore(Path(sys.argv[1])), Path(sys.argv[2])
items = [((pairs / f"{i}.pem").read_bytes(), (pairs / f"{i}.key").read_bytes()) for i in range(4)]
store.install(*items[0])
print("ready", flush=True)
i = 1
while True:
    store.install(*items[i % 4])
    i += 1
"""


@pytest.mark.slow  # a kill -9 loop
def test_kill_9_during_an_install_always_leaves_a_matching_pair(tmp_path: Path, pki: PlantPki) -> None:
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for i in range(4):
        certificate, key = pki.device_pair(DEVICE)
        (pairs / f"{i}.pem").write_bytes(certificate)
        (pairs / f"{i}.key").write_bytes(key)
    rng = random.Random(5)
    for trial in range(12):
        store = CredentialStore(tmp_path / f"identity-{trial}")
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(store.folder), str(pairs)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # before any repair: the link names a complete pair that matches, and TLS loads it
        certificate, key = current_pair(store)
        assert pair_matches(certificate, key), trial
        client_context(pki.ca_file, store.cert_file, store.key_file)
        ClientTls(pki.ca_file, store.cert_file, store.key_file)
        store.recover()
        assert pair_matches(*current_pair(store))
        leftovers = [p.name for p in store.folder.iterdir()
                     if p.name.startswith((".partial-", ".removing-", ".current"))]
        assert leftovers == [], trial


# --- renewal ----------------------------------------------------------------------------------------

def test_an_expired_certificate_is_refused_by_the_hub(tmp_path: Path, pki: PlantPki) -> None:
    """The control for the next test: without renewal, requests fail once the certificate ends."""
    with tls_hub(HubState(pki)) as (url, state):
        _, _, tls, client = parts(pki, tmp_path, timedelta(seconds=1), url, timedelta(0))
        assert client.heartbeat({})
        time.sleep(1.6)
        client.use_tls(tls.context)  # a new connection (a kept-alive one was authenticated before the end)
        with pytest.raises(HubTlsError, match="refused this device's"):  # the alert, or the closed connection
            client.heartbeat({})


@pytest.mark.slow  # uploads for 7 s
def test_uploads_go_on_through_renewals_with_no_gap(tmp_path: Path, pki: PlantPki) -> None:
    state = HubState(pki, certificate_days=3 / 86_400)  # every certificate it issues lasts 3 s
    with tls_hub(state) as (url, _):
        config, store, tls, client = parts(pki, tmp_path / "device", timedelta(seconds=3), url,
                                           renew_before=timedelta(seconds=1.5), check_s=0.1)
        registry = Registry()
        renewal = CertificateRenewal(DEVICE, config, store, tls, client, registry)
        loops = Loops(registry.counter("loop_errors_total", "errors", ("loop",)))
        spool = Spool(tmp_path / "spool.db", 1 << 24)
        uploader = Uploader(spool, client, tmp_path / "quarantine", batch_rows=5)
        loops.every("certificate", lambda: config.renew_check_s, renewal.check_now)
        sent = 0
        deadline = time.monotonic() + 7.0  # the first certificate and at least three renewed ones
        try:
            while time.monotonic() < deadline:
                spool.put([SpoolEntry("labelled", {"event_id": sent + i, "value": 0.5}) for i in range(5)])
                sent += 5
                assert uploader.upload_once() == 5  # raises HubUnavailable on the smallest gap
                time.sleep(0.03)
        finally:
            loops.stop(5)
            spool.close()
    uploads = [s for s in state.seen if s.path.endswith("/uploads")]
    serials = list(dict.fromkeys(s.serial for s in uploads))
    assert uploader.counters["upload_failures"] == 0 and uploader.counters["rows_uploaded"] == sent
    assert len(uploads) == sent // 5 and {s.device for s in uploads} == {DEVICE}
    assert {s.status for s in uploads} == {201}
    assert len(serials) >= 3 and state.renewals >= 3  # each renewed certificate was used from the next request on
    text = registry.render()
    assert f'edgeloop_runner_certificate_renewals_total{{outcome="renewed"}} {state.renewals}' in text
    assert 'outcome="failed"' not in text


def test_a_failed_renewal_keeps_the_pair_in_use_and_is_retried(tmp_path: Path, pki: PlantPki) -> None:
    state = HubState(pki, fail_renewals=2)
    with tls_hub(state) as (url, _):
        config, store, tls, client = parts(pki, tmp_path / "device", timedelta(days=10), url,
                                           renew_before=timedelta(days=30))
        registry, events = Registry(), StateDir(tmp_path / "state")
        renewal = CertificateRenewal(DEVICE, config, store, tls, client, registry, events)
        before, ends = current_pair(store), tls.certificate_expires
        assert renewal.due()
        assert renewal.check_now() == "failed" and "503" in (renewal.last_error or "")
        assert renewal.check_now() == "failed" and renewal.failures_in_a_row == 2
        assert current_pair(store) == before and tls.certificate_expires == ends
        assert client.heartbeat({})  # the old certificate goes on working meanwhile
        assert renewal.check_now() == "renewed" and renewal.failures_in_a_row == 0
        after = current_pair(store)
        assert after != before and pair_matches(*after) and not renewal.due()
        assert tls.certificate_expires is not None and ends is not None and tls.certificate_expires > ends
        assert client.heartbeat({})
    beats = [s for s in state.seen if s.path.endswith("/heartbeat")]
    assert beats[0].serial != beats[1].serial  # the request after the renewal presented the new certificate
    assert int(beats[1].serial or "", 16) == load_certificate(after[0]).serial_number
    text = registry.render()
    assert 'certificate_renewals_total{outcome="failed"} 2' in text and 'outcome="renewed"} 1' in text
    assert "edgeloop_runner_certificate_expiry_seconds 7" in text  # 90 days ahead: 7.7e6 s
    kinds = [e["event"] for e in events.events()]
    assert kinds == ["certificate_renewal_failed", "certificate_renewed"]  # the first failure in a row only


def test_an_unreachable_hub_or_a_wrong_answer_changes_nothing(tmp_path: Path, pki: PlantPki) -> None:
    config, store, tls, _ = parts(pki, tmp_path / "device", timedelta(days=10),
                                  "https://127.0.0.1:1", renew_before=timedelta(days=30))
    before = current_pair(store)
    offline = HubClient(f"https://127.0.0.1:{closed_port()}", DEVICE, None, tls=tls.context, timeout_s=2)
    renewal = CertificateRenewal(DEVICE, config, store, tls, offline, Registry())
    assert renewal.check_now() == "failed" and "unreachable" in (renewal.last_error or "")

    class WrongHub(HubClient):
        """Answers a renewal with a certificate for another key (or for another device)."""

        device = DEVICE

        def renew_certificate(self, csr_pem: str) -> dict[str, object]:
            certificate = pki.sign(signing_request(new_key(), "x"), self.device, timedelta(days=90))
            return {"certificate": certificate.decode(), "ca": pki.ca.pem.decode()}

    wrong = WrongHub(f"https://127.0.0.1:{closed_port()}", DEVICE, None, tls=tls.context)
    renewal = CertificateRenewal(DEVICE, config, store, tls, wrong, Registry())
    assert renewal.check_now() == "failed" and "not for the key this device generated" in (renewal.last_error or "")
    assert current_pair(store) == before


# --- the whole runner -------------------------------------------------------------------------------

@pytest.mark.slow  # trains a model, runs the runner for seconds
def test_the_runner_over_mutual_tls_pulls_releases_renews_and_reports_expiry(tmp_path: Path, pki: PlantPki) -> None:
    from edge.runner import Runner
    from edge.status import format_status, read_status
    from edgeloop.testkit.runner_world import ReleaseWorld, runner_config

    world = ReleaseWorld(tmp_path / "world")
    version = world.publish(1)
    state = HubState(pki, releases=world.config.repository, certificate_days=5 / 86_400)
    keys = pki.install_device(tmp_path / "device", DEVICE, timedelta(seconds=5))
    with tls_hub(state) as (url, _):
        path = runner_config(tmp_path / "device", url, None, world.root_bytes,
                             tls={**keys, "renew_before_days": 2.5 / 86_400, "renew_check_s": 0.2})
        config = load_config(path, environ={})
        assert config.hub.token is None and config.tls.client_certificate
        runner = Runner(config)
        runner.start()
        try:
            wait_for(lambda: runner.model_version == str(version), what="the release, over mutual TLS")
            wait_for(lambda: state.renewals >= 2, timeout=20, what="two renewals")
            first_beats = len(state.heartbeats)
            wait_for(lambda: len(state.heartbeats) >= first_beats + 2, what="heartbeats after the renewals")
            report = runner.state_report()
            metrics = runner.metrics_text()
        finally:
            runner.stop()
    assert {s.device for s in state.seen} == {DEVICE}
    refused = [s.path for s in state.seen if s.status not in (200, 201)]
    assert all(p.endswith(".root.json") for p in refused), refused  # only TUF's look for a newer root (404)
    assert any(s.path.startswith("/releases/targets/") for s in state.seen)  # TUF itself over the same TLS
    assert len({s.serial for s in state.seen}) >= 3
    assert 'heartbeats_total{outcome="failed"}' not in metrics and "loop_errors_total{" not in metrics
    current = load_certificate((tmp_path / "device" / "identity" / "current" / CERT_FILE).read_bytes())
    assert report["certificate_expires"] is not None
    assert not any("certificate_expires" in json.dumps(beat) for beat in state.heartbeats)  # the hub's schema
    status = read_status(config)
    assert status["certificate_expires"] == not_after(current).isoformat()
    assert "certificate" in format_status(status) and "expires" in format_status(status)
