"""TLS on every device request: real certificates from the hub's own CA code (hub.pki), a real HTTPS
stand-in for the hub on 127.0.0.1 (edge.contracts.tls.server_context, client certificates verified).

Covers: the hub client presents the device's certificate (the server sees the device id) and works
without a token; a hub whose certificate is not from the configured CA is refused before any byte of a
request is sent; a hub that wants a client certificate says so; the insecure rule (plain http only to
loopback unless ``hub.insecure``) in the config and in the client; ``https`` needs a CA; the key file's
mode; the token optional with a certificate and still working without one; the TUF fetcher over the
same TLS context.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api import exceptions

from edge.config import ConfigError, load_config
from edge.hub_client import HubClient, HubRefused, HubTlsError
from edge.releases import ClientLimits, DeadlineFetcher
from edge.transport import ClientTls, TlsSetupError
from edgeloop.testkit.pki import PlantPki, make_pki
from edgeloop.testkit.runner_world import HubState, tls_hub


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PlantPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def device(pki: PlantPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """press-1's identity as enroll lays it out: the [tls] keys."""
    return pki.install_device(tmp_path_factory.mktemp("device"), "press-1")


@pytest.fixture
def hub(pki: PlantPki) -> Iterator[tuple[str, HubState]]:
    with tls_hub(HubState(pki, tokens={"press-1": "elt_press-1_token"})) as served:
        yield served


def client_tls(keys: dict[str, str], certificate: bool = True) -> ClientTls:
    if not certificate:
        return ClientTls(Path(keys["ca_file"]))
    return ClientTls(Path(keys["ca_file"]), Path(keys["cert_file"]), Path(keys["key_file"]))


def test_the_client_presents_the_device_certificate_and_needs_no_token(
        hub: tuple[str, HubState], device: dict[str, str]) -> None:
    url, state = hub
    client = HubClient(url, "press-1", None, tls=client_tls(device).context)
    assert client.heartbeat({"health": "ok"}) == {"ok": True}
    ack = client.upload(b"event_id,failure\n1,0\n", "k" * 64)
    assert ack["deduplicated"] is False and state.uploads["k" * 64] == b"event_id,failure\n1,0\n"
    assert [(s.path, s.device, s.status) for s in state.seen] == [
        ("/v1/devices/press-1/heartbeat", "press-1", 200), ("/v1/devices/press-1/uploads", "press-1", 201)]
    assert state.heartbeats == [{"health": "ok"}]


def test_a_hub_not_signed_by_the_configured_ca_is_refused_before_any_request(
        hub: tuple[str, HubState], pki: PlantPki, device: dict[str, str]) -> None:
    url, state = hub
    wrong = {**device, "ca_file": str(pki.other_ca().ca_file)}
    client = HubClient(url, "press-1", "elt_press-1_token", tls=client_tls(wrong).context)
    with pytest.raises(HubTlsError, match=r"the hub's certificate is not signed by the configured CA \(tls.ca_file\)"):
        client.upload(b"a\n1\n", "k" * 64)
    assert state.seen == [] and state.uploads == {}  # nothing reached the handler, not even the token
    assert "elt_press-1_token" not in repr(client)


def test_a_hub_that_requires_a_certificate_says_so_and_a_token_still_works_where_optional(
        pki: PlantPki, device: dict[str, str]) -> None:
    state = HubState(pki, tokens={"press-1": "elt_press-1_token"})
    with tls_hub(state, require_client=True) as (url, _), pytest.raises(HubTlsError, match="client certificate"):
        HubClient(url, "press-1", "elt_press-1_token", tls=client_tls(device, False).context).heartbeat({})
    with tls_hub(state, require_client=False) as (url, _):  # client_certificates = optional: a token will do
        assert HubClient(url, "press-1", "elt_press-1_token", tls=client_tls(device, False).context).heartbeat({})
        with pytest.raises(HubRefused, match="401"):
            HubClient(url, "press-1", "elt_wrong", tls=client_tls(device, False).context).heartbeat({})
    assert [(s.device, s.status) for s in state.seen] == [(None, 200), (None, 401)]


