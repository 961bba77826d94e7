"""Acting on a runner's state dir from outside the daemon: ``edge-runner rollback`` and stream mode's model.

``request_rollback`` rolls back through the running daemon when there is one (it writes
``rollback.request``, which the daemon's watchdog picks up within a second) and otherwise directly on
the state dir under its lock. ``load_active_predictor`` loads what ``current`` points at. Leaves out the
daemon itself (edge.runner).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from edge.atomic import write_text_atomic
from edge.config import RunnerConfig
from edge.contracts.manifest import ManifestError
from edge.heartbeat import utc_now
from edge.inference import ModelError, Predictor
from edge.state import StateDir, StateError

__all__ = ["ROLLBACK_REQUEST", "RollbackResult", "RunnerError", "load_active_predictor", "read_request",
           "request_rollback"]

ROLLBACK_REQUEST = "rollback.request"


class RunnerError(Exception):
    """The runner cannot start or act; the message says why and what to do."""


def load_active_predictor(config: RunnerConfig) -> Predictor:
    """The model ``current`` points at, for commands that only score (stream mode)."""
    folder = StateDir(config.state_dir).current_folder()
    if folder is None:
        raise RunnerError(f"no model is active in {config.state_dir} yet: run `edge-runner run` until it has "
                          f"pulled a release")
    try:
        return Predictor.from_folder(folder)
    except (ManifestError, ModelError, OSError) as exc:
        raise RunnerError(f"the active model in {folder} cannot be loaded: {exc}") from None


def read_request(path: Path) -> str:
    """The reason written in a rollback request file (a default when it cannot be read)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return str(raw.get("reason", "rolled back by hand"))[:400]
    except (OSError, ValueError, AttributeError):
        return "rolled back by hand"


@dataclass(frozen=True)
class RollbackResult:
    from_version: str | None
    to_version: str | None


def request_rollback(config: RunnerConfig, reason: str, wait_s: float = 15.0) -> RollbackResult:
    """Roll back: through the running daemon when there is one (a request file it picks up within a
    second), else directly on the state dir."""
    state = StateDir(config.state_dir)
    before = state.current_version()
    if state.previous_version() is None:
        raise RunnerError(f"nothing to roll back to: {config.state_dir} has no previous release "
                          f"(current: {before or 'none'})")
    try:
        handle = state.lock()
    except StateError:
        write_text_atomic(config.state_dir / ROLLBACK_REQUEST, json.dumps({"reason": reason, "at": utc_now()}))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not (config.state_dir / ROLLBACK_REQUEST).exists() and state.current_version() != before:
                return RollbackResult(before, state.current_version())
            time.sleep(0.1)
        raise RunnerError(f"the running edge-runner did not roll back within {wait_s:g} s; is it stuck? "
                          f"(request left at {config.state_dir / ROLLBACK_REQUEST})") from None
    try:
        version = state.rollback(reason)
    finally:
        handle.release()
    return RollbackResult(before, version)
