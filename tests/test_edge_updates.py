"""Model updates on the device, end to end with the real parts: a python-tuf repository published with
flows.releases and served on 127.0.0.1, the ngclient fetch, real scikit-learn -> ONNX models run by
onnxruntime. Covers first activation, a new release, a worse candidate refused by the on-device shadow
comparison (and not downloaded again), tampered / wrong-key / expired repositories, rollback, schema and
runner-version refusals, recovery of a damaged state directory, pruning, the runner lock, and the
shadow metrics against scikit-learn."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from securesystemslib.signer import CryptoSigner

from edge.contracts.manifest import EdgePolicy, Manifest, ReferenceStats
from edge.contracts.schema import FeatureSpec
from edge.health import HealthMonitor
from edge.inference import Predictor
from edge.pending import PendingPredictions
from edge.releases import ClientLimits
from edge.serving import InferenceSlot
from edge.shadow import compare, metric_score, schema_compatible
from edge.state import StateDir, StateError, StateLocked
from edge.updates import ReleaseUpdater, UpdateOutcome, load_current, runner_too_old
from edgeloop.testkit.releases import forge, make_candidate, make_manifest, release_config, tamper_server, tiny_onnx
from flows.releases import init_repository, publish

SHADOW_ROWS = 300


@functools.lru_cache(maxsize=8)
def _model(seed: int, flip: bool = False) -> bytes:
    """Logistic regression on (x0, x1) -> x0 + 0.5 x1 > 0; ``flip`` learns the opposite (a worse model)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    if flip:
        y = 1 - y
    return to_onnx(LogisticRegression().fit(x, y), x[:1], options={"zipmap": False}, target_opset=17
                   ).SerializeToString()


def _labelled(rows: int = SHADOW_ROWS, seed: int = 99) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int).tolist()


def _candidate(folder: Path, seed: int, flip: bool = False, **changes: Any) -> Path:
    model = _model(seed, flip)
    make_candidate(folder, model, f"cand-{seed:012d}")
    manifest = replace(make_manifest(model, f"cand-{seed:012d}"), **changes)
    (folder / "manifest.json").write_text(manifest.to_json())
    return folder


class Device:
    """A state dir, an updater polling ``server``, and the inference slot it hot-swaps."""

    def __init__(self, path: Path, url: str, root: bytes, rows: int = SHADOW_ROWS) -> None:
        self.state = StateDir(path)
        self.state.recover()
        self.slot = InferenceSlot(PendingPredictions(1000), HealthMonitor())
        self.activated: list[str] = []
        self.rows = rows
        self.updater = ReleaseUpdater(
            self.state, f"{url}/metadata/", f"{url}/targets/", "canary", root, ClientLimits(),
            lambda: _labelled(self.rows), self._on_activate,
        )

    def _on_activate(self, predictor: Predictor) -> None:
        self.activated.append(predictor.version)
        self.slot.serve(predictor)

    def poll(self) -> UpdateOutcome:
        return self.updater.poll_once()

    def serves(self) -> str:
        prediction = self.slot.predict_one([1.0, 0.5])
        assert prediction.label == 1  # x0 + 0.5 x1 > 0: every good model here agrees
        return prediction.model_version


class World:
    """A release repository served on 127.0.0.1 and a device following its canary channel."""

    def __init__(self, tmp: Path, **expiry: float) -> None:
        self.tmp = tmp
        self.config = release_config(tmp, **expiry)
        self.root = init_repository(self.config).read_bytes()
        self.server: Any = None

    def publish(self, seed: int, flip: bool = False, **changes: Any) -> int:
        folder = _candidate(self.tmp / f"cand-{seed}-{flip}", seed, flip, **changes)
        return publish(self.config, folder, "canary").version

    def device(self, name: str = "device", rows: int = SHADOW_ROWS) -> Device:
        return Device(self.tmp / name, self.server.url, self.root, rows)

    def bundle_requests(self, version: int) -> list[str]:
        return [p for p in self.server.requests if f"/bundles/{version}/" in p]


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    with tamper_server(w.config.repository) as w.server:
        yield w


def _link(state: StateDir, name: str) -> str | None:
    path = state.path / name
    return os.readlink(path) if os.path.islink(path) else None


# --- end to end -------------------------------------------------------------------------------------

