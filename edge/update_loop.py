"""The runner's update loop: release polls, what goes into service, and rollbacks (asked for or automatic).

``UpdateLoop`` owns the device's ``ReleaseUpdater`` (edge.updates) and decides what the inference slot
serves. ``serve_current()`` puts the release ``current`` names in service at start-up (from disk: no
network, no TUF), watched for the rest of its watch window when it was activated recently.
``poll_now()`` runs one update round (the updates loop calls it every ``releases.poll_interval_s`` ±
``poll_jitter``; over https with the runner's current TLS context, ``tls``); an activated release goes
into service and is watched from now on (edge.health's ``WatchWindow``). ``watchdog()`` (every second)
acts on a rollback request file written by ``edge-runner rollback`` and on the watch's verdict: an
automatic rollback when there is a previous release, else a ``watch_failed`` event.
``rollback(reason)`` serves ``previous`` again, unwatched, and blocks the version it replaces.
``last_poll`` and ``last_sync`` say when the repository was last read.

After every release poll ``poll_now`` also runs the signed runner policy's poll (``policy``, an
``edge.policy_updates.PolicyFollower``), which fetches through ``fetch_policy``: the same trusted TUF
metadata, limits and TLS context as the release. The watch's rules are the manifest's edge policy with
the runner's ``[watch]`` values on top; ``use_config`` takes a new configuration's poll interval, jitter
and ``[watch]`` values (the watch in progress gets the new rules).

Leaves out: one update round's steps (edge.updates), scheduling threads (edge.loops), reports.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.config import RunnerConfig
from edge.contracts.manifest import ManifestError
from edge.control import ROLLBACK_REQUEST, RunnerError, read_request
from edge.health import HealthMonitor, WatchRules
from edge.heartbeat import utc_now
from edge.inference import ModelError, Predictor
from edge.logs import Throttle
from edge.metrics import Registry
from edge.releases import ClientLimits, FetchedPolicy, fetch_policy
from edge.serving import InferenceSlot
from edge.state import StateDir
from edge.updates import ReleaseUpdater, UpdateOutcome, load_current

if TYPE_CHECKING:
    from edge.policy_updates import PolicyFollower

__all__ = ["WATCHDOG_S", "UpdateLoop"]

log = logging.getLogger("edge.runner")

WATCHDOG_S = 1.0  # how often the watchdog looks for a rollback request and the watch's verdict


class UpdateLoop:
    """See the module docstring."""

    def __init__(self, config: RunnerConfig, state: StateDir, slot: InferenceSlot, monitor: HealthMonitor,
                 labelled: Callable[[], tuple[np.ndarray, Sequence[object]]], metrics: Registry,
                 rng: random.Random, tls: Callable[[], ssl.SSLContext | None] | None = None) -> None:
        releases = config.releases
        try:
            root = releases.trusted_root.read_bytes()
        except OSError as exc:
            raise RunnerError(f"releases.trusted_root: cannot read {releases.trusted_root}: "
                              f"{exc.strerror or exc}") from None
        self._config, self._state, self._slot, self._monitor, self._rng = config, state, slot, monitor, rng
        self._root, self._tls = root, tls
        self.policy: PolicyFollower | None = None  # the signed runner policy, polled after each release poll
        self._limits = limits = ClientLimits(max_bundle_bytes=releases.max_bundle_bytes,
                                             deadline_seconds=releases.download_deadline_s,
                                             read_timeout_seconds=releases.read_timeout_s)
        self.updater = ReleaseUpdater(state, releases.metadata_url, releases.targets_url, releases.channel, root,
                                      limits, labelled, self._activated, current=lambda: slot.predictor,
                                      on_rollback=self._rolled_back, tls=tls)
        self._polls = metrics.counter("update_polls_total", "Release polls", ("outcome",))
        self._rejections = Throttle(log)
        self.last_poll: dict[str, Any] | None = None
        self.last_sync: str | None = None  # last time the repository answered

    # -- what is served --

    def serve_current(self) -> None:
        """Serve what ``current`` names (loaded from disk); nothing when there is none or it cannot load."""
        try:
            predictor = load_current(self._state)
        except (ManifestError, ModelError, OSError) as exc:
            log.error("the active release cannot be loaded and there is no previous one: %s", exc)
            return
        if predictor is not None:
            self._serve(predictor, watch_from=self._activation_time(predictor.version))

    def _serve(self, predictor: Predictor, watch_from: float | None) -> None:
        self._slot.serve(predictor)
        if watch_from is None:
            self._monitor.stop_watch()
        else:
            self._monitor.start_watch(WatchRules.from_policy(predictor.manifest.edge_policy, self._config.watch),
                                      watch_from, predictor.version)

    def _activated(self, predictor: Predictor) -> None:
        self._serve(predictor, watch_from=time.time())

    def _rolled_back(self, predictor: Predictor) -> None:
        self._serve(predictor, watch_from=None)

    def _activation_time(self, version: str) -> float | None:
        activation = self._state.activation()
        if activation is None or activation.version != version or not activation.activated_at:
            return None
        try:
            return datetime.fromisoformat(activation.activated_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    # -- polls --

    def poll_wait(self) -> float:
        """Seconds until the next poll: the interval ± jitter, so a fleet does not poll in step."""
        r = self._config.releases
        return r.poll_interval_s * (1.0 + self._rng.uniform(-r.poll_jitter, r.poll_jitter))

    def use_config(self, config: RunnerConfig) -> None:
        """A signed policy's values from now on: poll interval and jitter, the watch's ``[watch]`` values."""
        self._config = config
        model = self._slot.current
        if model is not None:
            self._monitor.retune_watch(WatchRules.from_policy(model.manifest.edge_policy, config.watch))

    def fetch_policy(self, skip: Callable[[int], bool]) -> FetchedPolicy:
        """The channel's runner policy through the release's own trusted metadata (edge.releases)."""
        releases, state = self._config.releases, self._state
        root = None if (state.tuf_dir / "root.json").is_file() else self._root
        return fetch_policy(state.tuf_dir, releases.metadata_url, releases.targets_url, releases.channel, root,
                            self._limits, skip, tls=None if self._tls is None else self._tls())

    def poll_now(self) -> UpdateOutcome:
        """One release poll, then (unless the repository was unreachable) one runner policy poll."""
        outcome = self._poll_release()
        if self.policy is not None and outcome.kind != "unavailable":
            try:
                self.policy.poll_now()
            except OSError as exc:  # applied.json could not be written: nothing was swapped
                log.error("runner policy not applied, the one in force stays: %s", exc)
        return outcome

    def _poll_release(self) -> UpdateOutcome:
        active = self._slot.version
        outcome = self.updater.poll_once()
        self._polls.inc(outcome.kind)
        self.last_poll = {"at": utc_now(), "kind": outcome.kind, "version": outcome.version,
                          "detail": outcome.detail, "seconds": round(outcome.seconds, 3)}
        if outcome.kind != "unavailable":
            self.last_sync = self.last_poll["at"]
        if outcome.kind == "activated":
            log.info("release %s activated (was %s): %s", outcome.version, active or "none", outcome.detail)
        elif outcome.kind == "rejected":  # a version is blocked once refused; a bad repository repeats
            self._rejections.log(f"{outcome.version}: {outcome.detail}", logging.WARNING,
                                 f"release {outcome.version or '(repository)'} rejected, "
                                 f"{self._slot.version or 'no model'} stays in service: {outcome.detail}")
        return outcome

    # -- rollbacks --

    def watchdog(self) -> bool:
        """One look at the rollback request file and the watch's verdict; True when it rolled back."""
        rolled = False
        request = self._config.state_dir / ROLLBACK_REQUEST
        if request.exists():
            asked = read_request(request)
            request.unlink(missing_ok=True)
            rolled = self.rollback(asked) is not None
        reason = self._monitor.rollback_reason()
        if reason is not None:
            if self._state.previous_version() is None:
                self._monitor.stop_watch()
                self._state.record("watch_failed", self._slot.version, f"{reason}; no previous release to go back to")
                log.error("model %s fails its watch (%s) and there is no previous release to go back to",
                          self._slot.version, reason)
            else:
                rolled = self.rollback(f"automatic: {reason}") is not None or rolled
        return rolled

    def rollback(self, reason: str) -> str | None:
        """Go back to ``previous`` (the current version is blocked); None when there is nothing to go back to."""
        if self._state.previous_version() is None:
            self._state.record("rollback_refused", self._slot.version, f"{reason}; no previous release")
            log.warning("cannot roll back %s (%s): no previous release", self._slot.version, reason)
            return None
        bad = self._slot.version
        version = self.updater.rollback(reason)
        log.warning("rolled back %s -> %s: %s", bad, version, reason)
        return version

