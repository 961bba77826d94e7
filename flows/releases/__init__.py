"""Signed, versioned model releases: a TUF repository (python-tuf) with channels.

Public API (each in its own small module): ``ReleaseConfig``; ``init_repository``, ``refresh`` and
``rotate_key`` (maintenance); ``publish``; ``promote`` and ``rollback`` (channels); ``list_channels``,
``list_releases`` and ``show_release`` (catalog); ``verify_repository`` (verify, like a device). Importing
this package imports python-tuf but does no I/O. Leaves out: params.yaml, the champion and Prefect (a
project's releases driven by its params.yaml: ``flows.project_releases``).
"""

from __future__ import annotations

from flows.releases.catalog import ReleaseInfo, list_channels, list_releases, show_release
from flows.releases.channels import ChannelMove, promote, rollback
from flows.releases.config import Expiry, ReleaseConfig
from flows.releases.maintenance import init_repository, is_initialised, refresh, rotate_key
from flows.releases.publish import PublishResult, publish
from flows.releases.verify import VerificationError, serve_directory, verify_repository

__all__ = [
    "ChannelMove",
    "Expiry",
    "PublishResult",
    "ReleaseConfig",
    "ReleaseInfo",
    "VerificationError",
    "init_repository",
    "is_initialised",
    "list_channels",
    "list_releases",
    "promote",
    "publish",
    "refresh",
    "rollback",
    "rotate_key",
    "serve_directory",
    "show_release",
    "verify_repository",
]
