"""The edge runner's TOML config: defaults, overrides, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def _write(folder: Path, text: str, token: str | None = "elt_press-07_secretsecret") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if token is not None:
        (folder / "token").write_text(token + "\n")
        os.chmod(folder / "token", 0o600)
    (folder / "root.json").write_text("{}")
    path = folder / "runner.toml"
    path.write_text(text)
    return path


MINIMAL = """
device_id = "press-07"
state_dir = "state"
[hub]
url = "http://127.0.0.1:8700/"
token_file = "token"
[releases]
trusted_root = "root.json"
"""


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert config.state_dir == tmp_path / "state"
    assert config.releases.trusted_root == tmp_path / "root.json"
    assert config.releases.metadata_url == "http://127.0.0.1:8700/releases/metadata/"
    assert config.releases.targets_url == "http://127.0.0.1:8700/releases/targets/"
    assert config.releases.channel == "canary"
    assert config.api.host == "127.0.0.1"
    assert config.upload.mode == "rows"
    assert config.hub.token is not None and config.hub.token.reveal() == "elt_press-07_secretsecret"


def test_token_never_shows_in_repr(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert "secretsecret" not in repr(config)
    assert "secretsecret" not in str(config.hub)


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "edge-runner.example.toml").read_text()
    text = text.replace("/etc/edge-runner/", f"{tmp_path}/")
    (tmp_path / "identity" / "current").mkdir(parents=True)
    for name in ("ca.pem", "identity/current/device.pem", "identity/current/device.key"):
        (tmp_path / name).write_text("PEM\n")
    os.chmod(tmp_path / "identity/current/device.key", 0o600)
    config = load_config(_write(tmp_path, text), environ={})
    assert config.device_id == "press-07"
    assert config.upload.random_rate == 0.02
    assert config.hub.url.startswith("https://") and config.hub.token is None  # the client certificate will do
    assert config.tls.cert_file == tmp_path / "identity/current/device.pem"


def test_environment_overrides_win(tmp_path: Path) -> None:
    env = {
        "EDGE_RUNNER__HUB__URL": "http://10.0.0.5:9000",
        "EDGE_RUNNER__HUB__INSECURE": "true",  # plain http to a remote host: only when said explicitly
        "EDGE_RUNNER__UPLOAD__RANDOM_RATE": "0.5",
        "EDGE_RUNNER__UPLOAD__LOCAL_ONLY": '["operator", "lot"]',
        "EDGE_RUNNER__DEVICE_ID": "mill-2",
        "EDGE_RUNNER_TOKEN": "elt_mill-2_fromenv",
    }
    config = load_config(_write(tmp_path, MINIMAL, token=None), environ=env)
    assert config.hub.url == "http://10.0.0.5:9000" and config.hub.insecure is True
    assert config.upload.random_rate == 0.5
    assert config.upload.local_only == ("operator", "lot")
    assert config.device_id == "mill-2"
    assert config.hub.token is not None and config.hub.token.reveal() == "elt_mill-2_fromenv"


@pytest.mark.parametrize(("edit", "env", "message"), [
    (("device_id = \"press-07\"", "device_id = \"../etc\""), {}, "device_id:"),
    (("[releases]", "[releases]\nchannl = \"x\""), {}, "releases.channl: unknown key"),
    (("[releases]", "[releases]\nchannel = \"Bad Name\""), {}, "releases.channel:"),
    (("", ""), {"EDGE_RUNNER__UPLOAD__RANDOM_RATE": "1.5"}, "upload.random_rate:"),
    (("", ""), {"EDGE_RUNNER__UPLOAD__MODE": "everything"}, "upload.mode:"),
    (("", ""), {"EDGE_RUNNER__API__PORT": "70000"}, "api.port:"),
    (("url = \"http://127.0.0.1:8700/\"", "url = \"ftp://x\""), {}, "hub.url:"),
    (("url = \"http://127.0.0.1:8700/\"", "url = \"http://hub.plant.local\""), {}, "hub.url: plain http"),
    (("url = \"http://127.0.0.1:8700/\"", "url = \"https://hub.plant.local\""), {}, "tls.ca_file: required"),
    (("", ""), {"EDGE_RUNNER__TLS__RENEW_BEFORE_DAYS": "-1"}, "tls.renew_before_days:"),
    (("trusted_root = \"root.json\"", ""), {}, "releases.trusted_root: required key is missing"),
    (("", ""), {"EDGE_RUNNER__NOPE": "1"}, "nope: unknown key"),
    (("", ""), {"EDGE_RUNNER__UPLOAD__BACKOFF_MAX_S": "0.5"}, "upload.backoff_max_s:"),
    (("", ""), {"EDGE_RUNNER__DRIFT__MIN_ROWS": "6000"}, "drift.min_rows: must be <="),
    (("state_dir = \"state\"", "state_dir = \"state\"\n[upload]\nbatch_rows = true"), {}, "upload.batch_rows:"),
])
def test_errors_name_the_key(tmp_path: Path, edit: tuple[str, str], env: dict[str, str], message: str) -> None:
    text = MINIMAL.replace(*edit) if edit[0] else MINIMAL
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(_write(tmp_path, text), environ=env)


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    os.chmod(tmp_path / "token", 0o644)
    with pytest.raises(ConfigError, match="hub.token_file: .*readable by others.*chmod 600"):
        load_config(path, environ={})


def test_missing_token_names_both_ways(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hub.token_file: .*cannot read"):
        load_config(_write(tmp_path, MINIMAL, token=None), environ={})


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "device_id = "), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_every_key_has_exactly_one_default_and_the_runner_parts_use_it(tmp_path: Path) -> None:
    import inspect
    from dataclasses import MISSING

    from edge.config import REQUIRED, RunnerConfig, keys_of, sections
    from edge.drift import DriftMonitor
    from edge.http_api import DEFAULT_MAX_BODY_BYTES
    from edge.hub_client import HubClient
    from edge.releases import ClientLimits
    from edge.spool import RecentLabelled
    from edge.uploader import Uploader

    config = load_config(_write(tmp_path, MINIMAL), environ={})
    derived = {("hub", "token_file"), ("releases", "metadata_url"), ("releases", "targets_url")}
    required = []
    for section, cls in {"": RunnerConfig, **sections()}.items():
        for key, spec in keys_of(cls).items():
            assert callable(spec.metadata["read"]), key  # one reader per key, in the same place as its default
            if spec.default is REQUIRED:
                required.append(f"{section}.{key}".lstrip("."))
            elif (section, key) not in derived:  # a key left out of the file gets the field's default, no other
                assert getattr(getattr(config, section) if section else config, key) == spec.default, key
            assert spec.default_factory is MISSING  # type: ignore[misc]  # no second way to write a default
    assert sorted(required) == ["device_id", "hub.url", "releases.trusted_root", "state_dir"]

    def default(function: object, name: str) -> object:
        return inspect.signature(function).parameters[name].default  # type: ignore[arg-type]

    releases, upload = sections()["releases"], sections()["upload"]
    assert ClientLimits() == ClientLimits(releases.max_bundle_bytes, releases.download_deadline_s,
                                          releases.read_timeout_s) and ClientLimits().max_bundle_bytes == 256 << 20
    assert [default(Uploader, k) for k in ("batch_rows", "max_batch_bytes", "backoff_initial_s", "backoff_max_s")] \
        == [upload.batch_rows, upload.max_batch_bytes, upload.backoff_initial_s, upload.backoff_max_s]
    assert default(DriftMonitor, "window_rows") == sections()["drift"].window_rows
    assert default(RecentLabelled, "capacity") == sections()["feedback"].recent_labelled
    assert default(HubClient, "timeout_s") == sections()["hub"].timeout_s
    assert sections()["api"].max_body_bytes == DEFAULT_MAX_BODY_BYTES


def test_the_example_config_documents_every_key_once_with_its_default() -> None:
    import tomllib

    from edge.config import REQUIRED, keys_of, sections

    example = tomllib.loads((REPO / "docs" / "edge-runner.example.toml").read_text())
    text = (REPO / "docs" / "edge-runner.example.toml").read_text()
    set_by_the_operator = {"device_id", "state_dir", "hub.url", "hub.token_file", "releases.trusted_root",
                           "tls.ca_file", "tls.cert_file", "tls.key_file"}
    for section, cls in sections().items():
        for key, spec in keys_of(cls).items():
            name = f"{section}.{key}"
            lines = [line for line in text.splitlines() if line.lstrip("# ").startswith(f"{key} ")]
            assert lines, f"{name} is not in the example"
            if name in set_by_the_operator or key not in example.get(section, {}):
                continue
            value = example[section][key]
            expected = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            assert spec.default is not REQUIRED and value == expected, name


def test_upload_batches_stay_within_what_the_hub_accepts(tmp_path: Path) -> None:
    from edge.contracts.wire import UPLOAD_MAX_BYTES

    key = "EDGE_RUNNER__UPLOAD__MAX_BATCH_BYTES"
    fits = load_config(_write(tmp_path, MINIMAL), environ={key: str(UPLOAD_MAX_BYTES)})
    assert fits.upload.max_batch_bytes == UPLOAD_MAX_BYTES
    refused = rf"upload\.max_batch_bytes: expected an integer >= 1024 and <= {UPLOAD_MAX_BYTES}"
    with pytest.raises(ConfigError, match=refused):
        load_config(_write(tmp_path, MINIMAL), environ={key: str(UPLOAD_MAX_BYTES + 1)})
