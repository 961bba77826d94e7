"""Follow the channel's signed runner policy: fetch, verify, check, apply atomically, remember.

``PolicyFollower(base, state, fetch, on_apply)`` holds the configuration the runner runs with: ``base``
(runner.toml) with the applied policy on top. ``restore()`` (at start, no network) reads
``<state_dir>/policy/applied.json`` and applies its settings again on top of runner.toml with today's pins
and privacy rules; when that no longer works (runner.toml changed) the file is logged and ignored: the
runner runs on runner.toml alone. ``poll_now()`` (the update loop calls it after every release poll, so on
the same interval and against the same TUF metadata) asks ``fetch`` (``edge.releases.fetch_policy``) for
``config/<channel>.json``; versions already applied or refused are not downloaded. A new version is
checked in order: TUF (hashes, length, signatures, expiry), ``parse_policy``, the document's version is
the signed one and its channel this runner's, the version is newer than the applied one (a replay is
refused), ``policy.for_device(device_id)``, then ``edge.policy_settings.plan_settings`` (runner.toml's
readers and rules, pins kept, privacy only stricter unless ``[policy] allow_looser_privacy``).

Applying: ``applied.json`` ({version, channel, content_of, requested, settings, kept, applied_at}) is
written atomically (temp file, fsync, rename, fsync the folder) and only then is the live configuration
swapped (``on_apply(new, old)``); a crash leaves the old file or the new one, and a restart applies
whichever it finds. A refusal leaves the policy in force as it is, records a ``config_rejected`` event
({version, reason}: the next heartbeat carries it), logs one line per version and remembers the version in
``policy/refused.json`` (per channel), so it is not fetched again (a newer version is). A repository that does not
verify as a whole (expired metadata, for instance) is logged once per reason and recorded once.

Leaves out: what the values do (the runner swaps them into its parts), fetching (edge.releases) and
publishing (flows.releases.runner_config). Standard library only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.atomic import fsync_dir
from edge.config import ConfigError, RunnerConfig
from edge.contracts.runner_policy import PolicyError, parse_policy
from edge.heartbeat import utc_now
from edge.logs import Throttle
from edge.policy_settings import Applied, plan_settings
from edge.releases import FetchedPolicy, PolicyRejected, ReleaseRejected, ReleaseUnavailable
from edge.state import StateDir

__all__ = ["APPLIED_FILE", "NO_CHANGES", "POLICY_DIR", "REFUSED_FILE", "AppliedPolicy", "PolicyFollower",
           "PolicyOutcome", "write_json_atomic"]

NO_CHANGES = "no value changes"  # a config_applied event's detail when the new version changed nothing here

log = logging.getLogger("edge.runner")

POLICY_DIR = "policy"
APPLIED_FILE = "applied.json"
REFUSED_FILE = "refused.json"
REFUSED_KEPT = 100  # refused versions remembered (the newest)

Fetch = Callable[[Callable[[int], bool]], FetchedPolicy]  # skip(version) -> the fetched policy
OutcomeKind = Literal["disabled", "none", "unchanged", "applied", "rejected", "unavailable"]


@dataclass(frozen=True)
class AppliedPolicy:
    """What ``applied.json`` holds: the policy version in force on this device and what it set."""

    version: int
    channel: str
    requested: dict[str, dict[str, Any]]  # the policy's settings for this device (before pins)
    settings: dict[str, dict[str, Any]]  # as applied (pinned keys left out)
    kept: dict[str, Any]  # "section.key" -> the local value a pin kept
    applied_at: str
    content_of: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "channel": self.channel, "content_of": self.content_of,
                "requested": self.requested, "settings": self.settings, "kept": self.kept,
                "applied_at": self.applied_at}

    @classmethod
    def from_json(cls, raw: Any) -> AppliedPolicy:
        if not isinstance(raw, dict):
            raise ValueError("expected an object")
        version, channel, requested = raw.get("version"), raw.get("channel"), raw.get("requested")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version: {version!r}")
        if not isinstance(channel, str) or not isinstance(requested, dict):
            raise ValueError("channel or requested missing")
        content_of = raw.get("content_of")
        return cls(version, channel, requested, dict(raw.get("settings") or {}), dict(raw.get("kept") or {}),
                   str(raw.get("applied_at", "")), content_of if isinstance(content_of, int) else None)


@dataclass(frozen=True)
class PolicyOutcome:
    kind: OutcomeKind
    version: int | None
    detail: str


def write_json_atomic(path: Path, document: Any, pause: Callable[[str], None] = lambda stage: None) -> None:
    """``document`` as JSON at ``path`` (mode 0600): temp file, fsync, rename, fsync the folder.

    ``pause(stage)`` is called between the steps ("written": the temp file is durable, not yet renamed;
    "renamed": in place, folder not yet synced): a crash test stops the process there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp"
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    pause("written")
    temporary.replace(path)
    pause("renamed")
    fsync_dir(path.parent)


