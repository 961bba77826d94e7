"""The hub's settings: its own section of params.yaml plus the environment, resolved against the project root.

``HubSettings.load(root)`` reads ``root/params.yaml`` and takes only what the hub needs: the ``hub:``
section (``edge.contracts.hub_section``: listen address, database, admin token file, limits), the data
``schema:`` (upload headers are checked against it) and ``release.repository`` (the folder it serves
under ``/releases/``). The rest of params.yaml is the pipeline's business and is not read. Environment:
``EDGELOOP_HUB_DATABASE`` overrides the database URL. ``hub.tls``'s files (the hub's certificate and key,
the plant CA's folder) are resolved against the project root too. Frozen; built once at start-up. Holds
no secrets (the admin token and every private key live in 0600 files; the app keeps only the token's hash).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from edge.contracts.errors import UserError, yaml_error_line
from edge.contracts.hub_section import CA_CERT_FILE, HubSection, parse_hub_section
from edge.contracts.layout import Paths
from edge.contracts.schema import DataSchema, parse_schema
from hub.store.object_batches import ObjectLanding

__all__ = ["DATABASE_ENV", "HubSettings", "HubSettingsError"]

DATABASE_ENV = "EDGELOOP_HUB_DATABASE"


class HubSettingsError(UserError):
    """params.yaml cannot give the hub its settings; the message names the file and key."""


@dataclass(frozen=True)
class HubSettings:
    root: Path  # the project folder
    section: HubSection  # params.yaml hub: (host, port, limits, ...)
    database_url: str
    landing: Path  # where uploads land: data/uploads/<device_id>/<batch_id>.<parquet|csv>
    releases: Path  # the TUF repository served read-only under /releases/
    admin_token_file: Path
    schema: DataSchema
    summaries: Path  # device summaries (aggregates-only mode): data/hub/summaries/<device_id>/<key>.json
    estimates: Path  # the loop's fleet estimates (written by the loop's flows), shown on the fleet views
    ca_dir: Path = Path("keys/hub-ca")  # the plant CA (hub.tls.ca_dir, resolved)
    cert_file: Path | None = None  # the hub's certificate chain (hub.tls.cert_file, resolved); None: plain HTTP
    key_file: Path | None = None
    # object storage: uploads land in this bucket (params.yaml storage.uploads = s3://...) instead of ``landing``
    object_landing: ObjectLanding | None = None

    @property
    def ca_file(self) -> Path:
        """The plant CA's certificate: what verifies client certificates (and, by default, the hub)."""
        return self.ca_dir / CA_CERT_FILE

    @classmethod
    def load(cls, root: Path | str, environ: Mapping[str, str] | None = None) -> HubSettings:
        """The settings of the project at ``root`` (its params.yaml); HubSettingsError naming the key."""
        paths = Paths.at(root)
        raw = _read(paths.params)
        release = raw.get("release")
        repository = release.get("repository") if isinstance(release, dict) else None
        if not isinstance(repository, str) or not repository.strip():
            raise HubSettingsError(f"{paths.params}: release.repository: required (the folder the hub serves)")
        try:
            section = parse_hub_section(raw.get("hub"))
            schema = parse_schema(raw.get("schema"))
        except UserError as exc:
            raise HubSettingsError(f"{paths.params}: {exc}") from None
        settings = cls.build(paths, section, schema, repository, environ)
        return replace(settings, object_landing=_object_landing(paths, raw))

    @classmethod
    def build(cls, paths: Paths, section: HubSection, schema: DataSchema, repository: str,
              environ: Mapping[str, str] | None = None) -> HubSettings:
        environ = os.environ if environ is None else environ
        url = environ.get(DATABASE_ENV) or section.database
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{paths.resolve(url.removeprefix('sqlite:///'))}"  # relative to the project
        return cls(
            root=paths.root,
            section=section,
            database_url=url,
            landing=paths.uploads,
            releases=paths.resolve(repository),
            admin_token_file=paths.resolve(section.admin_token_file),
            schema=schema,
            summaries=paths.hub_summaries,
            estimates=paths.estimates,
            ca_dir=paths.resolve(section.tls.ca_dir),
            cert_file=None if section.tls.cert_file is None else paths.resolve(section.tls.cert_file),
            key_file=None if section.tls.key_file is None else paths.resolve(section.tls.key_file),
        )


def _object_landing(paths: Paths, raw: dict[str, Any]) -> ObjectLanding | None:
    """params.yaml ``storage:`` as far as the hub needs it: the bucket uploads land in (docs/storage.md)."""
    try:
        return ObjectLanding.from_section(raw.get("storage"))
    except UserError as exc:
        raise HubSettingsError(f"{paths.params}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubSettingsError(f"{path}: not found (run from the project folder, or pass --root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HubSettingsError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise HubSettingsError(yaml_error_line(path, exc)) from None
    if not isinstance(raw, dict):
        raise HubSettingsError(f"{path}: expected a mapping of sections at the top level")
    return raw
