"""The cloud's one hub client (``flows.hub_client``) against a real hub (uvicorn on 127.0.0.1): its URL rule
(argument > $EDGELOOP_HUB_URL > params.yaml's hub address) and token rule (argument > $EDGELOOP_HUB_TOKEN_FILE
> hub.admin_token_file), as a library and through ``edgeloop fleet`` run as a real process (one line, exit 2
for a missing token file or a wrong token, with the hint); and the demo's client, which the environment
cannot redirect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.contracts.errors import UserError
from edgeloop.demo.run import demo_hub_client
from edgeloop.testkit.hub import HubHandle, free_port, running_hub
from edgeloop.testkit.project import override, repo_params_raw
from flows.hub_client import HUB_TOKEN_FILE_ENV, HUB_URL_ENV, HubAdminClient, HubUnreachable
from flows.params import load_params
from hub.registry import add_device

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


@pytest.fixture
def hub(tmp_path: Path) -> HubHandle:
    """A real hub at the address params.yaml names, with one device registered."""
    port = free_port()
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(override(repo_params_raw(), {"hub.port": port}), sort_keys=False))
    with running_hub(root, port) as handle:
        add_device(handle.app.state.sessions, "press-1", "stable")
        yield handle


def client(root: Path, environ: dict[str, str], **arguments: object) -> HubAdminClient:
    return HubAdminClient.for_project(root, load_params(root / "params.yaml").hub, environ=environ, **arguments)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def wrong_token(folder: Path) -> Path:
    path = folder / "wrong.token"
    path.write_text("not-the-admin-token\n")
    return path


def test_url_rule_argument_then_environment_then_params(hub: HubHandle, tmp_path: Path) -> None:
    root = hub.root
    assert client(root, {}).url == hub.url  # params.yaml's hub address, as seen from this machine
    assert [d["device_id"] for d in client(root, {}).fleet()["devices"]] == ["press-1"]
    assert client(root, {HUB_URL_ENV: hub.url + "/"}).url == hub.url  # trailing slash dropped
    moved = override(repo_params_raw(), {"hub.port": free_port()})  # params now name a port nobody listens on
    (root / "params.yaml").write_text(yaml.safe_dump(moved, sort_keys=False))
    with pytest.raises(HubUnreachable, match="unreachable"):
        client(root, {}).fleet()
    assert client(root, {HUB_URL_ENV: hub.url}).fleet()["devices"]  # the environment beats params
    dead = dead_url()
    with pytest.raises(HubUnreachable, match="unreachable"):
        client(root, {HUB_URL_ENV: dead}).fleet()
    assert client(root, {HUB_URL_ENV: dead}, url=hub.url).fleet()["devices"]  # the argument beats the environment


def test_token_rule_argument_then_environment_then_params(hub: HubHandle, tmp_path: Path) -> None:
    root, admin = hub.root, hub.settings.admin_token_file
    assert client(root, {}).token_file == admin  # hub.admin_token_file resolved against the project root
    wrong = wrong_token(tmp_path)
    env = {HUB_TOKEN_FILE_ENV: str(wrong)}
    with pytest.raises(HubUnreachable) as refused:
        client(root, env).fleet()  # the environment beats params: its (wrong) token is sent
    message = str(refused.value)
    assert "HTTP 401" in message and "wrong admin token?" in message and "\n" not in message
    assert client(root, env, token_file=admin).fleet()["devices"]  # the argument beats the environment
    assert client(root, env, token=hub.admin_token).fleet()["devices"]
    missing = tmp_path / "nowhere" / "admin.token"
    with pytest.raises(UserError) as absent:
        client(root, {HUB_TOKEN_FILE_ENV: str(missing)}).fleet()
    assert str(missing) in str(absent.value) and "\n" not in str(absent.value)
    assert HUB_TOKEN_FILE_ENV in str(absent.value)  # says how to point elsewhere


def edgeloop_fleet(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (HUB_URL_ENV, HUB_TOKEN_FILE_ENV)}
    return subprocess.run([EDGELOOP, "fleet", "--json", "--root", str(root), *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    return lines[0]


def test_edgeloop_fleet_follows_the_same_rules(hub: HubHandle, tmp_path: Path) -> None:
    root = hub.root
    moved = override(repo_params_raw(), {"hub.port": free_port()})
    (root / "params.yaml").write_text(yaml.safe_dump(moved, sort_keys=False))
    through_env = edgeloop_fleet(root, {HUB_URL_ENV: hub.url})
    assert through_env.returncode == 0, through_env.stderr
    assert [d["device_id"] for d in json.loads(through_env.stdout)["devices"]] == ["press-1"]
    through_flag = edgeloop_fleet(root, {HUB_URL_ENV: dead_url()}, "--url", hub.url)
    assert through_flag.returncode == 0, through_flag.stderr

    missing = tmp_path / "gone.token"
    line = one_line_error(edgeloop_fleet(root, {HUB_URL_ENV: hub.url, HUB_TOKEN_FILE_ENV: str(missing)}))
    assert f"no admin token at {missing}" in line
    line = one_line_error(edgeloop_fleet(root, {HUB_URL_ENV: hub.url}, "--token-file", str(wrong_token(tmp_path))))
    assert "HTTP 401" in line and "wrong admin token?" in line


def test_the_demo_client_is_not_redirected_by_the_environment(hub: HubHandle, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(HUB_URL_ENV, dead_url())  # set for some real hub: must not lead the demo astray
    monkeypatch.setenv(HUB_TOKEN_FILE_ENV, str(wrong_token(tmp_path)))
    with pytest.raises(HubUnreachable):
        HubAdminClient.for_project(hub.root, load_params(hub.root / "params.yaml").hub).fleet()
    demo = demo_hub_client(hub.root, hub)
    assert (demo.url, demo.token_file) == (hub.url, hub.settings.admin_token_file)
    assert [d["device_id"] for d in demo.fleet()["devices"]] == ["press-1"]