def test_the_client_refuses_plain_http_to_a_host_that_is_not_loopback() -> None:
    with pytest.raises(ValueError, match="plain http to hub.plant.local is unencrypted"):
        HubClient("http://hub.plant.local:8700", "press-1", "t")
    with pytest.raises(ValueError, match="plain http to 10.0.0.5"):
        HubClient("http://10.0.0.5:8700", "press-1", "t")
    HubClient("http://hub.plant.local:8700", "press-1", "t", insecure=True)  # said explicitly
    for loopback in ("http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700", "http://127.0.0.9"):
        HubClient(loopback, "press-1", "t")
    with pytest.raises(ValueError, match="an https hub needs a TLS context"):
        HubClient("https://hub.plant.local:8700", "press-1", "t")  # never urllib3's default trust


# --- the configuration's rules ----------------------------------------------------------------------

def write_config(folder: Path, hub: str, tls: str = "", token: bool = True, releases: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "root.json").write_text("{}")
    hub_lines = hub
    if token:
        (folder / "token").write_text("elt_press-1_secret\n")
        os.chmod(folder / "token", 0o600)
        hub_lines += '\ntoken_file = "token"'
    text = f"""
device_id = "press-1"
state_dir = "state"
[hub]
{hub_lines}
[releases]
trusted_root = "root.json"
{releases}
"""
    if tls:
        text += f"[tls]\n{tls}\n"
    path = folder / "runner.toml"
    path.write_text(textwrap.dedent(text))
    return path


def tls_keys(keys: dict[str, str], *names: str) -> str:
    return "\n".join(f'{name} = "{keys[name]}"' for name in names)


@pytest.mark.parametrize(("hub_lines", "releases", "key"), [
    ('url = "http://hub.plant.local:8700"', "", "hub.url"),
    ('url = "http://192.168.1.20:8700"', "", "hub.url"),
    ('url = "http://127.0.0.1:8700"', 'metadata_url = "http://repo.plant.local/metadata/"', "releases.metadata_url"),
])
def test_plain_http_to_a_remote_host_refuses_to_start_unless_insecure(tmp_path: Path, hub_lines: str, releases: str,
                                                                      key: str) -> None:
    path = write_config(tmp_path, hub_lines, releases=releases)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert message.startswith(f"{key}: plain http to ") and "hub.insecure = true" in message and "\n" not in message
    insecure = write_config(tmp_path, hub_lines + "\ninsecure = true", releases=releases)
    assert load_config(insecure, environ={}).hub.insecure is True


