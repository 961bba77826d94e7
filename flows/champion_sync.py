"""Keep ``data/champion/`` (the model every new candidate must beat) equal to the release the fleet trusts.

The champion is the release the ``stable`` channel points at; before anything reached stable, the one
on the channel retrain publishes to. Its ``model.onnx`` and ``manifest.json`` are copied out of the
local TUF repository (consistent-snapshot file names are checked against their sha256) into the
champion folder, swapped in whole. Reads the repository's own files; does not verify signatures (the
cloud trusts its own repository; devices verify with TUF).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from edge.atomic import replace_dir, write_bytes_atomic
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.release_layout import BUNDLE_FILES, MODEL_FILE
from flows.params import Params

STABLE = "stable"


def bundle_file(repository: Path, version: int, name: str) -> Path:
    """The stored file of ``bundles/<version>/<name>`` (``<sha256>.<name>``), checked against its hash."""
    folder = repository / "targets" / "bundles" / str(version)
    for candidate in sorted(folder.glob(f"*.{name}")):
        digest = candidate.name.removesuffix(f".{name}")
        if hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
            return candidate
    raise UserError(f"release {version}: no intact {name} in {folder}")


def model_digest(repository_config: Any, version: int) -> str:
    """sha256 of a release's model (the digest is the stored file's name)."""
    return bundle_file(repository_config.repository, version, MODEL_FILE).name.removesuffix(f".{MODEL_FILE}")


def champion_version(channels: dict[str, int], publish_channel: str) -> int | None:
    for channel in (STABLE, publish_channel):
        if channel in channels:
            return channels[channel]
    return None


def sync_champion(config: Any, params: Params, paths: Paths) -> int | None:
    """Materialise the champion release into ``params.evaluate.champion``; returns its version."""
    from flows.releases import list_releases

    channels = {channel: info.version for info in list_releases(config) for channel in info.channels}
    version = champion_version(channels, params.release.channel)
    if version is None:
        return None
    target = paths.resolve(params.evaluate.champion)
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    for name in BUNDLE_FILES:
        write_bytes_atomic(staging / name, bundle_file(config.repository, version, name).read_bytes())
    replace_dir(staging, target)
    return version
