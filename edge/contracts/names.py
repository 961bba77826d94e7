"""Names both sides rely on: device ids, channel names, release versions, batch ids.

Every pattern is defined here once; the hub, the pipeline, the release tools, the runner's config and
its TUF client all validate with these functions. A device id or batch id ends up in file paths, so the
patterns never admit ``/``, a leading dot, or ``..``. Leaves out whether a channel *exists* (that is the
release repository's state: ``check_known_channel`` takes the existing ones as an argument).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from edge.contracts.errors import UserError

__all__ = [
    "BATCH_ID_PATTERN",
    "CHANNEL_PATTERN",
    "DEFAULT_CHANNELS",
    "CHANNEL_RULE",
    "DEVICE_ID_PATTERN",
    "DEVICE_ID_RULE",
    "RUNNER_VERSION_PATTERN",
    "SAFE_NAME_PATTERN",
    "SHA256_PATTERN",
    "VERSION_PATTERN",
    "ChannelError",
    "check_channel",
    "check_known_channel",
    "is_valid_channel",
    "is_valid_device_id",
]

SAFE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # one path component, never hidden
DEVICE_ID_PATTERN = SAFE_NAME_PATTERN  # device ids become folder names (landing zone, summaries)
DEVICE_ID_RULE = "1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
CHANNEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
CHANNEL_RULE = "1-32 of a-z 0-9 _ - (starting with a letter or digit)"
DEFAULT_CHANNELS: tuple[str, ...] = ("canary", "stable")  # exist in every project, even before a release
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
BATCH_ID_PATTERN = SHA256_PATTERN  # a batch id is the sha256 of its bytes (and its upload's Idempotency-Key)
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")  # a model version: safe as a path component
RUNNER_VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+){0,3}$")


class ChannelError(UserError, ValueError):
    """A channel name that is malformed, or names a channel that does not exist."""


def is_valid_device_id(device_id: str) -> bool:
    return bool(DEVICE_ID_PATTERN.match(device_id)) and device_id not in {".", ".."}


def is_valid_channel(channel: str) -> bool:
    return bool(CHANNEL_PATTERN.match(channel))


def check_channel(channel: str) -> str:
    """``channel`` when it is a well-formed channel name; ChannelError saying the rule otherwise."""
    if not isinstance(channel, str) or not is_valid_channel(channel):
        raise ChannelError(f"invalid channel name {channel!r}: use {CHANNEL_RULE}")
    return channel


def check_known_channel(channel: str, existing: Collection[str], create: bool = False,
                        hint: str = "pass --create to make a new one") -> str:
    """``channel`` when it is well formed and exists (or ``create`` is set); else ChannelError that lists
    the channels there are, so a typo (``stabel``) never silently makes a channel no device follows."""
    check_channel(channel)
    known = sorted(set(existing) | set(DEFAULT_CHANNELS))
    if channel in known or create:
        return channel
    raise ChannelError(f"channel {channel!r} does not exist (channels: {', '.join(known)}); {hint}")
