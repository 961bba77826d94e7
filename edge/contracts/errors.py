"""The one exception type for user mistakes: entry points print its message in one line, no traceback.

Raised anywhere (pipeline stages, release tools, hub settings, runner config) for something the user can
fix: a bad flag, a missing file, an invalid params.yaml key, a channel that does not exist. Anything else
that escapes is a bug and keeps its traceback. Leaves out exit codes (each entry point chooses its own).
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, invalid data); the message says which."""