def test_fresh_device_pulls_canary_activates_and_predicts(world: World) -> None:
    _model(1)  # train and convert before the clock starts: the cloud pipeline's part, not the release's
    started = time.perf_counter()
    assert world.publish(1) == 1
    device = world.device()
    outcome = device.poll()
    publish_to_active = time.perf_counter() - started
    print(f"publish -> activation: {publish_to_active * 1000:.0f} ms (poll {outcome.seconds * 1000:.0f} ms)")
    assert (outcome.kind, outcome.version) == ("activated", 1), outcome
    assert device.activated == ["1"] and device.serves() == "1"
    assert outcome.shadow is not None and outcome.shadow.current_score is None  # nothing to compare with
    assert _link(device.state, "current") == "releases/1" and _link(device.state, "previous") is None
    activation = device.state.activation()
    assert activation is not None and (activation.version, activation.previous) == ("1", None)
    assert list(device.state.staging_dir.iterdir()) == []
    again = device.poll()
    assert (again.kind, again.version) == ("unchanged", 1) and device.activated == ["1"]
    assert len(world.bundle_requests(1)) == 2  # manifest and model, downloaded once
    # a restarted runner loads the active release from disk alone
    restarted = load_current(StateDir(device.state.path))
    assert restarted is not None and restarted.version == "1"


def test_new_release_is_validated_activated_and_links_swap(world: World) -> None:
    world.publish(1)
    device = world.device()
    assert device.poll().kind == "activated"
    world.publish(2)
    outcome = device.poll()
    assert (outcome.kind, outcome.version) == ("activated", 2), outcome
    assert outcome.shadow is not None and outcome.shadow.passed and outcome.shadow.rows == SHADOW_ROWS
    assert outcome.shadow.metric == "f1_macro" and outcome.shadow.current_score is not None
    assert device.activated == ["1", "2"] and device.serves() == "2"
    assert _link(device.state, "current") == "releases/2" and _link(device.state, "previous") == "releases/1"
    assert device.state.installed() == ["1", "2"]
    assert device.poll().kind == "unchanged" and device.activated == ["1", "2"]


def test_worse_candidate_is_refused_on_device_and_not_downloaded_again(world: World) -> None:
    world.publish(1)
    device = world.device()
    device.poll()
    world.publish(2, flip=True)  # passed the (pretend) cloud gate, but is wrong on this device's data
    outcome = device.poll()
    assert (outcome.kind, outcome.version) == ("rejected", 2), outcome
    assert outcome.detail.startswith("shadow: f1_macro") and "worse than" in outcome.detail
    assert device.activated == ["1"] and device.serves() == "1"
    assert device.state.current_version() == "1" and device.state.installed() == ["1"]
    assert "2" in device.state.blocked_versions()
    assert any(e["event"] == "blocked" and e["version"] == "2" for e in device.state.events())
    assert list(device.state.staging_dir.iterdir()) == []
    quarantined = [p for p in device.state.quarantine_dir.iterdir() if (p / "model.onnx").is_file()]
    assert len(quarantined) == 1  # the refused bundle is kept for inspection, not deleted
    downloads = len(world.bundle_requests(2))
    again = device.poll()
    assert (again.kind, again.version) == ("blocked", 2) and len(world.bundle_requests(2)) == downloads
    world.publish(3)
    newer = device.poll()
    assert (newer.kind, newer.version) == ("activated", 3), newer
    assert device.serves() == "3" and device.state.previous_version() == "1"


def test_tampered_and_wrong_key_releases_are_refused_and_the_model_keeps_serving(world: World) -> None:
    from flows.releases.repository import LocalRepository

    world.publish(1)
    device = world.device()
    device.poll()
    world.publish(2)
    sha = LocalRepository(world.config).targets().targets["bundles/2/model.onnx"].hashes["sha256"]
    stored = f"/targets/bundles/2/{sha}.model.onnx"
    world.server.rules[stored] = lambda body: body[:100] + bytes([body[100] ^ 1]) + body[101:]
    outcome = device.poll()
    assert (outcome.kind, outcome.version) == ("rejected", None) and "LengthOrHashMismatch" in outcome.detail
    assert device.serves() == "1" and device.state.current_version() == "1"
    assert device.state.blocked_versions() == {}  # the bytes were bad, not the release
    assert any(e["event"] == "release_rejected" for e in device.state.events())
    del world.server.rules[stored]
    assert device.poll().kind == "activated" and device.serves() == "2"
    # a newer targets role signed by a key the root does not trust
    forged = world.tmp / "forged"
    shutil.copytree(world.config.repository, forged)
    forge(world.config, forged, lambda targets: targets.targets.pop("bundles/1/model.onnx"),
          targets_signer=CryptoSigner.generate_ed25519())
    with tamper_server(forged) as attacker:
        device.updater.metadata_url = f"{attacker.url}/metadata/"
        device.updater.targets_url = f"{attacker.url}/targets/"
        outcome = device.poll()
    assert outcome.kind == "rejected" and "UnsignedMetadata" in outcome.detail, outcome
    assert device.serves() == "2" and device.state.current_version() == "2"


