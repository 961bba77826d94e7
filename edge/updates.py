"""Model updates on the device: poll the channel, validate the candidate here, activate it, roll back.

``ReleaseUpdater.poll_once()`` runs one update round and returns an ``UpdateOutcome``:

1. ``edge.releases.fetch_release`` (TUF-verified) into ``state/staging``, skipping the active version
   and every version in the state's ``blocked`` list (no download). ``ReleaseRejected`` (tampered,
   expired, wrong key, oversized) -> ``rejected``; ``ReleaseUnavailable`` -> ``unavailable``; the active
   model is untouched either way. The pointed version unchanged -> ``unchanged``, or ``blocked`` when the
   device refused it before.
2. Validation on the device: the manifest's ``min_runner_version`` against ``edge.__version__``; the
   schema against the active manifest (or the configured feature names); a ``Predictor`` built and
   warmed from the staged files; then ``edge.shadow.compare`` on the device's labelled rows with the
   candidate manifest's policy. A version older than the active one is a rollback the cloud ordered
   through the signed channel: it is not shadow-compared. Any refusal -> ``rejected``: the version is
   blocked (an event names the reason, for the next heartbeat) and the staged bundle is quarantined.
3. ``StateDir.install`` + ``activate``, then ``on_activate(predictor)`` (the runner puts it in its
   inference slot, edge.serving); the staged copy is removed. -> ``activated``.

``rollback(reason)`` builds the previous release's Predictor, swaps the links back (the bad version
becomes blocked), and calls ``on_rollback`` (``on_activate`` when none is given). ``load_current(state)``
loads the active release from disk with no network and no TUF: expired metadata never stops a model
that is already active.

Leaves out: scheduling polls, the watch that decides a rollback (edge.health), and HTTP. Standard
library, numpy, onnxruntime and tuf (through edge.releases).
"""

from __future__ import annotations

import re
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

import edge
from edge.contracts.manifest import Manifest, ManifestError
from edge.inference import ModelError, Predictor
from edge.releases import ClientLimits, FetchedRelease, ReleaseRejected, ReleaseUnavailable, fetch_release
from edge.shadow import ShadowResult, compare, schema_compatible
from edge.state import StateDir, StateError

__all__ = ["OutcomeKind", "ReleaseUpdater", "UpdateOutcome", "load_current", "runner_too_old"]

OutcomeKind = Literal["unchanged", "activated", "rejected", "unavailable", "blocked"]
Labelled = Callable[[], tuple[np.ndarray, Sequence[object]]]


@dataclass(frozen=True)
class UpdateOutcome:
    kind: OutcomeKind
    version: int | None  # the version the channel points at (None when the repository was not read)
    detail: str
    seconds: float
    shadow: ShadowResult | None = None  # the on-device comparison, when one ran


class _Refused(Exception):
    """The candidate cannot be activated on this device; the message says why (``shadow``: the comparison
    that refused it, when it was the shadow rule)."""

    def __init__(self, reason: str, shadow: ShadowResult | None = None) -> None:
        super().__init__(reason)
        self.shadow = shadow


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", text.split("+")[0])[:4]]
    return tuple(parts + [0] * (4 - len(parts)))


def runner_too_old(min_runner_version: str, runner_version: str = edge.__version__) -> bool:
    """True when this runner is older than a manifest's ``min_runner_version``."""
    return _version_tuple(runner_version) < _version_tuple(min_runner_version)


def load_current(state: StateDir) -> Predictor | None:
    """The active release's Predictor, from disk only (no network, no TUF); None when nothing is active.

    When the active release cannot be loaded and a previous one exists, rolls back to it."""
    folder = state.current_folder()
    if folder is None:
        return None
    try:
        return Predictor.from_folder(folder)
    except (ManifestError, ModelError, OSError) as exc:
        if state.previous_folder() is None:
            raise
        state.rollback(f"active release cannot be loaded: {exc}")
        current = state.current_folder()
        return None if current is None else Predictor.from_folder(current)


