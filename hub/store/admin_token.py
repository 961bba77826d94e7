"""The hub's admin token file: read it, or create it (random, mode 0600) on the hub's first start.

The token is returned to the caller, which keeps only a salted hash of it (hub.app). Never logs or
prints the token. Leaves out rotation (delete the file and restart the hub).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from edge.atomic import write_text_atomic

__all__ = ["load_or_create_admin_token"]

PREFIX = "ela_"


def load_or_create_admin_token(path: Path) -> tuple[str, bool]:
    """The admin token from its 0600 file, creating one on first use; (token, created)."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = f"{PREFIX}{secrets.token_urlsafe(32)}"
    write_text_atomic(path, token + "\n", mode=0o600)
    return token, True
