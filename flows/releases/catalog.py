"""What the repository holds: every release with its channels, creation time, metrics and data hash,
and one release in detail (manifest, gate summary, files).

Reads the committed metadata chain and the stored manifests (each checked against its signed hash);
takes no lock, since committed files never change. Leaves out: anything that writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge.contracts.errors import UserError
from edge.contracts.manifest import Manifest, ManifestError
from edge.contracts.release_layout import MANIFEST_FILE
from flows.releases.config import ReleaseConfig
from flows.releases.history import read_events
from flows.releases.repository import LocalRepository, bundle_versions, channel_pointers


@dataclass(frozen=True)
class ReleaseInfo:
    version: int
    channels: list[str]
    created: str
    metrics: dict[str, float]
    data_hash: str
    candidate: str | None = None
    metric: str = ""
    files: list[str] = field(default_factory=list)


def read_manifest(repo: LocalRepository, info: TargetFile) -> Manifest:
    """The stored manifest behind ``info``, verified against its signed length and hash."""
    data = repo.target_file(info).read_bytes()
    try:
        info.verify_length_and_hashes(data)
        return Manifest.from_json(data)
    except (LengthOrHashMismatchError, ManifestError) as exc:
        raise UserError(f"stored {info.path} is corrupt: {exc}") from None


def list_channels(config: ReleaseConfig) -> dict[str, int]:
    """Channel -> the release it points at; empty when there is no repository yet."""
    from flows.releases.maintenance import is_initialised

    if not is_initialised(config):
        return {}
    return channel_pointers(LocalRepository(config).targets())


def list_releases(config: ReleaseConfig) -> list[ReleaseInfo]:
    """Every release, oldest first."""
    repo = LocalRepository(config)
    targets = repo.targets()
    pointers = channel_pointers(targets)
    releases = []
    for version, files in sorted(bundle_versions(targets).items()):
        manifest = read_manifest(repo, files[MANIFEST_FILE])
        releases.append(ReleaseInfo(
            version=version,
            channels=sorted(c for c, v in pointers.items() if v == version),
            created=manifest.created,
            metrics=dict(manifest.gate.metrics),
            data_hash=manifest.lineage.data_hash,
            candidate=manifest.candidate,
            metric=manifest.gate.metric,
            files=sorted(files),
        ))
    return releases


def show_release(config: ReleaseConfig, version: int) -> dict[str, Any]:
    """Release ``version``: its manifest, gate summary, files with hashes, channels and history."""
    repo = LocalRepository(config)
    targets = repo.targets()
    bundles = bundle_versions(targets)
    if version not in bundles:
        have = ", ".join(map(str, sorted(bundles))) or "none yet"
        raise UserError(f"no release {version} in the repository (releases: {have})")
    files = bundles[version]
    manifest = read_manifest(repo, files[MANIFEST_FILE])
    data = manifest.to_dict()
    return {
        "version": version,
        "candidate": manifest.candidate,
        "created": manifest.created,
        "channels": sorted(c for c, v in channel_pointers(targets).items() if v == version),
        "gate": data["gate"],
        "lineage": data["lineage"],
        "files": {name: {"length": info.length, "sha256": info.hashes["sha256"], "target": info.path}
                  for name, info in sorted(files.items())},
        "history": [e for e in read_events(config) if e.get("to") == version or e.get("from") == version],
        "manifest": data,
    }
