"""The cloud side's one client of the hub: where the hub is, which admin token to send, and ``GET /v1/fleet``.

Used by the loop (``flows.loop.observe`` for the monitor, ``flows.loop.evidence`` for promote-soaked), the
``edgeloop`` CLI (``fleet``) and the demo (``edgeloop.demo.run.demo_hub_client``), so the URL and token
rules live here only:

- URL: the ``url`` argument, else ``$EDGELOOP_HUB_URL``, else params.yaml ``hub:`` host and port as seen
  from this machine (a wildcard listen address means loopback; ``HubSection.local_url``);
- admin token: the ``token`` argument, else the file ``$EDGELOOP_HUB_TOKEN_FILE``, else ``hub.admin_token_file``
  resolved against the project root. The token is read when a request is made and never logged.

Every failure is a ``HubUnreachable`` (a ``UserError``) with one line saying what went wrong and, for
401, what to check. Standard library HTTP only. Leaves out the devices' own client (``edge.hub_client``,
device tokens) and anything the hub serves to browsers.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.hub_section import HubSection
from edge.contracts.layout import Paths
from edge.contracts.wire import FLEET_PATH, JSON

__all__ = ["HUB_TOKEN_FILE_ENV", "HUB_URL_ENV", "HubAdminClient", "HubUnreachable"]

HUB_URL_ENV = "EDGELOOP_HUB_URL"
HUB_TOKEN_FILE_ENV = "EDGELOOP_HUB_TOKEN_FILE"


class HubUnreachable(UserError):
    """The hub could not be asked (down, wrong URL, wrong token, bad answer); the message says which."""


@dataclass(frozen=True)
class HubAdminClient:
    url: str  # base URL, no trailing slash
    token_file: Path | None  # where the admin token is read from (None: ``token`` was given)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0

    @classmethod
    def for_project(cls, root: Path | str, hub: HubSection, url: str | None = None, token: str | None = None,
                    token_file: Path | None = None, timeout_s: float = 10.0,
                    environ: Mapping[str, str] | None = None) -> HubAdminClient:
        """The client for the project at ``root`` whose params.yaml ``hub:`` section is ``hub``."""
        environ = os.environ if environ is None else environ
        base = url or environ.get(HUB_URL_ENV) or hub.local_url
        if token is not None:
            return cls(base.rstrip("/"), None, token, timeout_s)
        chosen = token_file or (Path(environ[HUB_TOKEN_FILE_ENV]) if environ.get(HUB_TOKEN_FILE_ENV) else None)
        return cls(base.rstrip("/"), chosen or Paths.at(root).resolve(hub.admin_token_file), None, timeout_s)

    def admin_token(self) -> str:
        if self.token is not None:
            return self.token
        assert self.token_file is not None  # for_project sets one of the two
        try:
            text = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise HubUnreachable(f"no admin token at {self.token_file}: {exc.strerror or exc} (the hub creates it "
                                 f"on its first start; or set {HUB_TOKEN_FILE_ENV})") from None
        if not text:
            raise HubUnreachable(f"the admin token file {self.token_file} is empty")
        return text

    def get_json(self, path: str) -> dict[str, Any]:
        """``GET <url><path>`` with the admin token; the decoded JSON object."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.admin_token()}", "Accept": JSON})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (http(s) URL)
                document = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            hint = " (wrong admin token? it is in the hub's admin token file)" if exc.code == 401 else ""
            raise HubUnreachable(f"hub at {self.url} answered HTTP {exc.code}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HubUnreachable(f"hub at {self.url} unreachable: {reason}") from None
        except ValueError as exc:
            raise HubUnreachable(f"hub at {self.url} sent something that is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise HubUnreachable(f"hub at {self.url} sent a JSON {type(document).__name__}, expected an object")
        return document

    def fleet(self) -> dict[str, Any]:
        """The ``GET /v1/fleet`` document: every device, the fleet estimates, who runs which release."""
        document = self.get_json(FLEET_PATH)
        if not isinstance(document.get("devices"), list):
            raise HubUnreachable(f"hub at {self.url} sent a fleet without a device list")
        return document
