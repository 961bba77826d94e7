"""The cloud side's one client of the hub: where the hub is, which admin token to send, and ``GET /v1/fleet``.

Used by the loop (``flows.loop.observe`` for the monitor, ``flows.loop.evidence`` for promote-soaked), the
``edgeloop`` CLI (``fleet``) and the demo (``edgeloop.demo.run.demo_hub_client``), so the URL and token
rules live here only:

- URL: the ``url`` argument, else ``$EDGELOOP_HUB_URL``, else params.yaml ``hub:`` host and port as seen
  from this machine (a wildcard listen address means loopback; ``HubSection.local_url``);
- admin token: the ``token`` argument, else the file ``$EDGELOOP_HUB_TOKEN_FILE``, else ``hub.admin_token_file``
  resolved against the project root. The token is read when a request is made and never logged;
- for an ``https`` hub, the CA it is verified with (edge.contracts.tls.client_context: that file only,
  hostname checked): the ``ca_file`` argument, else ``$EDGELOOP_HUB_CA_FILE``, else the plant CA
  ``<hub.tls.ca_dir>/ca.pem`` resolved against the project root. ``HubSection.local_url`` is https when
  ``hub.tls`` names a certificate.

Every failure is a ``HubUnreachable`` (a ``UserError``) with one line saying what went wrong and, for
401, what to check (a hub certificate that does not verify says so too). Standard library HTTP only.
Leaves out the devices' own client (``edge.hub_client``, device credentials) and anything the hub serves
to browsers.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.hub_section import HubSection
from edge.contracts.layout import Paths
from edge.contracts.tls import client_context
from edge.contracts.wire import FLEET_PATH, JSON

__all__ = ["HUB_CA_FILE_ENV", "HUB_TOKEN_FILE_ENV", "HUB_URL_ENV", "HubAdminClient", "HubUnreachable"]

HUB_URL_ENV = "EDGELOOP_HUB_URL"
HUB_TOKEN_FILE_ENV = "EDGELOOP_HUB_TOKEN_FILE"
HUB_CA_FILE_ENV = "EDGELOOP_HUB_CA_FILE"


class HubUnreachable(UserError):
    """The hub could not be asked (down, wrong URL, wrong token, bad answer); the message says which."""


@dataclass(frozen=True)
class HubAdminClient:
    url: str  # base URL, no trailing slash
    token_file: Path | None  # where the admin token is read from (None: ``token`` was given)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    ca_file: Path | None = None  # verifies an https hub (None: plain http)

    @classmethod
    def for_project(cls, root: Path | str, hub: HubSection, url: str | None = None, token: str | None = None,
                    token_file: Path | None = None, timeout_s: float = 10.0,
                    environ: Mapping[str, str] | None = None, ca_file: Path | None = None) -> HubAdminClient:
        """The client for the project at ``root`` whose params.yaml ``hub:`` section is ``hub``."""
        environ = os.environ if environ is None else environ
        base = (url or environ.get(HUB_URL_ENV) or hub.local_url).rstrip("/")
        ca = None
        if base.lower().startswith("https://"):
            ca = ca_file or (Path(environ[HUB_CA_FILE_ENV]) if environ.get(HUB_CA_FILE_ENV) else None)
            ca = ca or Paths.at(root).resolve(hub.tls.ca_file)
        if token is not None:
            return cls(base, None, token, timeout_s, ca)
        chosen = token_file or (Path(environ[HUB_TOKEN_FILE_ENV]) if environ.get(HUB_TOKEN_FILE_ENV) else None)
        return cls(base, chosen or Paths.at(root).resolve(hub.admin_token_file), None, timeout_s, ca)

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

    def tls_context(self) -> ssl.SSLContext | None:
        """How an https hub is verified: against ``ca_file`` only, with its hostname (None for http)."""
        if self.ca_file is None:
            return None
        try:
            return client_context(self.ca_file)
        except FileNotFoundError:
            raise HubUnreachable(f"no CA file at {self.ca_file} to verify the hub at {self.url} (run `edgeloop hub "
                                 f"ca init`, or set {HUB_CA_FILE_ENV} to the CA that issued its certificate)") from None
        except (OSError, ssl.SSLError) as exc:
            raise HubUnreachable(f"the CA file {self.ca_file} cannot be used: {exc}") from None

    def get_json(self, path: str) -> dict[str, Any]:
        """``GET <url><path>`` with the admin token; the decoded JSON object."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.admin_token()}", "Accept": JSON})
        context = self.tls_context()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as response:  # noqa: S310
                document = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            hint = " (wrong admin token? it is in the hub's admin token file)" if exc.code == 401 else ""
            raise HubUnreachable(f"hub at {self.url} answered HTTP {exc.code}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise HubUnreachable(f"hub at {self.url} not trusted: {reason.verify_message or reason} (verified "
                                     f"against {self.ca_file}; set {HUB_CA_FILE_ENV} for another CA)") from None
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
