"""The one exception type for user mistakes: entry points print its message in one line, no traceback.

Raised anywhere (pipeline stages, release tools, hub settings, runner config) for something the user can
fix: a bad flag, a missing file, an invalid params.yaml key, a channel that does not exist. Anything else
that escapes is a bug and keeps its traceback. ``yaml_error_line`` words a YAML syntax error (PyYAML's, read
by attribute: no import here) as one line keeping its line and column, for every reader of params.yaml.
Leaves out exit codes (each entry point chooses its own).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["UserError", "yaml_error_line"]


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, invalid data); the message says which."""


def yaml_error_line(path: Path | str, exc: BaseException) -> str:
    """One line for a YAML syntax error that keeps where it is: 'params.yaml line 12, column 5: not valid
    YAML: mapping values are not allowed here' (lines and columns counted from 1, as editors do)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is None or not problem:
        return f"{path}: not valid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    context = getattr(exc, "context", None)
    detail = f"{problem} ({context})" if context and context != problem else problem
    return f"{path} line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {detail}"
