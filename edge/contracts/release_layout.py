"""Inside a signed release: bundle file names, TUF target paths, the channel pointer, and where a hub serves it.

A release repository is a TUF repository. Release ``N`` is the targets ``bundles/N/model.onnx`` and
``bundles/N/manifest.json`` (plus lineage files ``bundles/N/dvc.lock`` and ``bundles/N/params.yaml``).
A channel is the signed target ``channels/<name>.json``; its bytes and its TUF ``custom`` field both say
``{"version": N, "model": "bundles/N/model.onnx", "manifest": "bundles/N/manifest.json"}`` (the file also
names the channel). A hub serves the repository read-only under ``/releases/metadata/`` and
``/releases/targets/``. A device's state dir and the cloud's candidate and champion folders hold the
same two files. Leaves out signing and verification (tuf does both) and I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge.contracts.names import CHANNEL_PATTERN, SHA256_PATTERN

__all__ = [
    "BUNDLE_FILES",
    "BUNDLE_TARGET_PATTERN",
    "CHANNEL_TARGET_PATTERN",
    "HASHED_TARGET_PATTERN",
    "LINEAGE_FILES",
    "MANIFEST_FILE",
    "METADATA_PATH",
    "MODEL_FILE",
    "TARGETS_PATH",
    "bundle_target",
    "channel_target",
    "pointer_bytes",
    "pointer_custom",
]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES: tuple[str, ...] = (MODEL_FILE, MANIFEST_FILE)  # what a device downloads and activates
LINEAGE_FILES: tuple[str, ...] = ("dvc.lock", "params.yaml")  # what `release reproduce` needs besides the bundle
METADATA_PATH = "/releases/metadata/"  # under a hub's base URL
TARGETS_PATH = "/releases/targets/"
BUNDLE_TARGET_PATTERN = re.compile(r"^bundles/([1-9][0-9]*)/([^/]+)$")
CHANNEL_TARGET_PATTERN = re.compile(r"^channels/(" + CHANNEL_PATTERN.pattern.strip("^$") + r")\.json$")
# With consistent snapshots a target is stored as <sha256>.<name>: (sha256, name) of a stored file name
HASHED_TARGET_PATTERN = re.compile(r"^(" + SHA256_PATTERN.pattern.strip("^$") + r")\.(.+)$")


def bundle_target(version: int, name: str) -> str:
    return f"bundles/{version}/{name}"


def channel_target(channel: str) -> str:
    return f"channels/{channel}.json"


def pointer_custom(version: int) -> dict[str, Any]:
    """The signed ``custom`` field of a channel pointer to release ``version``."""
    return {"version": version, "model": bundle_target(version, MODEL_FILE),
            "manifest": bundle_target(version, MANIFEST_FILE)}


def pointer_bytes(channel: str, version: int) -> bytes:
    """The bytes of ``channels/<channel>.json`` pointing at ``version``."""
    return (json.dumps({"channel": channel, **pointer_custom(version)}, sort_keys=True) + "\n").encode()
