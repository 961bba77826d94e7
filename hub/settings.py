"""The hub's configuration: params.yaml ``hub:`` and ``release:`` resolved against the project root,
plus environment overrides. Frozen; built once at start-up. Holds no secrets (the admin token lives in
a 0600 file; only its hash is kept in memory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flows.params import Params, Schema
from flows.paths import Paths


@dataclass(frozen=True)
class HubSettings:
    database_url: str
    landing: Path  # where uploads land: data/uploads/<device_id>/<batch_id>.<parquet|csv>
    releases: Path  # the TUF repository served read-only under /releases/
    admin_token_file: Path
    max_upload_bytes: int
    poll_interval_s: float
    stale_after_polls: float
    schema: Schema
    summaries: Path  # device summaries (aggregates-only mode): data/hub/summaries/<device_id>/<key>.json

    @classmethod
    def from_params(cls, params: Params, paths: Paths) -> HubSettings:
        hub = params.hub
        url = os.environ.get("EDGELOOP_HUB_DATABASE", hub.database)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{paths.resolve(url.removeprefix('sqlite:///'))}"  # relative to the project
        return cls(
            database_url=url,
            landing=paths.uploads,
            releases=paths.resolve(params.release.repository),
            admin_token_file=paths.resolve(hub.admin_token_file),
            max_upload_bytes=hub.max_upload_bytes,
            poll_interval_s=hub.poll_interval_s,
            stale_after_polls=hub.stale_after_polls,
            schema=params.schema,
            summaries=paths.data / "hub" / "summaries",
        )

    @property
    def stale_after_s(self) -> float:
        return self.poll_interval_s * self.stale_after_polls