def test_expired_metadata_is_refused_but_never_stops_the_active_model(world: World) -> None:
    from flows.releases import Expiry, refresh

    world.publish(1)
    device = world.device()
    assert device.poll().kind == "activated"
    # the repository's next timestamp is signed already expired (a day ago), as a stale mirror would serve it
    refresh(replace(world.config, expiry_days=Expiry(timestamp=-1.0)))
    expires = json.loads((world.config.metadata_dir / "timestamp.json").read_text())["signed"]["expires"]
    outcome = device.poll()
    assert outcome.kind == "rejected" and "Expired" in outcome.detail, (outcome, expires)
    assert device.serves() == "1"
    offline = StateDir(device.state.path)  # a runner restarted with no network and stale metadata
    offline.recover()
    predictor = load_current(offline)
    assert predictor is not None and predictor.version == "1" and predictor.predict([1.0, 0.5]).label == 1


def test_rollback_serves_previous_and_blocks_the_bad_version(world: World) -> None:
    world.publish(1)
    device = world.device()
    device.poll()
    world.publish(2)
    device.poll()
    assert device.updater.rollback("accuracy 0.41 below floor 0.8") == "1"
    assert device.activated == ["1", "2", "1"] and device.serves() == "1"
    assert _link(device.state, "current") == "releases/1" and _link(device.state, "previous") is None
    assert device.state.blocked_versions() == {"2": "rolled back: accuracy 0.41 below floor 0.8"}
    assert any(e["event"] == "rolled_back" and e["version"] == "2" for e in device.state.events())
    downloads = len(world.bundle_requests(2))
    outcome = device.poll()  # the channel still points at 2
    assert (outcome.kind, outcome.version) == ("blocked", 2) and device.serves() == "1"
    assert len(world.bundle_requests(2)) == downloads
    with pytest.raises(StateError, match="no previous release"):
        device.updater.rollback("again")
    world.publish(3)
    assert device.poll().kind == "activated" and device.serves() == "3"
    assert device.state.previous_version() == "1"


def test_a_rollback_ordered_through_the_channel_is_followed_without_shadow_comparison(world: World) -> None:
    from flows.releases import rollback

    world.publish(1)
    device = world.device()
    device.poll()
    world.publish(2)
    device.poll()
    assert rollback(world.config, "canary").to_version == 1
    outcome = device.poll()
    assert (outcome.kind, outcome.version, outcome.shadow) == ("activated", 1, None), outcome
    assert outcome.detail == "rollback ordered by the channel"
    assert device.serves() == "1" and (device.state.current_version(), device.state.previous_version()) == ("1", "2")
    assert device.state.blocked_versions() == {}


def test_incompatible_candidates_are_refused(world: World) -> None:
    world.publish(1)
    device = world.device()
    device.poll()
    renamed = (FeatureSpec("x0", "float", -5.0, 5.0, "", True), FeatureSpec("speed", "float", -5.0, 5.0, "", True))
    reference = {n: ReferenceStats((0.0,), (0.5, 0.5), 0.0) for n in ("x0", "speed")}
    world.publish(2, features=renamed, reference=reference)
    outcome = device.poll()
    assert outcome.kind == "rejected" and outcome.detail.startswith("schema: features"), outcome
    world.publish(3, min_runner_version="99.0")
    outcome = device.poll()
    assert outcome.kind == "rejected" and "needs runner 99.0 or newer" in outcome.detail, outcome
    assert set(device.state.blocked_versions()) == {"2", "3"} and device.serves() == "1"
    world.publish(4)
    assert device.poll().kind == "activated" and device.serves() == "4"


def test_too_few_labelled_rows_trust_the_cloud_gate(world: World) -> None:
    world.publish(1)
    device = world.device(rows=10)
    device.poll()
    world.publish(2, flip=True)
    outcome = device.poll()
    assert outcome.kind == "activated", outcome
    assert outcome.detail == "not enough labelled rows (10 < 200): accepted on the cloud gate alone"


# --- the state directory ----------------------------------------------------------------------------

def _release(folder: Path, version: str, seed: int = 1) -> Path:
    folder.mkdir(parents=True)
    model = tiny_onnx(seed)
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.json").write_text(make_manifest(model, version).to_json())
    return folder


def _activate(state: StateDir, tmp: Path, version: str) -> None:
    state.activate(state.install(_release(tmp / "staged" / version, version)).name)


