"""The signed runner policy: what a channel tells its runners about how to behave, beside its model pointer.

A runner policy is the signed TUF target ``config/<channel>.json`` (``policy_target``), published by
``edgeloop config publish`` and verified on the device exactly like a model pointer. Its bytes are one
JSON document (``policy_bytes`` writes it canonically, ``parse_policy`` reads and checks its shape)::

    {"format": "edgeloop.runner-policy/1", "channel": "canary", "version": 4,
     "published_at": "2026-12-02T10:00:00Z", "note": "raise sampling on press-2 during drift",
     "content_of": null,
     "settings": {"upload": {"random_rate": 0.05}, "drift": {"window_rows": 5000}},
     "devices": {"press-2": {"upload": {"random_rate": 0.4}}}}

- ``version`` grows by one with every publish on a channel; a runner never applies a version lower than
  or equal to the one it applied (a replayed old policy is refused, like a frozen release). A rollback
  publishes an earlier version's content again under a new version and names it in ``content_of``.
- ``settings`` holds only keys of ``REMOTE_KEYS`` (section -> key), a partial set: a key not named keeps
  the runner's own runner.toml value. ``devices`` holds per-device overrides of the same keys, applied on
  top of ``settings`` for that device only (adaptive collection raises one device's sampling this way).
- What must stay local (identity, paths, hub URL, trust, TLS, the API, the channel itself) is not in
  ``REMOTE_KEYS`` and is refused in a policy. A runner may pin any remote key against change
  (runner.toml ``[policy] pinned``).
- ``PRIVACY_KEYS`` can only get stricter remotely: ``upload.local_only`` may only gain names and
  ``upload.mode`` may only go from ``rows`` to ``aggregates`` (``loosened_privacy`` names a key that a
  policy would loosen), unless the runner's own file allows it (``[policy] allow_looser_privacy``).

Value types and ranges are not checked here: they are runner.toml's own checks (``edge.policy_settings``
applies a policy through the same readers). Leaves out signing and fetching (tuf does both), and I/O.
Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.contracts.names import CHANNEL_PATTERN, is_valid_device_id

__all__ = [
    "MAX_POLICY_BYTES",
    "POLICY_FORMAT",
    "POLICY_TARGET_PATTERN",
    "PRIVACY_KEYS",
    "REMOTE_KEYS",
    "PolicyError",
    "RunnerPolicy",
    "loosened_privacy",
    "parse_policy",
    "policy_bytes",
    "policy_target",
]

POLICY_FORMAT = "edgeloop.runner-policy/1"
POLICY_TARGET_PATTERN = re.compile(r"^config/(" + CHANNEL_PATTERN.pattern.strip("^$") + r")\.json$")
MAX_POLICY_BYTES = 1024 * 1024  # a runner refuses a larger policy before reading it

# Keys a signed policy may set: section -> keys (the same names as in runner.toml).
REMOTE_KEYS: dict[str, frozenset[str]] = {
    "upload": frozenset({"mode", "uncertain_margin", "random_rate", "anomalies", "batch_rows",
                         "summary_interval_s", "local_only", "daily_byte_budget"}),
    "drift": frozenset({"window_rows", "min_rows", "moderate_psi", "major_psi"}),
    "watch": frozenset({"accuracy_floor", "window_s", "min_feedback", "max_model_errors"}),
    "releases": frozenset({"poll_interval_s", "poll_jitter"}),
    "hub": frozenset({"heartbeat_interval_s"}),
}
# Privacy rules: a remote policy may make them stricter, never looser (unless the runner allows it).
PRIVACY_KEYS: tuple[str, ...] = ("upload.local_only", "upload.mode")
_MODE_STRICTNESS = {"rows": 0, "aggregates": 1}

Settings = dict[str, dict[str, Any]]


class PolicyError(ValueError):
    """A policy document that is not valid; the message names the field."""


@dataclass(frozen=True)
class RunnerPolicy:
    channel: str
    version: int
    settings: Settings
    devices: dict[str, Settings] = field(default_factory=dict)
    published_at: str = ""
    note: str = ""
    content_of: int | None = None  # a rollback: the earlier version whose content this is

    def for_device(self, device_id: str) -> Settings:
        """``settings`` with this device's overrides on top (a new dict; section -> key -> value)."""
        merged = {section: dict(values) for section, values in self.settings.items()}
        for section, values in self.devices.get(device_id, {}).items():
            merged.setdefault(section, {}).update(values)
        return merged


