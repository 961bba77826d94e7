"""Checks of the files a configuration names: can the runner read it, and is a secret kept private?

``unreadable(key, path)`` and ``not_private(key, path)`` return the one-line problem (naming the key and
the file, with the fix for a too-open secret) or None; the caller raises it as its own error type
(``edge.config.ConfigError``, ``edge.inputs.settings.InputsError``). Leaves out what the files hold.
"""

from __future__ import annotations

import stat
from pathlib import Path

__all__ = ["not_private", "unreadable"]


def unreadable(key: str, path: Path) -> str | None:
    """Why ``path`` cannot be read, or None when it can."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"{key}: cannot read {path}: {exc.strerror or exc}"
    return None


def not_private(key: str, path: Path) -> str | None:
    """Why ``path`` is no place for a secret (unreadable, or readable by group or others), or None."""
    problem = unreadable(key, path)
    if problem is not None:
        return problem
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{key}: {path} is readable by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
    return None