class ReleaseUpdater:
    """Polls one channel for this device and activates what passes validation (see the module docstring).

    ``labelled()`` returns the device's labelled rows (2-D array in feature order, labels); called once
    per candidate. ``on_activate(predictor)`` is called after every activation, ``on_rollback(predictor)``
    after every rollback (default: ``on_activate``). ``current``
    returns the Predictor in service (default: the one this updater last activated, else loaded from
    ``state``); ``feature_names`` is checked against a candidate when nothing is active yet. ``tls``
    returns the TLS context for https repositories, asked at each poll (a renewed certificate is used
    from the next poll on).
    """

    def __init__(
        self,
        state: StateDir,
        metadata_url: str,
        targets_url: str,
        channel: str,
        trusted_root: bytes,
        limits: ClientLimits,
        labelled: Labelled,
        on_activate: Callable[[Predictor], None],
        *,
        current: Callable[[], Predictor | None] | None = None,
        feature_names: Sequence[str] | None = None,
        on_rollback: Callable[[Predictor], None] | None = None,
        tls: Callable[[], ssl.SSLContext | None] | None = None,
    ) -> None:
        self.state = state
        self.metadata_url = metadata_url
        self.targets_url = targets_url
        self.channel = channel
        self._root = trusted_root
        self.limits = limits
        self._labelled = labelled
        self._on_activate = on_activate
        self._on_rollback = on_rollback or on_activate
        self._current = current
        self._feature_names = None if feature_names is None else list(feature_names)
        self._serving: Predictor | None = None
        self._tls = tls
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReleaseUpdater(state={self.state!r}, channel={self.channel!r}, metadata_url={self.metadata_url!r})"

    # -- polling --

    def poll_once(self) -> UpdateOutcome:
        """One update round; never raises for a bad or unreachable release (see ``UpdateOutcome.kind``)."""
        with self._lock:
            started = time.monotonic()

            def outcome(kind: OutcomeKind, version: int | None, detail: str,
                        shadow: ShadowResult | None = None) -> UpdateOutcome:
                return UpdateOutcome(kind, version, detail, time.monotonic() - started, shadow)

            active = self.state.current_version()
            blocked = self.state.blocked_versions()
            try:
                fetched = self._fetch(active, blocked)
            except ReleaseRejected as exc:
                self.state.record("release_rejected", None, f"repository: {exc}")
                return outcome("rejected", None, f"repository: {exc}")
            except ReleaseUnavailable as exc:
                return outcome("unavailable", None, str(exc))
            version = fetched.version
            if not fetched.changed:
                if str(version) in blocked:
                    return outcome("blocked", version, f"release {version} is blocked: {blocked[str(version)]}")
                return outcome("unchanged", version, f"release {version} is active")
            assert fetched.folder is not None and fetched.manifest is not None
            try:
                predictor, shadow = self._validate(fetched.manifest, fetched.folder, active)
            except _Refused as exc:
                reason = str(exc)
                self.state.block(str(version), reason)
                self.state.quarantine(fetched.folder, f"release {version} refused: {reason}")
                return outcome("rejected", version, reason, exc.shadow)
            self.state.install(fetched.folder)
            self.state.activate(str(version))
            shutil.rmtree(fetched.folder, ignore_errors=True)  # a verified copy, now installed
            self._serving = predictor
            self._on_activate(predictor)
            detail = shadow.reason if shadow is not None else "rollback ordered by the channel"
            return outcome("activated", version, detail, shadow)

    def _fetch(self, active: str | None, blocked: dict[str, str]) -> FetchedRelease:
        root = None if (self.state.tuf_dir / "root.json").is_file() else self._root
        current = int(active) if active is not None and active.isdigit() else None
        skip = {int(v) for v in blocked if v.isdigit()}
        return fetch_release(self.state.tuf_dir, self.metadata_url, self.targets_url, self.channel,
                             self.state.staging_dir, root, self.limits, current, skip,
                             tls=None if self._tls is None else self._tls())

    def _validate(self, manifest: Manifest, folder: Path, active: str | None
                  ) -> tuple[Predictor, ShadowResult | None]:
        if runner_too_old(manifest.min_runner_version):
            raise _Refused(f"needs runner {manifest.min_runner_version} or newer (this is {edge.__version__})")
        current = self._current_predictor()
        reference = current.manifest if current is not None else self._feature_names
        problem = schema_compatible(manifest, reference)
        if problem is not None:
            raise _Refused(f"schema: {problem}")
        try:
            candidate = Predictor.from_folder(folder)
        except (ManifestError, ModelError, OSError) as exc:
            raise _Refused(f"model cannot be loaded: {exc}") from None
        if active is not None and active.isdigit() and manifest.version.isdigit() \
                and int(manifest.version) < int(active):
            return candidate, None  # the cloud pointed the channel back: its rollback, not a new candidate
        x, labels = self._labelled()
        result = compare(candidate, current, x, labels, manifest.edge_policy)
        if not result.passed:
            raise _Refused(f"shadow: {result.reason}", result)
        return candidate, result

    def _current_predictor(self) -> Predictor | None:
        if self._current is not None:
            return self._current()
        version = self.state.current_version()
        if version is None:
            return None
        if self._serving is None or self._serving.version != version:
            try:
                self._serving = load_current(self.state)
            except (ManifestError, ModelError, OSError):
                self._serving = None
        return self._serving

    # -- rollback --

    def rollback(self, reason: str) -> str:
        """Serve the previous release again (built and warmed first); the current one becomes blocked.
        Returns the version now active; ``StateError`` when there is no previous release."""
        with self._lock:
            folder = self.state.previous_folder()
            if folder is None:
                raise StateError(f"no previous release to roll back to (current: {self.state.current_version()})")
            predictor = Predictor.from_folder(folder)
            version = self.state.rollback(reason)
            self._serving = predictor
            self._on_rollback(predictor)
            return version
