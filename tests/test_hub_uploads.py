"""Ground-truth uploads through a real hub (uvicorn on 127.0.0.1, httpx) and the devices CLI.

One hub serves the whole module (small ``hub.max_upload_bytes`` so oversize bodies are cheap; a manual
clock, so ``stored_at`` is known). Every
test that stores a batch records it in ``GOOD``; the last test checks that the landing zone holds exactly
those batches, once each, and nothing else was written anywhere under the project.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edgeloop.devices_cli import devices_app
from edgeloop.testkit.hub import HubHandle, ManualClock, running_hub
from edgeloop.testkit.project import repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from flows.params import load_params
from hub.registry import add_device
from hub.tokens import parse as parse_token
from simulator.batches import encode_batch

MAX_BYTES = 64 * 1024
PARQUET = "application/vnd.apache.parquet"
GOOD: set[tuple[str, str]] = set()  # (device_id, batch_id) stored by the tests


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHandle]:
    root = tmp_path_factory.mktemp("hub")
    raw = repo_params_raw()
    raw["hub"]["max_upload_bytes"] = MAX_BYTES
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    GOOD.clear()
    with running_hub(root, clock=ManualClock(datetime(2026, 3, 1, 12, tzinfo=UTC))) as handle:
        yield handle


@pytest.fixture(scope="module")
def tokens(hub: HubHandle) -> dict[str, str]:
    return {name: add_device(hub.app.state.sessions, name, "canary") for name in ("press-1", "press-2")}


def schema() -> Any:
    return load_params(Path(__file__).resolve().parents[1] / "params.yaml").schema


def frame(device: str, rows: int = 50, seed: int = 0) -> pd.DataFrame:
    return make_rows(schema(), device, rows, seed)


def upload(hub: HubHandle, device: str, body: bytes, token: str | None, key: str | None = None,
           content_type: str = PARQUET, **extra: Any) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers["Idempotency-Key"] = hashlib.sha256(body).hexdigest() if key is None else key
    return httpx.post(f"{hub.url}/v1/devices/{device}/uploads", content=body, headers=headers, timeout=30, **extra)


def landed(hub: HubHandle) -> set[tuple[str, str]]:
    return {(p.parent.name, p.stem) for p in hub.settings.landing.rglob("*") if p.is_file()}


def count(hub: HubHandle, outcome: str, reason: str = "") -> float:
    value = hub.app.state.metrics.registry.get_sample_value(
        "edgeloop_hub_uploads_total", {"outcome": outcome, "reason": reason}
    )
    return value or 0.0


def test_upload_stores_the_batch_then_deduplicates(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = encode_batch(frame("press-1"))
    key = hashlib.sha256(body).hexdigest()
    first = upload(hub, "press-1", body, tokens["press-1"])
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["device_id"] == "press-1" and result["batch_id"] == key
    assert result["bytes"] == len(body) and result["rows"] == 50 and result["deduplicated"] is False
    assert result["location"] == f"uploads/press-1/{key}.parquet"
    assert result["stored_at"] == hub.clock.now().isoformat()  # the hub's clock, not the machine's
    path = hub.root / "data" / "uploads" / "press-1" / f"{key}.parquet"
    assert path.read_bytes() == body
    GOOD.add(("press-1", key))

    hub.clock.advance(60)
    again = upload(hub, "press-1", body, tokens["press-1"])
    assert again.status_code == 200
    assert again.json() == {**result, "deduplicated": True}
    assert landed(hub) == GOOD
    assert count(hub, "deduplicated") >= 1 and count(hub, "stored") >= 1


def test_racing_identical_uploads_store_once(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = encode_batch(frame("press-2", seed=3))
    barrier = threading.Barrier(10)
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []

    def send() -> None:
        barrier.wait()
        response = upload(hub, "press-2", body, tokens["press-2"])
        statuses.append(response.status_code)
        bodies.append(response.json())

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 9 + [201], statuses
    assert len({(b["stored_at"], b["location"], b["bytes"]) for b in bodies}) == 1
    GOOD.add(("press-2", hashlib.sha256(body).hexdigest()))
    assert landed(hub) == GOOD
    from sqlalchemy import func, select

    from hub.db import Upload

    with hub.app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload).where(Upload.device_id == "press-2")) == 1


def test_key_must_match_the_body(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = encode_batch(frame("press-1", seed=5))
    wrong = hashlib.sha256(b"something else").hexdigest()
    response = upload(hub, "press-1", body, tokens["press-1"], key=wrong)
    assert response.status_code == 422 and response.json()["reason"] == "key_mismatch"
    for bad in ("", "abc", hashlib.sha256(body).hexdigest().upper(), "../../../../etc/passwd", "0" * 65):
        response = upload(hub, "press-1", body, tokens["press-1"], key=bad)
        assert response.status_code == 422 and response.json()["reason"] == "bad_key", bad


def test_oversize_body_is_refused(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = b"\0" * (MAX_BYTES + 1)
    response = upload(hub, "press-1", body, tokens["press-1"])
    assert response.status_code == 413 and response.json()["reason"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(8):
            yield b"\0" * (MAX_BYTES // 4)

    headers = {"Authorization": f"Bearer {tokens['press-1']}", "Content-Type": PARQUET,
               "Idempotency-Key": hashlib.sha256(b"\0" * (2 * MAX_BYTES)).hexdigest()}
    streamed = httpx.post(f"{hub.url}/v1/devices/press-1/uploads", content=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413
    assert count(hub, "rejected", "too_large") == 2


def test_wrong_content_type_is_refused(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = encode_batch(frame("press-1", seed=6))
    for content_type in ("text/plain", "application/json", ""):
        response = upload(hub, "press-1", body, tokens["press-1"], content_type=content_type)
        assert response.status_code == 415, content_type
    as_csv = upload(hub, "press-1", body, tokens["press-1"], content_type="text/csv")  # Parquet bytes, CSV label
    assert as_csv.status_code == 422 and as_csv.json()["reason"] == "unreadable", as_csv.text
    ok = upload(hub, "press-1", body, tokens["press-1"], content_type="application/octet-stream")
    assert ok.status_code == 201
    GOOD.add(("press-1", hashlib.sha256(body).hexdigest()))


def test_corrupt_and_empty_bodies_are_refused(hub: HubHandle, tokens: dict[str, str]) -> None:
    good = encode_batch(frame("press-1", seed=7))
    for corrupt in (b"PAR1 not really parquet PAR1", good[: len(good) // 2], b"\x00" * 100):
        response = upload(hub, "press-1", corrupt, tokens["press-1"])
        assert response.status_code == 422 and response.json()["reason"] == "unreadable", response.text
        assert "Parquet" in response.json()["detail"]
    empty = upload(hub, "press-1", b"", tokens["press-1"])
    assert empty.status_code == 422 and empty.json()["reason"] == "empty"
    no_rows = encode_batch(frame("press-1").iloc[:0])
    response = upload(hub, "press-1", no_rows, tokens["press-1"])
    assert response.status_code == 422 and response.json()["reason"] == "no_rows"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda f: f.drop(columns=["torque_nm"]), "torque_nm"),
        (lambda f: f.drop(columns=["event_time", "failure"]), "failure"),
        (lambda f: f.assign(speed_rpm=f["speed_rpm"].astype(str)), "speed_rpm"),
        (lambda f: f.assign(failure=f["failure"].map({0: "no", 1: "yes"})), "failure"),
        (lambda f: f.assign(event_time=True), "event_time"),
    ],
)
def test_wrong_schema_is_refused_naming_the_column(hub: HubHandle, tokens: dict[str, str], change: Any,
                                                   named: str) -> None:
    body = encode_batch(change(frame("press-1", seed=8)))
    response = upload(hub, "press-1", body, tokens["press-1"])
    assert response.status_code == 422 and response.json()["reason"] == "schema"
    assert named in response.json()["detail"]


def test_hostile_device_ids_and_tokens(hub: HubHandle, tokens: dict[str, str]) -> None:
    body = encode_batch(frame("press-1", seed=9))
    for device in ("..%2F..%2Fescape", "a/../b", "..", "%2E%2E", "a" * 300, "a%00b", "-x"):
        response = upload(hub, device, body, tokens["press-1"])
        assert 400 <= response.status_code < 500, (device, response.status_code)
    other = upload(hub, "press-2", body, tokens["press-1"])
    assert other.status_code == 403
    missing = upload(hub, "press-1", body, None)
    assert missing.status_code == 401
    forged = "elt_" + "0" * 16 + "_" + "A" * 43
    real_id_wrong_secret = tokens["press-1"][:21] + "B" * 43
    for token in (forged, real_id_wrong_secret, "garbage"):
        wrong = upload(hub, "press-1", body, token)
        assert wrong.status_code == 401 and wrong.json() == missing.json()


def test_devices_cli_add_list_revoke(hub: HubHandle) -> None:
    runner = CliRunner()
    root = str(hub.root)
    added = runner.invoke(devices_app, ["add", "mill-9", "--channel", "stable", "--root", root])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("elt_") and added.output.count(token) == 1
    again = runner.invoke(devices_app, ["add", "mill-9", "--root", root])
    assert again.exit_code != 0
    bad_channel = runner.invoke(devices_app, ["add", "mill-10", "--channel", "beta", "--root", root])
    assert bad_channel.exit_code != 0
    database = hub.root / "data" / "hub"
    parsed = parse_token(token)
    assert parsed is not None
    secret = parsed[1]
    for file in database.iterdir():
        assert secret.encode() not in file.read_bytes(), file

    body = encode_batch(frame("mill-9", seed=10))
    assert upload(hub, "mill-9", body, token).status_code == 201
    GOOD.add(("mill-9", hashlib.sha256(body).hexdigest()))

    listed = runner.invoke(devices_app, ["list", "--root", root])
    assert listed.exit_code == 0 and "mill-9" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout and "elt_" not in listed.stdout

    revoked = runner.invoke(devices_app, ["revoke", "mill-9", "--root", root])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert upload(hub, "mill-9", encode_batch(frame("mill-9", seed=11)), token).status_code == 401
    listed = runner.invoke(devices_app, ["list", "--root", root])
    assert "revoked" in listed.stdout
    unknown = runner.invoke(devices_app, ["revoke", "nobody", "--root", root])
    assert unknown.exit_code != 0


def test_openapi_documents_the_upload(hub: HubHandle) -> None:
    spec = httpx.get(f"{hub.url}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/v1/devices/{device_id}/uploads"]["post"]
    assert set(operation["requestBody"]["content"]) == {PARQUET, "application/octet-stream", "text/csv"}
    assert {"200", "201", "401", "403", "413", "415", "422"} <= set(operation["responses"])
    assert "409" in operation["description"]  # the dedup choice is documented


def test_landing_zone_holds_exactly_the_good_batches(hub: HubHandle) -> None:
    assert landed(hub) == GOOD
    for device, key in GOOD:
        assert hashlib.sha256((hub.settings.landing / device / f"{key}.parquet").read_bytes()).hexdigest() == key
    expected_dirs = {"uploads", "hub"}
    assert {p.name for p in (hub.root / "data").iterdir()} <= expected_dirs
    stray = [p for p in hub.root.rglob("*") if p.is_file() and not p.is_relative_to(hub.settings.landing)
             and p.parent.name not in {"hub", "keys"} and p.name != "params.yaml"]
    assert stray == []
    with hub.app.state.sessions() as session:
        from sqlalchemy import select

        from hub.db import Upload

        assert {(u.device_id, u.batch_id) for u in session.scalars(select(Upload))} == GOOD


def test_gzip_encoded_csv_is_stored_decoded_and_bounded(hub: HubHandle, tokens: dict[str, str]) -> None:
    import gzip
    import io as _io

    buffer = _io.StringIO()
    frame("press-2", rows=40, seed=9).to_csv(buffer, index=False)
    body = buffer.getvalue().encode()
    key = hashlib.sha256(body).hexdigest()  # the key names the batch file, not the wire bytes
    wire = gzip.compress(body, mtime=0)
    response = upload(hub, "press-2", wire, tokens["press-2"], key=key, content_type="text/csv")
    assert response.status_code == 422  # without Content-Encoding the gzip bytes are not a CSV
    headers = {"Content-Type": "text/csv", "Authorization": f"Bearer {tokens['press-2']}", "Idempotency-Key": key,
               "Content-Encoding": "gzip"}
    stored = httpx.post(f"{hub.url}/v1/devices/press-2/uploads", content=wire, headers=headers, timeout=30)
    assert stored.status_code == 201, stored.text
    assert (hub.settings.landing / "press-2" / f"{key}.csv").read_bytes() == body
    bomb = gzip.compress(b"a" * (MAX_BYTES + 10), mtime=0)
    too_big = httpx.post(f"{hub.url}/v1/devices/press-2/uploads", content=bomb, timeout=30,
                         headers=headers | {"Idempotency-Key": "a" * 64})
    assert too_big.status_code == 413 and len(bomb) < MAX_BYTES  # refused on the decoded size
    garbage = httpx.post(f"{hub.url}/v1/devices/press-2/uploads", content=b"\x1f\x8bnot gzip", timeout=30,
                         headers=headers | {"Idempotency-Key": "b" * 64})
    assert garbage.status_code == 422 and "gzip" in garbage.text
    brotli = httpx.post(f"{hub.url}/v1/devices/press-2/uploads", content=body, timeout=30,
                        headers=headers | {"Content-Encoding": "br"})
    assert brotli.status_code == 415 and "Content-Encoding" in brotli.text