def test_loopback_http_keeps_working_as_before(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700"):
        config = load_config(write_config(tmp_path, f'url = "{url}"'), environ={})
        assert config.hub.token is not None and config.tls.ca_file is None and not config.hub.insecure


def test_https_needs_the_plant_ca_or_the_system_store_when_asked(tmp_path: Path, device: dict[str, str]) -> None:
    https = 'url = "https://hub.plant.local:8700"'
    with pytest.raises(ConfigError, match=r"^tls\.ca_file: required for an https hub"):
        load_config(write_config(tmp_path, https), environ={})
    assert load_config(write_config(tmp_path, https, "system_store = true"), environ={}).tls.system_store
    config = load_config(write_config(tmp_path, https, tls_keys(device, "ca_file")), environ={})
    assert config.tls.ca_file == Path(device["ca_file"]) and config.hub.token is not None  # token, no certificate
    with pytest.raises(ConfigError, match=r"^tls\.ca_file: cannot read"):
        load_config(write_config(tmp_path, https, 'ca_file = "absent.pem"'), environ={})


def test_with_a_client_certificate_the_token_is_optional_over_https_only(tmp_path: Path,
                                                                         device: dict[str, str]) -> None:
    keys = tls_keys(device, "ca_file", "cert_file", "key_file")
    config = load_config(write_config(tmp_path, 'url = "https://hub.plant.local:8700"', keys, token=False),
                         environ={})
    assert config.hub.token is None and config.tls.client_certificate
    assert config.tls.renew_before_days == 30.0 and config.tls.renew_check_s == 3600.0
    with pytest.raises(ConfigError, match=r"^hub\.token_file: required key is missing.*client certificate"):
        load_config(write_config(tmp_path, 'url = "http://127.0.0.1:8700"', keys, token=False), environ={})
    with_token = load_config(write_config(tmp_path, 'url = "https://hub.plant.local:8700"', keys), environ={})
    assert with_token.hub.token is not None and with_token.hub.token.reveal() == "elt_press-1_secret"


def test_the_key_file_must_be_private_and_go_with_its_certificate(tmp_path: Path, pki: PlantPki) -> None:
    keys = pki.install_device(tmp_path / "dev", "press-1")
    https = 'url = "https://hub.plant.local:8700"'
    os.chmod(keys["key_file"], 0o644)
    with pytest.raises(ConfigError, match=r"^tls\.key_file: .* is readable by others \(mode 644\); run: chmod 600"):
        load_config(write_config(tmp_path, https, tls_keys(keys, "ca_file", "cert_file", "key_file")), environ={})
    os.chmod(keys["key_file"], 0o600)
    with pytest.raises(ConfigError, match=r"^tls\.key_file: required with tls\.cert_file"):
        load_config(write_config(tmp_path, https, tls_keys(keys, "ca_file", "cert_file")), environ={})
    with pytest.raises(ConfigError, match=r"^tls\.renew_check_s: expected a number > 0"):
        load_config(write_config(tmp_path, https, tls_keys(keys, "ca_file") + "\nrenew_check_s = 0"), environ={})
    with pytest.raises(ConfigError, match=r"^tls\.sytem_store: unknown key"):
        load_config(write_config(tmp_path, https, tls_keys(keys, "ca_file") + "\nsytem_store = true"), environ={})


def test_a_certificate_that_is_not_for_the_key_is_a_clear_error(tmp_path: Path, pki: PlantPki) -> None:
    one, two = pki.install_device(tmp_path / "one", "press-1"), pki.install_device(tmp_path / "two", "press-2")
    with pytest.raises(TlsSetupError, match=r"^tls\.cert_file: cannot load the client certificate and its key"):
        ClientTls(Path(one["ca_file"]), Path(one["cert_file"]), Path(two["key_file"]))


# --- the TUF fetcher over the same context ----------------------------------------------------------

def test_the_tuf_fetcher_uses_the_runner_tls_context(tmp_path: Path, pki: PlantPki, device: dict[str, str]) -> None:
    (tmp_path / "repo" / "metadata").mkdir(parents=True)
    (tmp_path / "repo" / "metadata" / "timestamp.json").write_bytes(b'{"signed": {}}')
    state = HubState(pki, releases=tmp_path / "repo")
    with tls_hub(state) as (url, _):
        target = f"{url}/releases/metadata/timestamp.json"
        fetched = b"".join(DeadlineFetcher(ClientLimits(), tls=client_tls(device).context).fetch(target))
        assert fetched == b'{"signed": {}}'
        assert [(s.path, s.device) for s in state.seen] == [("/releases/metadata/timestamp.json", "press-1")]
        with pytest.raises(exceptions.DownloadError, match="https needs the runner's TLS context"):
            DeadlineFetcher(ClientLimits()).fetch(target)
        wrong = ClientTls(pki.other_ca().ca_file, Path(device["cert_file"]), Path(device["key_file"]))
        with pytest.raises(exceptions.DownloadError, match="not signed by"):
            b"".join(DeadlineFetcher(ClientLimits(), tls=wrong.context).fetch(target))
