"""A real hub for tests: ``hub.embedded`` (uvicorn on 127.0.0.1 in a background thread) in a test root.

``running_hub(root, port=None, clock=None)`` copies params.yaml into ``root`` when it is missing, starts
the app built from it, yields a handle with the base URL (on ``port`` when given, so a test can restart
a hub where devices expect it), the admin token, the app and the hub's clock, and stops the server
afterwards. Pass a ``ManualClock`` to decide how much time passes (``clock.advance(seconds)``) instead
of sleeping: heartbeat times, staleness, ``stored_at`` and the fleet's ``generated_at`` all follow it.
With ``hub.tls`` in params.yaml (``hub_project(root, tls=pki.tls_params(...))``, edgeloop.testkit.pki)
the hub serves HTTPS exactly as ``edgeloop hub serve`` does and the URL is ``https://127.0.0.1:<port>``.
``hub_project`` writes a project's params.yaml with overrides and, when asked, an initialised release
repository (enrollment hands its root.json to devices).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from edgeloop.testkit.project import REPO, override, repo_params_raw
from hub.clock import Clock, ManualClock
from hub.embedded import EmbeddedHub, embedded_hub, free_port

__all__ = ["HubHandle", "ManualClock", "free_port", "hub_project", "running_hub"]

HubHandle = EmbeddedHub


@contextmanager
def running_hub(root: Path, port: int | None = None, clock: Clock | None = None,
                console: bool = False) -> Iterator[HubHandle]:
    """A real hub on 127.0.0.1 for ``root`` (params.yaml copied from the repository when missing); with
    ``console`` the operator console is mounted too (edgeloop.console)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "params.yaml").exists():
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    extensions = ()
    if console:
        from edgeloop.console import mount

        extensions = (mount,)
    with embedded_hub(root, port, clock, extensions) as hub:
        yield hub


def hub_project(root: Path, tls: dict[str, Any] | None = None, repository: bool = False,
                **dotted: Any) -> Path:
    """``root`` with a params.yaml for a hub: the repository's, ``hub.tls`` = ``tls`` when given, the
    ``{"hub.port": 8701}``-style overrides, and (``repository``) an initialised release repository."""
    root.mkdir(parents=True, exist_ok=True)
    raw = override(repo_params_raw(), dotted)
    if tls is not None:
        raw["hub"]["tls"] = tls
    if repository:
        from edgeloop.testkit.releases import release_config
        from flows.releases.maintenance import init_repository

        config = release_config(root / "release-project")
        init_repository(config)
        raw["release"]["repository"] = str(config.repository)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root