class PolicyFollower:
    """See the module docstring. ``config`` is the live configuration; polls are serialised (one at a time)."""

    def __init__(self, base: RunnerConfig, state: StateDir, fetch: Fetch,
                 on_apply: Callable[[RunnerConfig, RunnerConfig], None] = lambda new, old: None,
                 pause: Callable[[str], None] = lambda stage: None) -> None:
        self.base = base
        self.config = base
        self.applied: AppliedPolicy | None = None
        self._state, self._fetch, self._on_apply, self._pause = state, fetch, on_apply, pause
        self.folder = Path(base.state_dir) / POLICY_DIR
        self._refused = self._read_refused()
        self._throttle = Throttle(log)
        self._repository_reasons: set[str] = set()
        self.last: PolicyOutcome | None = None
        self._polling = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.base.policy.enabled

    @property
    def version(self) -> int | None:
        """The policy version in force (None: runner.toml alone)."""
        return None if self.applied is None else self.applied.version

    def report(self) -> dict[str, Any]:
        """What status and /health show about the policy."""
        applied = self.applied
        return {"enabled": self.enabled, "version": None if applied is None else applied.version,
                "channel": None if applied is None else applied.channel,
                "applied_at": None if applied is None else applied.applied_at,
                "kept": {} if applied is None else dict(applied.kept),
                "refused": {str(v): r for v, r in sorted(self._refused.items())[-5:]},
                "last": None if self.last is None else {"kind": self.last.kind, "version": self.last.version,
                                                        "detail": self.last.detail}}

    # -- at start --

    def restore(self) -> RunnerConfig:
        """runner.toml with ``applied.json`` on top (no network); runner.toml alone when there is none,
        the policy is disabled, or it no longer applies (logged)."""
        path = self.folder / APPLIED_FILE
        if not self.enabled or not path.exists():
            return self.config
        try:
            applied = AppliedPolicy.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.error("%s is not readable (%s): ignored, runner.toml alone applies until the next policy", path, exc)
            return self.config
        if applied.channel != self.base.releases.channel:
            log.warning("policy %d is for channel %s, this runner follows %s: ignored", applied.version,
                        applied.channel, self.base.releases.channel)
            return self.config
        try:
            plan = self._plan(applied.requested)
        except ConfigError as exc:
            log.error("policy %d no longer applies on top of runner.toml (%s): ignored, runner.toml alone "
                      "applies until the next policy", applied.version, exc)
            return self.config
        self.applied = AppliedPolicy(applied.version, applied.channel, applied.requested, plan.settings,
                                     _jsonable(plan.kept), applied.applied_at, applied.content_of)
        self.config = plan.config
        log.info("policy %d of channel %s applies (applied %s)%s", applied.version, applied.channel,
                 applied.applied_at, _kept_text(plan.kept))
        return self.config

    # -- polls --

    def poll_now(self) -> PolicyOutcome:
        """One look at the channel's policy (never raises for a bad or unreachable one)."""
        if not self.enabled:
            return PolicyOutcome("disabled", None, "[policy] enabled = false")
        with self._polling:  # the update loop and an in-process caller (Runner.poll_now) may both ask
            self.last = outcome = self._poll()
        return outcome

    def _skip(self, version: int) -> bool:
        return version in self._refused or (self.version is not None and version <= self.version)

    def _poll(self) -> PolicyOutcome:
        try:
            fetched = self._fetch(self._skip)
        except PolicyRejected as exc:
            return self._refuse(exc.version, f"does not verify: {exc}")
        except ReleaseRejected as exc:
            reason = f"repository: {exc}"
            if reason not in self._repository_reasons:
                self._repository_reasons.add(reason)
                self._state.record("config_rejected", None, reason)
            self._throttle.log(reason, logging.WARNING, f"runner policy not read, the one in force stays: {reason}")
            return PolicyOutcome("rejected", None, reason)
        except ReleaseUnavailable as exc:
            return PolicyOutcome("unavailable", None, str(exc))
        version = fetched.version
        if version is None:
            return PolicyOutcome("none", None, "the channel has no runner policy")
        if fetched.data is None:
            if version in self._refused:
                return PolicyOutcome("rejected", version, self._refused[version])
            if self.version is not None and version < self.version:
                return self._refuse(version, f"replay: version {version} is not newer than the applied "
                                             f"{self.version}")
            return PolicyOutcome("unchanged", version, f"policy {version} applies")
        try:
            policy = parse_policy(fetched.data)
        except PolicyError as exc:
            return self._refuse(version, f"invalid: {exc}")
        if policy.version != version:
            return self._refuse(version, f"the document says version {policy.version}, its signature {version}")
        channel = self.base.releases.channel
        if policy.channel != channel:
            return self._refuse(version, f"the document is for channel {policy.channel}, this runner follows "
                                         f"{channel}")
        requested = policy.for_device(self.base.device_id)
        try:
            plan = self._plan(requested)
        except ConfigError as exc:
            return self._refuse(version, str(exc))
        applied = AppliedPolicy(version, channel, requested, _jsonable(plan.settings), _jsonable(plan.kept),
                                utc_now(), policy.content_of)
        write_json_atomic(self.folder / APPLIED_FILE, applied.to_json(), self._pause)
        old, self.config, self.applied = self.config, plan.config, applied
        self._on_apply(plan.config, old)
        self._repository_reasons.clear()
        detail = _changes(old, plan)
        self._state.record("config_applied", str(version), detail[:200])
        rollback = "" if policy.content_of is None else f" (the content of version {policy.content_of})"
        log.info("policy %d of channel %s applied%s: %s", version, channel, rollback, detail)
        for key, value in plan.kept.items():
            log.info("policy %d: %s pinned locally, kept %s", version, key, _shown(value))
        return PolicyOutcome("applied", version, detail)

    def _plan(self, requested: dict[str, dict[str, Any]]) -> Applied:
        p = self.base.policy
        return plan_settings(self.base, requested, p.pinned, p.allow_looser_privacy)

    def _refuse(self, version: int, reason: str) -> PolicyOutcome:
        self._refused[version] = reason
        newest = dict(sorted(self._refused.items())[-REFUSED_KEPT:])
        self._refused = newest
        try:
            write_json_atomic(self.folder / REFUSED_FILE, {"channel": self.base.releases.channel,
                                                           "versions": {str(v): r for v, r in newest.items()}})
        except OSError as exc:  # remembered in memory all the same
            log.warning("cannot write %s: %s", self.folder / REFUSED_FILE, exc.strerror or exc)
        self._state.record("config_rejected", str(version), reason)
        in_force = "runner.toml alone" if self.version is None else f"policy {self.version}"
        self._throttle.log(f"refused {version}", logging.WARNING,
                           f"policy {version} refused, {in_force} stays: {reason}")
        return PolicyOutcome("rejected", version, reason)

    def _read_refused(self) -> dict[int, str]:
        try:
            raw = json.loads((self.folder / REFUSED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("channel") != self.base.releases.channel:
            return {}  # versions count per channel: another channel's refusals say nothing here
        versions = raw.get("versions")
        return {int(v): str(r) for v, r in versions.items() if str(v).isdigit()} if isinstance(versions, dict) else {}


def _jsonable(value: Any) -> Any:
    """Tuples as lists, so what is written is what is read back."""
    return json.loads(json.dumps(value))


def _shown(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _kept_text(kept: dict[str, Any]) -> str:
    return "" if not kept else "; pinned locally: " + ", ".join(f"{k} kept {_shown(v)}" for k, v in kept.items())


def _changes(old: RunnerConfig, plan: Applied) -> str:
    """The keys whose value the policy changes, in words ("upload.random_rate 0.02 -> 0.4")."""
    parts = []
    for section, values in plan.settings.items():
        for key, value in values.items():
            before = getattr(getattr(old, section), key)
            if before != value:
                parts.append(f"{section}.{key} {_shown(before)} -> {_shown(value)}")
    return ", ".join(parts) or NO_CHANGES
