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
    assert config.hub.token.reveal() == "elt_press-07_secretsecret"


def test_token_never_shows_in_repr(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert "secretsecret" not in repr(config)
    assert "secretsecret" not in str(config.hub)


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "edge-runner.example.toml").read_text()
    text = text.replace("/etc/edge-runner/token", str(tmp_path / "token"))
    text = text.replace("/etc/edge-runner/root.json", str(tmp_path / "root.json"))
    config = load_config(_write(tmp_path, text), environ={})
    assert config.device_id == "press-07"
    assert config.upload.random_rate == 0.02


def test_environment_overrides_win(tmp_path: Path) -> None:
    env = {
        "EDGE_RUNNER__HUB__URL": "http://10.0.0.5:9000",
        "EDGE_RUNNER__UPLOAD__RANDOM_RATE": "0.5",
        "EDGE_RUNNER__UPLOAD__LOCAL_ONLY": '["operator", "lot"]',
        "EDGE_RUNNER__DEVICE_ID": "mill-2",
        "EDGE_RUNNER_TOKEN": "elt_mill-2_fromenv",
    }
    config = load_config(_write(tmp_path, MINIMAL, token=None), environ=env)
    assert config.hub.url == "http://10.0.0.5:9000"
    assert config.upload.random_rate == 0.5
    assert config.upload.local_only == ("operator", "lot")
    assert config.device_id == "mill-2"
    assert config.hub.token.reveal() == "elt_mill-2_fromenv"


@pytest.mark.parametrize(("edit", "env", "message"), [
    (("device_id = \"press-07\"", "device_id = \"../etc\""), {}, "device_id:"),
    (("[releases]", "[releases]\nchannl = \"x\""), {}, "releases.channl: unknown key"),
    (("[releases]", "[releases]\nchannel = \"Bad Name\""), {}, "releases.channel:"),
    (("", ""), {"EDGE_RUNNER__UPLOAD__RANDOM_RATE": "1.5"}, "upload.random_rate:"),
    (("", ""), {"EDGE_RUNNER__UPLOAD__MODE": "everything"}, "upload.mode:"),
    (("", ""), {"EDGE_RUNNER__API__PORT": "70000"}, "api.port:"),
    (("url = \"http://127.0.0.1:8700/\"", "url = \"ftp://x\""), {}, "hub.url:"),
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
