"""Publish a passed release candidate as the next release version and point a channel at it.

Reads the candidate folder the gate wrote (``decision.json`` must say passed; ``manifest.json`` must
be valid and name ``model.onnx``'s exact bytes), then, under the repository lock, in one targets
version: adds ``bundles/<N>/model.onnx``, ``bundles/<N>/manifest.json`` (the candidate manifest with
``version = "N"`` and ``candidate`` = the gate's candidate id) and each lineage file as
``bundles/<N>/<name>``, and moves ``channels/<channel>.json`` to N; then snapshot, then timestamp (the
commit). ``N`` is one more than any release number ever used, committed or left behind by a crash.

Leaves out: the gate's decision itself, deleting anything, reproducing a release (``reproduce``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge.contracts.errors import UserError
from edge.contracts.manifest import Manifest, ManifestError
from edge.contracts.names import SAFE_NAME_PATTERN, check_channel, check_known_channel
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE, bundle_target
from flows.releases.channels import store_pointer
from flows.releases.config import ReleaseConfig
from flows.releases.history import append_event, reconcile
from flows.releases.repository import LocalRepository, bundle_versions, channel_pointers, repository_lock


@dataclass(frozen=True)
class PublishResult:
    version: int
    channel: str
    targets: list[str]
    seconds: float


@dataclass(frozen=True)
class Candidate:
    folder: Path
    manifest: Manifest
    model: Path


def read_candidate(folder: Path) -> Candidate:
    """The candidate in ``folder`` if the gate passed it and its manifest names its model exactly."""
    decision_file, manifest_file, model = folder / "decision.json", folder / MANIFEST_FILE, folder / MODEL_FILE
    if not decision_file.is_file():
        raise UserError(f"{folder} is not a release candidate: decision.json is missing (run the gate)")
    try:
        decision = json.loads(decision_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{decision_file}: unreadable: {exc}") from None
    if not isinstance(decision, dict) or decision.get("passed") is not True:
        raise UserError(f"{folder}: the gate did not pass this candidate (see decision.md); nothing published")
    if not manifest_file.is_file() or not model.is_file():
        raise UserError(f"{folder}: a passed candidate needs {MANIFEST_FILE} and {MODEL_FILE}")
    try:
        manifest = Manifest.from_json(manifest_file.read_bytes())
    except ManifestError as exc:
        raise UserError(f"{manifest_file}: {exc}") from None
    if manifest.model.file != MODEL_FILE or not manifest.gate.passed:
        raise UserError(f"{manifest_file}: names {manifest.model.file!r} or a failed gate; nothing published")
    if _sha256(model) != (manifest.model.sha256, manifest.model.bytes):
        raise UserError(f"{model} is not the model its manifest names (sha256 or size differ); nothing published")
    return Candidate(folder, manifest, model)


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _check_lineage(files: dict[str, Path]) -> dict[str, Path]:
    for name, path in files.items():
        if not SAFE_NAME_PATTERN.match(name) or name in (MODEL_FILE, MANIFEST_FILE):
            raise UserError(f"lineage file name {name!r} is not allowed")
        if not path.is_file():
            raise UserError(f"lineage file {path} not found")
    return files


def next_version(config: ReleaseConfig, repo: LocalRepository) -> int:
    """One more than every release number used so far, committed or left by a crashed publish."""
    used = set(bundle_versions(repo.targets()))
    folder = config.targets_dir / "bundles"
    if folder.is_dir():
        used.update(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    return max(used, default=0) + 1


def publish(
    config: ReleaseConfig, candidate_dir: Path, channel: str, lineage_files: dict[str, Path] | None = None,
    create: bool = False,
) -> PublishResult:
    """Sign and publish the candidate in ``candidate_dir`` as the next release on ``channel``."""
    started = time.perf_counter()
    check_channel(channel)
    candidate = read_candidate(Path(candidate_dir))
    lineage = _check_lineage(dict(lineage_files or {}))
    with repository_lock(config):
        repo = LocalRepository(config)
        repo.prepare_signers("targets", "snapshot", "timestamp")
        pointers = channel_pointers(repo.targets())
        check_known_channel(channel, pointers, create)  # a typo must not make a channel no device follows
        reconcile(config, pointers, repo.targets().version)
        version = next_version(config, repo)
        infos = _store_bundle(repo, candidate, version, lineage)
        pointer = store_pointer(repo, channel, version)
        with repo.edit_targets() as targets:
            for info in [*infos, pointer]:
                targets.targets[info.path] = info
        repo.commit()
        append_event(config, {"event": "publish", "channel": channel, "from": pointers.get(channel), "to": version,
                              "targets_version": repo.targets().version})
    paths = [info.path for info in infos] + [pointer.path]
    return PublishResult(version, channel, paths, time.perf_counter() - started)


def _store_bundle(
    repo: LocalRepository, candidate: Candidate, version: int, lineage: dict[str, Path]
) -> list[TargetFile]:
    model = repo.store_target(bundle_target(version, MODEL_FILE), source=candidate.model)
    if model.hashes["sha256"] != candidate.manifest.model.sha256 or model.length != candidate.manifest.model.bytes:
        raise UserError(f"{candidate.model} changed while publishing: its hash no longer matches the manifest")
    manifest = dataclasses.replace(
        candidate.manifest, version=str(version), candidate=candidate.manifest.candidate or candidate.manifest.version
    )
    infos = [model, repo.store_target(bundle_target(version, MANIFEST_FILE), data=manifest.to_json().encode())]
    for name, path in sorted(lineage.items()):
        infos.append(repo.store_target(bundle_target(version, name), source=path))
    return infos
