"""The one exception type for user mistakes: the CLI prints its message in one line, no traceback.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, invalid data); the message says which."""
