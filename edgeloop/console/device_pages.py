"""Console route ``GET /console/devices/<device_id>``: one device, now and over the last 30 days.

The header says the device's channel, the version it runs, the runner policy version it applied, its health
with the reason and since when (an offline device's last word is shown as "last said ...", never as current),
when it was last seen and its certificate and token state, all as the fleet document words them
(hub.fleet_document). Then its history (hub.store.device_history): the versions it activated (a timeline: from
when until the next), rejections with the shadow numbers the runner gave, runner policies it refused
(``config_rejected``, with the version and reason), rollbacks, every model event in time order, uploads per
hour or per day (rows and batches, bar charts), and its largest feature drift and rolling accuracy over time
(line charts with the loop's drift threshold, ``loop.monitor.drift_psi``, and the device's accuracy floor,
``release.edge_policy.accuracy_floor``, from params.yaml when set). Unknown device: a 404 page. Every value a
device sent is escaped (layout.esc; the charts escape their text).
Leaves out the page shell and login (edgeloop.console.layout, edgeloop.console.auth) and the fleet list.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from edge.contracts.layout import Paths
from edgeloop.console.auth import Operator, PageError, console_router, operator
from edgeloop.console.charts import bar_chart, line_chart
from edgeloop.console.layout import badge, esc, fmt_time, page, table
from hub.fleet_document import build_fleet
from hub.schemas.fleet import FleetDevice
from hub.store.device_history import (
    HistoryEvent,
    TrendPoint,
    UploadBucket,
    read_events,
    read_trend,
    read_upload_buckets,
)
from hub.store.estimates import load_estimates
from hub.store.fleet import FleetRow, read_device_row

__all__ = ["HISTORY_DAYS", "History", "Thresholds", "device_body", "read_page_history", "router", "thresholds_of"]

router = console_router()

HISTORY_DAYS = 30  # what the page shows (the hub keeps samples this long: hub.store.device_history)
EXPIRING_DAYS = 14  # a certificate ending sooner is shown as "expiring"
MOST_POINTS = 720  # a line chart draws about this many points at most (runs of samples merged by the database)


@dataclass(frozen=True)
class Thresholds:
    drift_psi: float | None  # params.yaml loop.monitor.drift_psi
    accuracy_floor: float | None  # params.yaml release.edge_policy.accuracy_floor


_thresholds: dict[Path, tuple[float, Thresholds]] = {}
_thresholds_lock = threading.Lock()


def _number(raw: Any, *keys: str) -> float | None:
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def thresholds_of(params: Path) -> Thresholds:
    """The drift threshold and accuracy floor in ``params`` (read again when the file changes); None each
    when the file or the key is missing or not a number."""
    import yaml

    try:
        mtime = params.stat().st_mtime
    except OSError:
        return Thresholds(None, None)
    with _thresholds_lock:
        cached = _thresholds.get(params)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    found = Thresholds(_number(raw, "loop", "monitor", "drift_psi"),
                       _number(raw, "release", "edge_policy", "accuracy_floor"))
    with _thresholds_lock:
        _thresholds[params] = (mtime, found)
    return found


# ---------------------------------------------------------------- the header
def _certificate(device: FleetDevice, row: FleetRow, now: datetime) -> str:
    token = "revoked" if row.revoked else f"token issued {fmt_time(row.token_issued_at)}"
    ends = device.certificate_not_after
    if ends is None:
        certificate = badge("none", "muted") + " token only"
    elif ends <= now:
        certificate = badge("expired") + f" {esc(fmt_time(ends))}"
    elif ends - now <= timedelta(days=EXPIRING_DAYS):
        certificate = badge("expiring") + f" {esc(fmt_time(ends))}"
    else:
        certificate = badge("valid") + f" until {esc(fmt_time(ends))}"
    return f"{certificate}<br><span class=muted>{esc(token)}</span>"


def _health(device: FleetDevice) -> str:
    if device.health is not None:
        words = badge(device.health)
        if device.health_reason:
            words += f' <span class="reason">{esc(device.health_reason)}</span>'
        if device.health_since is not None:
            words += f" <span class=muted>since {esc(fmt_time(device.health_since))}</span>"
        return words
    if device.last_said:
        return f'{badge(device.status)} <span class="muted">{esc(device.last_said)}</span>'
    return badge(device.status)


def _card(label: str, value_html: str) -> str:
    return f'<div class="card"><div class="muted">{esc(label)}</div><div>{value_html}</div></div>'


def _header(device: FleetDevice, row: FleetRow, now: datetime, limits: Thresholds) -> str:
    seen = "never"
    if device.last_seen is not None:
        age = int((now - device.last_seen).total_seconds())
        seen = f"{esc(fmt_time(device.last_seen))}<br><span class=muted>{esc(_age(age))} ago</span>"
    status = badge("revoked") if row.revoked else badge(device.status)
    accuracy = "—"
    if device.estimated_accuracy is not None:
        est = device.estimated_accuracy
        accuracy = f"{est.value:.3f} <span class=muted>[{est.low:.3f}, {est.high:.3f}], {est.rows} rows</span>"
    drift = "—" if device.max_drift is None else f"{esc(device.max_drift.feature)} {device.max_drift.psi:.3f}"
    if device.max_drift is not None and limits.drift_psi is not None:
        above = abs(device.max_drift.psi) > limits.drift_psi
        drift += f"<br><span class=muted>{'above' if above else 'within'} threshold {limits.drift_psi:g}</span>"
    cards = [
        _card("Status", status), _card("Channel", f"<strong>{esc(device.channel)}</strong>"),
        _card("Version", f'<strong class="big">{esc(device.model_version or "—")}</strong>'),
        _card("Runner policy", f"<strong>{esc(device.config_version or '—')}</strong>"),
        _card("Health", _health(device)), _card("Last seen", seen),
        _card("Largest drift (PSI)", drift), _card("Backlog", esc("—" if device.backlog is None else device.backlog)),
        _card("Estimated accuracy", accuracy), _card("Certificate / token", _certificate(device, row, now)),
    ]
    return f'<h1>Device <code>{esc(device.device_id)}</code></h1><div class="cards">{"".join(cards)}</div>'


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"


# ---------------------------------------------------------------- the history
def _events_of(history: History, kind: str) -> list[HistoryEvent]:
    return [e for e in history.events if e.kind == kind]


def _timeline(history: History) -> str:
    """Each activation until the next activation or rollback ("rolled back" then), the newest "now"."""
    changes = [e for e in history.events if e.kind in ("activated", "rolled_back")]
    rows = []
    for i, event in enumerate(changes):
        if event.kind != "activated":
            continue
        end = changes[i + 1] if i + 1 < len(changes) else None
        until = "now" if end is None else fmt_time(end.at) + (" (rolled back)" if end.kind == "rolled_back" else "")
        rows.append([f"<strong>{esc(event.version or '—')}</strong>", esc(fmt_time(event.at)), esc(until),
                     esc(event.detail)])
    return table(["Version", "Activated", "Until", "Why"], rows, empty="no activation reported yet")


def _rejections(history: History) -> str:
    rows = [[esc(e.version or "—"), esc(fmt_time(e.at)), f'<span class="reason">{esc(e.detail)}</span>']
            for e in _events_of(history, "rejected")]
    return table(["Version", "Rejected", "Shadow numbers"], rows, empty="no rejection reported")


def _policy_rejections(history: History) -> str:
    rows = [[esc(e.version or "—"), esc(fmt_time(e.at)), f'<span class="reason">{esc(e.detail)}</span>']
            for e in _events_of(history, "config_rejected")]
    return table(["Policy version", "Refused", "Reason"], rows, empty="no runner policy refused")


def _rollbacks(history: History) -> str:
    rows = [[esc(e.version or "—"), esc(fmt_time(e.at)), esc(e.detail)] for e in _events_of(history, "rolled_back")]
    return table(["Rolled back from", "When", "Detail"], rows, empty="no rollback reported")


def _all_events(history: History) -> str:
    rows = [[esc(fmt_time(e.at)), badge(e.kind.replace("_", " ")), esc(e.version or "—"), esc(e.detail),
             f"<span class=muted>{esc(fmt_time(e.received_at))}</span>"] for e in history.events]
    return table(["When (device clock)", "Event", "Version", "Detail", "Heard at"], rows, empty="no events yet")


def _uploads(unit: str, buckets: Sequence[UploadBucket]) -> str:
    rows = bar_chart([(b.start, b.rows) for b in buckets], title=f"Rows uploaded per {unit}", y_label="rows")
    batches = bar_chart([(b.start, b.batches) for b in buckets], title=f"Batches uploaded per {unit}",
                        y_label="batches", colour="#009E73")
    total_rows, total_batches = sum(b.rows for b in buckets), sum(b.batches for b in buckets)
    return (f"<p class=muted>{total_batches} batches, {total_rows} rows in the last {HISTORY_DAYS} days.</p>"
            f"{rows}{batches}")


def _trends(trend: Sequence[TrendPoint], limits: Thresholds) -> str:
    drift = [(p.at, p.drift_psi) for p in trend if p.drift_psi is not None]
    accuracy = [(p.at, p.rolling_accuracy) for p in trend if p.rolling_accuracy is not None]
    drift_lines = [] if limits.drift_psi is None else [(limits.drift_psi, "drift threshold")]
    floor_lines = [] if limits.accuracy_floor is None else [(limits.accuracy_floor, "accuracy floor")]
    drift_chart = line_chart({"largest feature PSI": drift}, title="Largest feature drift (PSI) over time",
                             y_label="PSI", thresholds=drift_lines)
    accuracy_chart = line_chart({"rolling accuracy": accuracy}, title="Rolling accuracy over time",
                                y_label="accuracy", thresholds=floor_lines)
    samples = sum(p.samples for p in trend)
    note = "" if samples == len(trend) else (
        f"<p class=muted>{samples} samples drawn as {len(trend)} points: the largest drift and the lowest "
        f"accuracy of each run of samples.</p>")
    return f"{drift_chart}{accuracy_chart}{note}"


@dataclass(frozen=True)
class History:
    """What the page shows of a device's past (hub.store.device_history reads it)."""

    events: list[HistoryEvent]
    trend: list[TrendPoint]
    upload_unit: str
    uploads: list[UploadBucket]


