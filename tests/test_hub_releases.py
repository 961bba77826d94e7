"""The hub serving the TUF release repository (real uvicorn, real HTTP, a real python-tuf client).

A repository is made with edgeloop.testkit.releases (init + publish a candidate), the hub's
``release.repository`` points at it through params.yaml in the hub's root. Covers caching headers,
strong ETags and 304s, no listing and no traversal, and a device updating through the hub with a
no-change poll costing only timestamp.json and the next root's 404.
"""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
import yaml

from edge.releases import fetch_release
from edgeloop.testkit.hub import running_hub
from edgeloop.testkit.project import override, repo_params_raw
from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
from flows.releases import publish
from flows.releases.maintenance import init_repository


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(hub, release config, trusted root bytes) with release 1 published on canary."""
    base = tmp_path_factory.mktemp("hubrel")
    config = release_config(base / "project")
    root_bytes = init_repository(config).read_bytes()
    publish(config, make_candidate(base / "cand", tiny_onnx(1), "cand-000000000001"), "canary")
    hub_root = base / "hub"
    hub_root.mkdir()
    raw = override(repo_params_raw(), {"release.repository": str(config.repository)})
    (hub_root / "params.yaml").write_text(yaml.safe_dump(raw))
    with running_hub(hub_root) as hub:
        assert hub.settings.releases == config.repository
        yield hub, config, root_bytes


def test_a_tuf_client_updates_through_the_hub_and_a_no_change_poll_is_cheap(served, tmp_path) -> None:
    hub, _config, root_bytes = served
    metadata, staging = tmp_path / "metadata", tmp_path / "staging"
    meta_url, targets_url = f"{hub.url}/releases/metadata/", f"{hub.url}/releases/targets/"
    got = fetch_release(metadata, meta_url, targets_url, "canary", staging, root_bytes=root_bytes)
    assert (got.version, got.changed) == (1, True)
    assert got.model_path.read_bytes() == tiny_onnx(1)
    before = _metadata_requests(hub)
    again = fetch_release(metadata, meta_url, targets_url, "canary", staging, current_version=1)
    assert (again.version, again.changed, again.folder) == (1, False, None)
    assert again.requests == 2  # the next root version (404) and timestamp.json, nothing else
    after = _metadata_requests(hub)
    assert after.get("200", 0) - before.get("200", 0) == 1  # timestamp.json
    assert after.get("404", 0) - before.get("404", 0) == 1  # 2.root.json does not exist yet
    assert again.bytes_downloaded == len((hub.settings.releases / "metadata" / "timestamp.json").read_bytes())


def _metadata_requests(hub) -> dict[str, float]:
    text = httpx.get(f"{hub.url}/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith('edgeloop_hub_requests_total{method="GET",route="/releases/metadata/{path:path}"'):
            status = line.split('status="')[1].split('"')[0]
            found[status] = float(line.rsplit(" ", 1)[1])
    return found


def test_cache_control_by_kind_of_file(served) -> None:
    hub, config, _ = served
    versioned = sorted(p.name for p in config.metadata_dir.glob("[0-9]*.json"))
    assert versioned, "no consistent-snapshot metadata"
    for name in versioned:
        response = httpx.get(f"{hub.url}/releases/metadata/{name}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.content == (config.metadata_dir / name).read_bytes()
    for name in ("timestamp.json", "root.json"):
        response = httpx.get(f"{hub.url}/releases/metadata/{name}")
        assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"
        assert response.headers["content-type"].startswith("application/json")
    model = next((config.targets_dir / "bundles" / "1").glob("*.model.onnx"))
    response = httpx.get(f"{hub.url}/releases/targets/bundles/1/{model.name}")
    assert response.status_code == 200 and response.content == tiny_onnx(1)
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"] == f'"{hashlib.sha256(tiny_onnx(1)).hexdigest()}"'


def test_strong_etag_and_if_none_match(served) -> None:
    hub, _, _ = served
    url = f"{hub.url}/releases/metadata/timestamp.json"
    first = httpx.get(url)
    etag = first.headers["etag"]
    assert etag == f'"{hashlib.sha256(first.content).hexdigest()}"' and not etag.startswith("W/")
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        not_modified = httpx.get(url, headers={"If-None-Match": header})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert not_modified.headers["etag"] == etag and not_modified.headers["cache-control"] == "no-cache"
    assert httpx.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_a_changed_file_gets_a_new_etag(served) -> None:
    hub, config, _ = served
    extra = config.metadata_dir / "scratch-test.json"
    try:
        extra.write_bytes(b'{"a": 1}')
        first = httpx.get(f"{hub.url}/releases/metadata/scratch-test.json")
        extra.write_bytes(b'{"a": 22}')  # different size: a new cache key even within one mtime tick
        url = f"{hub.url}/releases/metadata/scratch-test.json"
        second = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert second.status_code == 200 and second.content == b'{"a": 22}'
        assert second.headers["etag"] != first.headers["etag"]
    finally:
        extra.unlink()


@pytest.mark.parametrize("path", [
    "/releases/metadata/",
    "/releases/targets/",
    "/releases/targets/bundles",
    "/releases/targets/bundles/",
    "/releases/metadata/../history.jsonl",
    "/releases/metadata/%2e%2e/history.jsonl",
    "/releases/metadata/..%2fhistory.jsonl",
    "/releases/targets/..%2f..%2fkeys/online",
    "/releases/metadata/%2fetc%2fpasswd",
    "/releases/metadata//etc/passwd",
    "/releases/metadata/.lock",
    "/releases/metadata/nope.json",
    "/releases/metadata/2.root.json",
    "/releases/targets/bundles/1/..%5c..%5cx",
    "/releases/metadata/timestamp.json%00",
])
def test_no_listing_no_traversal(served, path) -> None:
    hub, _, _ = served
    with httpx.Client() as client:
        request = client.build_request("GET", hub.url)
        request.url = request.url.copy_with(raw_path=path.encode())  # sent exactly as written
        response = client.send(request)
    assert response.status_code == 404, (path, response.text)


def test_a_symlink_out_of_the_repository_is_not_followed(served, tmp_path) -> None:
    hub, config, _ = served
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    link = config.metadata_dir / "leak.json"
    os.symlink(secret, link)
    try:
        assert httpx.get(f"{hub.url}/releases/metadata/leak.json").status_code == 404
    finally:
        link.unlink()