def policy_target(channel: str) -> str:
    """The TUF target path of ``channel``'s runner policy."""
    return f"config/{channel}.json"


def policy_bytes(policy: RunnerPolicy) -> bytes:
    """The canonical bytes of a policy (sorted keys, one trailing newline)."""
    document = {"format": POLICY_FORMAT, "channel": policy.channel, "version": policy.version,
                "published_at": policy.published_at, "note": policy.note, "content_of": policy.content_of,
                "settings": policy.settings, "devices": policy.devices}
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()


def parse_policy(data: bytes) -> RunnerPolicy:
    """Read and check the shape of a policy document (PolicyError naming the field)."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy: {len(data)} bytes, more than the limit of {MAX_POLICY_BYTES}")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError("policy: expected a JSON object")
    if document.get("format") != POLICY_FORMAT:
        raise PolicyError(f"format: expected {POLICY_FORMAT!r}, got {document.get('format')!r}")
    unknown = sorted(set(document) - {"format", "channel", "version", "published_at", "note", "content_of",
                                      "settings", "devices"})
    if unknown:
        raise PolicyError(f"{unknown[0]}: unknown field")
    channel = document.get("channel")
    if not isinstance(channel, str) or not CHANNEL_PATTERN.match(channel):
        raise PolicyError(f"channel: expected a channel name, got {channel!r}")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PolicyError(f"version: expected a whole number >= 1, got {version!r}")
    content_of = document.get("content_of")
    if content_of is not None and (isinstance(content_of, bool) or not isinstance(content_of, int)
                                   or not 1 <= content_of < version):
        raise PolicyError(f"content_of: expected an earlier version or null, got {content_of!r}")
    for name in ("published_at", "note"):
        if not isinstance(document.get(name, ""), str):
            raise PolicyError(f"{name}: expected a string")
    settings = _settings(document.get("settings", {}), "settings")
    devices_raw = document.get("devices", {})
    if not isinstance(devices_raw, dict):
        raise PolicyError("devices: expected an object (device id -> settings)")
    devices: dict[str, Settings] = {}
    for device_id, values in devices_raw.items():
        if not is_valid_device_id(device_id):
            raise PolicyError(f"devices.{device_id}: not a valid device id")
        devices[device_id] = _settings(values, f"devices.{device_id}")
    return RunnerPolicy(channel=channel, version=version, settings=settings, devices=devices,
                        published_at=document.get("published_at", ""), note=document.get("note", ""),
                        content_of=content_of)


def _settings(raw: Any, where: str) -> Settings:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected an object (section -> key -> value)")
    out: Settings = {}
    for section, values in raw.items():
        if section not in REMOTE_KEYS:
            raise PolicyError(f"{where}.{section}: not a section a policy may set "
                              f"(one of {sorted(REMOTE_KEYS)}; the rest stays in runner.toml)")
        if not isinstance(values, dict):
            raise PolicyError(f"{where}.{section}: expected an object (key -> value)")
        for key in values:
            if key not in REMOTE_KEYS[section]:
                raise PolicyError(f"{where}.{section}.{key}: not a key a policy may set "
                                  f"(one of {sorted(REMOTE_KEYS[section])})")
        out[section] = dict(values)
    return out


def loosened_privacy(local: Mapping[str, Any], remote: Mapping[str, Any]) -> list[str]:
    """The ``PRIVACY_KEYS`` (``section.key``) whose ``remote`` value is looser than ``local``'s.

    Both map ``section.key`` to a value (``upload.local_only``: a list of names; ``upload.mode``:
    ``rows`` or ``aggregates``); a key missing from ``remote`` keeps the local value and loosens nothing."""
    loosened: list[str] = []
    if "upload.local_only" in remote:
        dropped = set(local.get("upload.local_only", ())) - set(remote["upload.local_only"] or ())
        if dropped:
            loosened.append("upload.local_only")
    if "upload.mode" in remote:
        before = _MODE_STRICTNESS.get(str(local.get("upload.mode", "rows")), 0)
        after = _MODE_STRICTNESS.get(str(remote["upload.mode"]), 0)
        if after < before:
            loosened.append("upload.mode")
    return loosened
