"""The hub's admin token file: read it, or create it (random, mode 0600) on the hub's first start.

Created at most once, whoever races: the token is written to a temp file (0600, fsynced) and hard-linked
to its name, which fails when the name exists; the loser reads the winner's token. So hub processes
started at once (``--workers N``, or hosts sharing the project folder) all hold the same token. The
token is returned to the caller, which keeps only a salted hash of it (hub.app). Never logs or prints
the token. Leaves out rotation (delete the file and restart every hub process).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from edge.atomic import fsync_dir

__all__ = ["load_or_create_admin_token"]

PREFIX = "ela_"


def load_or_create_admin_token(path: Path) -> tuple[str, bool]:
    """The admin token from its 0600 file, creating one on first use; (token, created)."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = f"{PREFIX}{secrets.token_urlsafe(32)}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails when the name exists: exactly one racing creator wins
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip(), False
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return token, True