def read_page_history(engine: Any, device_id: str, now: datetime) -> History:
    since = now - timedelta(days=HISTORY_DAYS)
    unit, uploads = read_upload_buckets(engine, device_id, since, now)
    return History(read_events(engine, device_id), read_trend(engine, device_id, since, MOST_POINTS), unit, uploads)


def device_body(device: FleetDevice, row: FleetRow, history: History, limits: Thresholds, now: datetime) -> str:
    """The page's body (HTML) for ``device``."""
    return "".join([
        '<p><a href="/console/fleet">← Fleet</a></p>', _header(device, row, now, limits),
        "<h2>Versions activated</h2>", _timeline(history),
        "<h2>Rejections</h2>", _rejections(history),
        "<h2>Runner policies refused</h2>", _policy_rejections(history),
        "<h2>Rollbacks</h2>", _rollbacks(history),
        "<h2>Drift and accuracy</h2>", _trends(history.trend, limits),
        "<h2>Uploads</h2>", _uploads(history.upload_unit, history.uploads),
        "<h2>Every model event, in time order</h2>", _all_events(history),
    ])


@router.get("/console/devices/{device_id}")
def device_page(device_id: str, request: Request, who: Operator = Depends(operator)) -> Response:  # noqa: B008
    """One device's page (a logged-in operator); 404 page when no such device is registered."""
    hub = request.app.state
    row = read_device_row(hub.sessions, device_id)
    if row is None:
        raise PageError(404, "Device not found", f"No device {device_id!r} is registered with this hub.")
    now = hub.clock.now()
    device = build_fleet([row], now, hub.settings.section.stale_after_s, load_estimates(hub.settings.estimates)
                         ).devices[0]
    history = read_page_history(hub.engine, device_id, now)
    limits = thresholds_of(Paths.at(hub.settings.root).params)
    return page(f"Device {device_id}", device_body(device, row, history, limits, now), who, "fleet")
