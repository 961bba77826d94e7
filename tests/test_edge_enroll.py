"""``edge-runner enroll`` against a real HTTPS stand-in for the hub's ``POST /v1/enroll`` (certificates
signed by the hub's own CA code, hub.pki).

Covers: enroll writes a runner.toml that ``load_config`` accepts as is and the runner starts with
(authenticating by its certificate alone), a key file of mode 0600 in a 0700 folder, the CA and the
trusted root; the key never leaves the device (only a CSR does); a used code is refused in one line and
changes nothing; an enrolled config is not overwritten without ``--force``; a hub not signed by
``--ca``, an unreachable hub, plain http to a remote host and a 422 each give one line, exit 2, no
traceback; the code never appears in a file, on stdout or stderr, even when the hub echoes it back.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import load_config
from edge.device_keys import certificate_device_id, load_certificate, pair_matches
from edge.enroll import UNKNOWN_CODE
from edgeloop.testkit.pki import PlantPki, make_pki
from edgeloop.testkit.runner_world import HubState, closed_port, tls_hub

CODE = "ENR-7Q2X-K9PL-SECRET"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def hub(pki: PlantPki) -> Iterator[tuple[str, HubState]]:
    state = HubState(pki, codes={CODE: ("press-07", "stable")},
                     trusted_root='{"signed": {"_type": "root", "version": 1}, "signatures": []}')
    with tls_hub(state, require_client=False) as served:  # enrollment comes without a client certificate
        yield served


def enroll(url: str, ca: Path, base: Path, *extra: str, code: str = CODE) -> int:
    return main(["enroll", "--hub", url, "--code", code, "--ca", str(ca), "--config-dir", str(base / "etc"),
                 "--state-dir", str(base / "var"), *extra])


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def assert_code_nowhere(base: Path, *texts: str) -> None:
    for path, data in files_under(base).items():
        assert CODE.encode() not in data, path
    for text in texts:
        assert CODE not in text


def test_enroll_writes_a_config_the_runner_starts_with(tmp_path: Path, hub: tuple[str, HubState], pki: PlantPki,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hub
    assert enroll(url, pki.ca_file, tmp_path) == 0
    out, err = capsys.readouterr()
    etc = tmp_path / "etc"
    assert "enrolled as press-07 (channel stable)" in out and f"edge-runner run --config {etc / 'runner.toml'}" in out
    config = load_config(etc / "runner.toml", environ={})
    assert (config.device_id, config.releases.channel, config.hub.url) == ("press-07", "stable", url)
    assert config.state_dir == (tmp_path / "var").resolve() and config.hub.token is None
    assert config.tls.ca_file == etc / "ca.pem" and config.tls.ca_file.read_bytes() == pki.ca_file.read_bytes()
    assert config.tls.cert_file == etc / "identity" / "current" / "device.pem"
    assert config.releases.trusted_root.read_text() == state.trusted_root
    assert config.tls.key_file is not None and config.tls.key_file.stat().st_mode & 0o777 == 0o600
    assert (etc / "identity").stat().st_mode & 0o777 == 0o700
    certificate, key = config.tls.cert_file.read_bytes(), config.tls.key_file.read_bytes()
    assert pair_matches(certificate, key) and certificate_device_id(load_certificate(certificate)) == "press-07"
    assert b"PRIVATE KEY" not in out.encode() + err.encode()
    assert_code_nowhere(tmp_path, out, err)
    assert [(s.path, s.device, s.status) for s in state.seen] == [("/v1/enroll", None, 201)]

    from edge.runner import Runner  # the runner starts with it as is, and the hub sees its certificate

    runner = Runner(config)
    try:
        assert runner.heartbeat_now() is True
    finally:
        runner.stop()
    assert [(s.path, s.device) for s in state.seen][-1] == ("/v1/devices/press-07/heartbeat", "press-07")


def test_a_used_code_is_refused_in_one_line_and_changes_nothing(
        tmp_path: Path, hub: tuple[str, HubState], pki: PlantPki, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = hub
    assert enroll(url, pki.ca_file, tmp_path) == 0
    before = files_under(tmp_path / "etc")
    capsys.readouterr()
    assert enroll(url, pki.ca_file, tmp_path, "--force") == 2
    out, err = capsys.readouterr()
    assert err == f"edge-runner: {UNKNOWN_CODE}\n" and out == ""
    assert UNKNOWN_CODE == ("the enrollment code is unknown, used or expired: ask for a new one "
                            "(edgeloop devices enroll-code NAME)")
    assert files_under(tmp_path / "etc") == before
    assert_code_nowhere(tmp_path, out, err)


def test_an_enrolled_gateway_is_not_overwritten_without_force(tmp_path: Path, hub: tuple[str, HubState], pki: PlantPki,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hub
    assert enroll(url, pki.ca_file, tmp_path) == 0
    etc = tmp_path / "etc"
    first = (etc / "identity" / "current" / "device.key").read_bytes()
    state.codes["ENR-SECOND-ONE"] = ("press-07", "canary")
    capsys.readouterr()
    assert enroll(url, pki.ca_file, tmp_path, code="ENR-SECOND-ONE") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "enrolled already" in err and "--force" in err
    assert "ENR-SECOND-ONE" in state.codes  # refused before asking the hub: the code is still good
    assert enroll(url, pki.ca_file, tmp_path, "--force", code="ENR-SECOND-ONE") == 0
    assert os.readlink(etc / "identity" / "current") == "2"
    assert (etc / "identity" / "current" / "device.key").read_bytes() != first  # a new key, made here
    assert load_config(etc / "runner.toml", environ={}).releases.channel == "canary"
    assert (etc / "runner.toml.bak").exists()


@pytest.mark.parametrize("case", ["other-ca", "unreachable", "plain-http", "not-a-ca"])
def test_failures_are_one_line_without_traceback(tmp_path: Path, hub: tuple[str, HubState], pki: PlantPki, case: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hub
    ca = pki.ca_file
    if case == "other-ca":
        ca = pki.other_ca().ca_file
        expected = f"edge-runner: the hub's certificate is not signed by {ca}\n"
    elif case == "unreachable":
        url = f"https://127.0.0.1:{closed_port()}"
        expected = f"edge-runner: cannot reach the hub at {url}: Connection refused\n"
    elif case == "plain-http":
        url = "http://hub.plant.local:8700"
        expected = ("edge-runner: --hub: plain http to hub.plant.local is unencrypted and unauthenticated: the "
                    "enrollment would travel in the clear; use https://\n")
    else:
        ca = tmp_path / "notes.txt"
        ca.write_text("not a certificate")
        expected = f"edge-runner: --ca: {ca} is not a PEM certificate (the plant CA, ca.pem)\n"
    assert enroll(url, ca, tmp_path) == 2
    out, err = capsys.readouterr()
    assert err == expected and out == "" and "Traceback" not in err
    assert not (tmp_path / "etc").exists() and state.seen == [] and CODE in state.codes  # nothing spent


def test_a_422_shows_the_hubs_detail_but_never_the_code(tmp_path: Path, pki: PlantPki, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    state = HubState(pki, codes={CODE: ("press-07", "stable")}, echo_code_on_422=True)
    monkeypatch.setattr("edge.enroll.signing_request", lambda key, name: "-----BEGIN NOT A CSR-----")
    with tls_hub(state, require_client=False) as (url, _):
        assert enroll(url, pki.ca_file, tmp_path) == 2
    out, err = capsys.readouterr()
    assert err.startswith("edge-runner: the hub refused the enrollment: ") and err.count("\n") == 1
    assert "not a PEM certificate signing request" in err and "***" in err  # the echoed code, blanked
    assert_code_nowhere(tmp_path, out, err)


def test_the_code_can_come_from_stdin(tmp_path: Path, hub: tuple[str, HubState], pki: PlantPki,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hub
    monkeypatch.setattr(sys, "stdin", io.StringIO(CODE + "\n"))
    assert enroll(url, pki.ca_file, tmp_path, code="-") == 0
    assert CODE not in state.codes
    assert_code_nowhere(tmp_path, *capsys.readouterr())


def test_enroll_help_is_a_command() -> None:
    script = Path(sys.executable).parent / "edge-runner"
    out = subprocess.run([str(script), "enroll", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage: edge-runner enroll" in out.stdout
    for flag in ("--hub", "--code", "--ca", "--config-dir", "--state-dir", "--force"):
        assert flag in out.stdout
