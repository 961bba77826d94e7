"""Gather what the monitor's triggers look at: the hub's fleet, the landing zone and the releases.

``gather(paths, params, last_fired)`` (``last_fired``: the newest fired retrain decision, of any source)
returns ``flows.loop.triggers.Observations``:

- the fleet from the hub's ``GET /v1/fleet`` (``flows.hub_client``: its URL and admin token rules), one
  ``DeviceState`` per device. Hub unreachable, a missing token or a bad answer: ``devices=None`` with
  the reason;
- the labelled rows landed since the last training in the landing zones (``flows.loop.landing``:
  ``data/uploads`` and the buckets of ``storage.uploads`` and ``ingest.sources``; file modification
  time or object LastModified; a bucket object is read once, then remembered);
- the IPW accuracy (flows.loop.estimates) of the rows made by the models the channels point at now,
  from batches landed since the newest of those releases was created (the same listing);
- the model file's time (``data/model/model.onnx``), the last training when the log has none;
- for the fresh-row requirement (``flows.loop.fresh_rows``): the Kish effective number of the fresh rows
  (edge rows weigh 1/p, others 1), the newest current release's holdout accuracy (the level before a
  drop) and the split and gate params the gate judges with.

Nothing here raises on a missing or unreadable file or an unreachable hub: each part that cannot be
had is recorded as unknown with its reason, and the other parts still work.
Leaves out: deciding (flows.loop.triggers) and writing anything (but what ``flows.loop.landing`` keeps of
bucket objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.release_layout import MODEL_FILE
from edge.contracts.wire import DEVICE_STATUSES
from flows.hub_client import HubAdminClient, HubUnreachable
from flows.loop.fresh_rows import FreshRule, effective_rows
from flows.loop.landing import Landed, labelled_rows, landed_batches, landing_zones
from flows.loop.triggers import DeviceState, Observations, last_training, parse_time
from flows.params import Params

__all__ = ["count_labelled_rows", "current_accuracy", "fleet_devices", "gather", "model_time"]

_, ONLINE, _ = DEVICE_STATUSES  # never seen, online, offline: a device status in the fleet document


def fleet_devices(client: HubAdminClient) -> tuple[DeviceState, ...]:
    """Every registered device of the hub; HubUnreachable with the reason otherwise."""
    document = client.fleet()
    try:
        return tuple(_device(d) for d in document["devices"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HubUnreachable(f"hub at {client.url} sent an unreadable fleet: {exc}") from None


def _device(raw: Mapping[str, Any]) -> DeviceState:
    beat = raw.get("last_heartbeat") or {}
    state = beat.get("state") or {}
    drift = state.get("drift") or {}
    values = [float(v) for v in drift.values() if isinstance(v, int | float)]
    active = raw.get("status") == ONLINE and not raw.get("revoked") and bool(beat)
    return DeviceState(str(raw["device_id"]), str(raw.get("channel", "")), active, max(values) if values else None)


def count_labelled_rows(paths: Paths, params: Params, since: datetime | None,
                        batches: list[Landed] | None = None) -> int:
    """Rows with a label in batches landed after ``since`` (all when None); unreadable batches count 0.
    ``batches``: the landing zones' batches when already listed (``flows.loop.landing``)."""
    if batches is None:
        batches = landed_batches(landing_zones(params, paths))
    return sum(labelled_rows(b, params, paths) for b in batches if since is None or b.landed > since)


