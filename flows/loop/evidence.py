"""Gather what the soak rules look at: the release repository, the hub's fleet and the landing zone.

``gather_evidence(params, paths)`` returns a ``flows.loop.promotion.SoakEvidence``: which release each
channel points at and when ``loop.promotion.from_channel`` moved to it (the release repository's
``history.jsonl``), the hub's fleet (``GET /v1/fleet`` through ``flows.hub_client``: online
from-channel devices running the candidate, devices that blocked or rolled it back), the labelled rows
landed since then per model version (IPW accuracy, ``flows.loop.estimates``) and the candidate's gate
accuracy. A hub that cannot be asked is recorded (``fleet_error``), never raised: the rules then wait.

Leaves out: the rules (``flows.loop.promotion``), moving channels and logging (``flows.loop.moves``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.contracts.layout import Paths
from flows.hub_client import HubAdminClient, HubUnreachable
from flows.loop.promotion import NO_ROWS, SoakEvidence, channel_since, devices_running, rejections
from flows.params import Params

__all__ = ["gather_evidence", "read_fleet"]


def read_fleet(params: Params, paths: Paths, hub_url: str | None = None,
               token_file: Path | None = None) -> tuple[dict[str, Any], str | None]:
    """(the ``GET /v1/fleet`` document, None) or ({}, why it could not be read)."""
    try:
        client = HubAdminClient.for_project(paths.root, params.hub, url=hub_url, token_file=token_file)
        return client.fleet(), None
    except HubUnreachable as exc:
        return {}, str(exc)


def gather_evidence(params: Params, paths: Paths, hub_url: str | None = None, now: datetime | None = None,
                    token_file: Path | None = None) -> SoakEvidence:
    """Everything ``flows.loop.promotion.decide`` needs (see the module docstring)."""
    from flows.loop.estimates import accuracy, load_uploads
    from flows.releases import ReleaseConfig, is_initialised, list_releases
    from flows.releases.history import read_events

    rules = params.loop.promotion
    now = now or datetime.now(UTC)
    config = ReleaseConfig.from_params(params, paths)
    releases = list_releases(config) if is_initialised(config) else []
    on = {channel: info for info in releases for channel in info.channels}
    candidate_info, stable_info = on.get(rules.from_channel), on.get(rules.to_channel)
    candidate = None if candidate_info is None else candidate_info.version
    stable = None if stable_info is None else stable_info.version
    if candidate is None or candidate == stable:
        return SoakEvidence(now, candidate, stable, None)
    since = channel_since(read_events(config), rules.from_channel, candidate)
    fleet, fleet_error = read_fleet(params, paths, hub_url, token_file)
    versions = [str(v) for v in (candidate, stable) if v is not None]
    rows = load_uploads(paths, params, since=since, model_versions=versions)
    label = params.schema.label.name
    by_version = {str(v): frame for v, frame in rows.groupby("model_version")} if len(rows) else {}
    return SoakEvidence(
        now=now, candidate=candidate, stable=stable, on_channel_since=since,
        devices=devices_running(fleet, rules.from_channel, candidate), rejections=rejections(fleet, candidate),
        candidate_accuracy=accuracy(by_version[str(candidate)], label) if str(candidate) in by_version else NO_ROWS,
        stable_accuracy=accuracy(by_version[str(stable)], label) if str(stable) in by_version else NO_ROWS,
        gate_accuracy=candidate_info.metrics.get("accuracy") if candidate_info is not None else None,
        fleet_error=fleet_error,
    )