def test_recover_quarantines_damage_and_falls_back_to_previous(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.recover()
    for version in ("1", "2"):
        _activate(state, tmp_path, version)
    assert state.install(tmp_path / "staged" / "2") == state.releases_dir / "2"  # idempotent
    model = state.releases_dir / "2" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 1
    model.write_bytes(bytes(data))  # a disk fault in the active release
    (state.releases_dir / "3.partial-abcd").mkdir()  # a copy killed half way
    os.symlink("releases/2", state.path / ".current.tmp-dead")  # a swap killed half way
    moved = state.recover()
    assert sorted(p.name.split("-", 2)[-1] for p in moved) == ["2", "3.partial-abcd"]
    assert all(p.exists() for p in moved)  # quarantined, never deleted
    assert state.current_version() == "1" and state.previous_version() is None
    assert not (state.path / ".current.tmp-dead").exists()
    activation = state.activation()
    assert activation is not None and activation.version == "1"
    assert load_current(state) is not None
    (state.path / "state.json").write_text("{not json")
    assert [p.name.endswith("state.json") for p in state.recover()] == [True]
    assert state.activation() is not None and state.activation().version == "1"  # type: ignore[union-attr]


def test_recover_finishes_an_interrupted_rollback(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.recover()
    for version in ("1", "2"):
        _activate(state, tmp_path, version)
    state.block("2", "rolled back: watch failed")  # rollback's first step, then the process died
    state.recover()
    assert (state.current_version(), state.previous_version()) == ("1", None)
    assert any(e["event"] == "rolled_back" for e in state.events())


def test_release_folders_stay_bounded_but_current_and_previous_are_kept(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.recover()
    for version in ("1", "2", "3", "4", "5", "6"):
        _activate(state, tmp_path, version)
    assert state.installed() == ["4", "5", "6"]
    assert state.rollback("bad") == "5"
    for version in ("7", "8"):
        state.install(_release(tmp_path / "staged" / version, version))
    _activate(state, tmp_path, "9")
    assert (state.current_version(), state.previous_version()) == ("9", "5")
    assert state.installed() == ["5", "7", "8", "9"]
    assert not any(p.name.startswith(".") for p in state.releases_dir.iterdir())


def test_a_second_runner_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    first = StateDir(tmp_path / "state").lock()
    with pytest.raises(StateLocked, match=f"another edge-runner holds {tmp_path / 'state'} \\(pid {os.getpid()}\\)"):
        StateDir(tmp_path / "state").lock()
    first.release()
    with StateDir(tmp_path / "state").lock():
        pass


# --- shadow comparison ------------------------------------------------------------------------------

def test_shadow_metrics_equal_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        truth = rng.integers(0, 3, 50)
        predicted = rng.integers(0, 4, 50)  # includes a class the truth never has
        assert metric_score("accuracy", truth, predicted) == pytest.approx(accuracy_score(truth, predicted))
        assert metric_score("f1_macro", truth, predicted) == pytest.approx(
            f1_score(truth, predicted, average="macro", zero_division=0))
        with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class, then drops it
            expected = balanced_accuracy_score(truth, predicted)
        assert metric_score("balanced_accuracy", truth, predicted) == pytest.approx(expected)


def test_shadow_compare_and_schema_rules(tmp_path: Path) -> None:
    def predictor(name: str, model: bytes, version: str) -> Predictor:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.onnx").write_bytes(model)
        (folder / "manifest.json").write_text(make_manifest(model, version).to_json())
        return Predictor.from_folder(folder)

    good, other = predictor("g", _model(1), "1"), predictor("o", _model(2), "2")
    bad = predictor("b", _model(3, True), "3")
    x, labels = _labelled()
    policy = EdgePolicy(shadow_margin=0.05, min_shadow_rows=100)
    worse = compare(bad, good, x, labels, policy)
    assert not worse.passed and worse.candidate_score is not None and worse.current_score is not None
    assert worse.candidate_score < 0.2 < 0.9 < worse.current_score
    assert compare(good, bad, x, labels, policy).passed
    assert compare(other, good, x, labels, policy).passed  # a similar model is within the margin
    assert compare(bad, None, x, labels, policy).passed  # nothing to compare with
    few = compare(bad, good, x[:99], labels[:99], policy)
    assert few.passed and few.rows == 99 and few.candidate_score is None
    unlabelled = compare(bad, good, x, [None] * 250 + labels[250:], policy)
    assert unlabelled.passed and unlabelled.rows == SHADOW_ROWS - 250
    manifest = good.manifest
    assert schema_compatible(manifest, manifest) is None and schema_compatible(manifest, ["x0", "x1"]) is None
    assert "order" in (schema_compatible(manifest, ["x1", "x0"]) or "")
    assert (schema_compatible(replace(manifest, classes=(1, 0)), manifest) or "").startswith("classes")
    assert runner_too_old("0.2") and not runner_too_old("0.1.0") and not runner_too_old("0.0.9")
    assert isinstance(Manifest.from_json(manifest.to_json()), Manifest)
