"""Replace the top-level ``schema:`` section of params.yaml, keeping every other byte of the file.

The section is found as text: from the line ``schema:`` at column 0 to the next top-level key, less the
comment and blank lines just above that key (they describe the next section and stay with it). So the
other sections, their comments and their layout are untouched (a YAML round-trip library would move
comments that sit between sections). Before anything is written, the new text is loaded back: every other
section must be equal to before and the whole file must pass the project's params model. Then the old
file is kept as ``params.yaml.bak`` and the new one written atomically, with the old file's mode.
Leaves out producing the section (``flows.history.infer.render``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge.atomic import write_text_atomic
from flows.history.reader import HistoryError
from flows.params import ParamsError, parse_params

_TOP_KEY = re.compile(r"^(?![#\s]|---|\.\.\.)[^:]+:(\s|$)")


def _section(lines: list[str], key: str) -> tuple[int, int] | None:
    """[start, end) line numbers of the top-level ``key`` block, without the trailing comments/blanks."""
    starts = [i for i, line in enumerate(lines) if _TOP_KEY.match(line)]
    for n, start in enumerate(starts):
        if lines[start].split(":", 1)[0].strip().strip("'\"") != key:
            continue
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        return start, end
    return None


def replace_schema(params_path: Path, section: str) -> Path:
    """Write ``section`` (a ``schema:`` block) into ``params_path``; returns the backup's path."""
    try:
        old_text = params_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HistoryError(f"{params_path}: not found (run from the project folder, or pass --root)") from None
    old = yaml.safe_load(old_text)
    if not isinstance(old, dict):
        raise HistoryError(f"{params_path}: expected a mapping of sections at the top level")
    lines = old_text.splitlines(keepends=True)
    span = _section(lines, "schema")
    block = section if section.endswith("\n") else section + "\n"
    new_text = block + "\n" + old_text if span is None else "".join([*lines[: span[0]], block, *lines[span[1]:]])
    new = yaml.safe_load(new_text)
    if {k: v for k, v in new.items() if k != "schema"} != {k: v for k, v in old.items() if k != "schema"}:
        raise HistoryError(f"{params_path}: could not replace the schema section without touching the others "
                           f"(is `schema:` written in an unusual way?); paste the printed section by hand")
    try:
        parse_params(new, str(params_path))
    except ParamsError as exc:
        raise HistoryError(f"not written: {exc}") from None
    mode = params_path.stat().st_mode & 0o777
    backup = params_path.with_name(params_path.name + ".bak")
    write_text_atomic(backup, old_text, mode)
    write_text_atomic(params_path, new_text, mode)
    return backup