def current_accuracy(paths: Paths, params: Params, batches: list[Landed] | None = None) -> dict[str, Any]:
    """IPW accuracy of the channel models' rows since the newest of their releases: ``{"value", "low",
    "high", "rows", "versions", "since", "note"}`` (value None with a note when it cannot be had)."""
    from flows.loop.estimates import accuracy, load_uploads
    from flows.releases import ReleaseConfig, is_initialised, list_releases

    config = ReleaseConfig.from_params(params, paths)
    empty: dict[str, Any] = {"value": None, "low": None, "high": None, "rows": 0, "versions": [], "since": None}
    try:
        if not is_initialised(config):
            return empty | {"note": "no release repository yet"}
        current = [r for r in list_releases(config) if r.channels]
    except Exception as exc:  # noqa: BLE001 (an unattended monitor records why, and judges the rest)
        return empty | {"note": f"release repository unreadable: {exc}"}
    if not current:
        return empty | {"note": "no channel points at a release yet"}
    versions = sorted(str(r.version) for r in current)
    times = [t for t in (parse_time(r.created) for r in current) if t is not None]
    since = max(times) if times else None
    out = empty | {"versions": versions, "since": None if since is None else since.isoformat()}
    try:
        frame = load_uploads(paths, params, since=since, model_versions=versions, batches=batches)
    except (OSError, UserError) as exc:
        return out | {"note": f"landing zone unreadable: {exc}"}
    estimate = accuracy(frame, params.schema.label.name) if len(frame) else None
    if estimate is None or estimate.value is None:
        return out | {"note": f"no labelled edge rows from release(s) {', '.join(versions)} yet"}
    return out | {"value": estimate.value, "low": estimate.low, "high": estimate.high, "rows": estimate.rows,
                  "note": None}


def release_accuracy(paths: Paths, params: Params) -> float | None:
    """The holdout accuracy the newest release a channel points at was gated with (None when unknown)."""
    from flows.releases import ReleaseConfig, is_initialised, list_releases

    config = ReleaseConfig.from_params(params, paths)
    try:
        current = [r for r in list_releases(config) if r.channels] if is_initialised(config) else []
    except Exception:  # noqa: BLE001 (current_accuracy records why the repository is unreadable)
        return None
    newest = max(current, key=lambda r: r.version, default=None)
    value = None if newest is None else newest.metrics.get("accuracy")
    return float(value) if isinstance(value, int | float) else None


def fresh_effective(paths: Paths, params: Params, since: datetime | None, rows: int | None,
                    batches: list[Landed] | None) -> float | None:
    """Kish's effective number of the ``rows`` fresh labelled rows (edge rows weigh 1/p); None when unknown."""
    import pandas as pd

    from edge.contracts.record import INCLUSION_PROBABILITY
    from flows.loop.estimates import load_uploads

    if rows is None or batches is None:
        return None
    try:
        frame = load_uploads(paths, params, since=since, batches=[b for b in batches if since is None
                                                                  or b.landed > since])
    except (OSError, UserError):
        return None
    p = pd.to_numeric(frame[INCLUSION_PROBABILITY], errors="coerce").to_numpy(dtype=float)
    return round(effective_rows(rows, p), 1)


def model_time(paths: Paths) -> datetime | None:
    try:
        return datetime.fromtimestamp((paths.model / MODEL_FILE).stat().st_mtime, UTC)
    except OSError:
        return None


def gather(paths: Paths, params: Params, last_fired: Mapping[str, Any] | None, url: str | None = None,
           timeout: float = 10.0, token_file: Path | None = None) -> Observations:
    """Observe the fleet, the landing zone and the releases once (see the module docstring); ``url`` and
    ``token_file`` override the hub client's own rules (``flows.hub_client``)."""
    devices: tuple[DeviceState, ...] | None = None
    error = None
    try:
        client = HubAdminClient.for_project(paths.root, params.hub, url=url, token_file=token_file,
                                            timeout_s=timeout)
        devices = fleet_devices(client)
    except HubUnreachable as exc:
        error = str(exc)
    trained_file = model_time(paths)
    since, _ = last_training(last_fired, trained_file)
    rows: int | None = None
    batches: list[Landed] | None = None
    try:  # listed once for both counts; unreadable: the data-volume trigger is unknown, the accuracy says why
        batches = landed_batches(landing_zones(params, paths))
        rows = count_labelled_rows(paths, params, since, batches)
    except (OSError, UserError):
        pass
    acc = current_accuracy(paths, params, batches)
    return Observations(
        devices=devices, fleet_error=error, new_labelled_rows=rows, accuracy=acc["value"],
        accuracy_rows=acc["rows"], accuracy_interval=(acc["low"], acc["high"]),
        accuracy_versions=tuple(acc["versions"]), accuracy_note=acc["note"], model_time=trained_file,
        fresh_effective_rows=fresh_effective(paths, params, since, rows, batches),
        accuracy_before=release_accuracy(paths, params), fresh_rule=FreshRule.from_params(params),
    )
