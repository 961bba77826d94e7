"""Console routes: the fleet page (``GET /console/fleet``; ``/console/`` redirects there).

Built in the hub's own process from the same parts as ``GET /v1/fleet`` (hub.store.fleet rows, the loop's
estimates, hub.fleet_document at the hub clock's now). A summary (online/offline/never seen, health,
fleet accuracy with its interval, versions in use), a filter form (channel, status, health, version,
text in the id; plain GET) and one row per device, problems first: health with its reason and since
when, largest drift against the loop's ``drift_psi``, estimated accuracy with interval, backlog, last
seen, certificate or token state. Leaves out one device's history (device_pages) and paging (1,000
devices render in one page well under the 300 ms budget: bench/console.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from edgeloop.console.auth import Operator, console_router, operator
from edgeloop.console.layout import badge, esc, fmt_time, page, table
from hub.fleet_document import build_fleet
from hub.schemas.fleet import Fleet, FleetDevice, Interval
from hub.settings import HubSettings
from hub.store.estimates import load_estimates
from hub.store.fleet import read_fleet_rows

__all__ = ["Filters", "fleet_document", "render_fleet", "router"]

router = console_router()

EXPIRING_S = 14 * 86400  # a certificate this close to expiry is flagged
STATUS_WORDS = ("online", "offline", "never seen")
HEALTH_WORDS = ("ok", "degraded", "error")
_drift_cache: dict[Path, tuple[float, float | None]] = {}


@dataclass(frozen=True)
class Filters:
    channel: str = ""
    status: str = ""
    health: str = ""
    version: str = ""
    q: str = ""

    def keep(self, device: FleetDevice) -> bool:
        if self.channel and device.channel != self.channel:
            return False
        if self.status and device.status != self.status:
            return False
        if self.health and (device.health or "unknown") != self.health:
            return False
        if self.version and (device.model_version or "") != self.version:
            return False
        return not self.q or self.q.lower() in device.device_id.lower()


def drift_threshold(root: Path) -> float | None:
    """params.yaml ``loop.monitor.drift_psi`` (re-read when the file changes); None when unreadable."""
    path = root / "params.yaml"
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    cached = _drift_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        from flows.params import load_params

        value: float | None = float(load_params(path).loop.monitor.drift_psi)
    except Exception:  # noqa: BLE001 - a broken params.yaml only loses the threshold on this page
        value = None
    _drift_cache[path] = (stamp, value)
    return value


def fleet_document(request: Request) -> Fleet:
    """The fleet at the hub clock's now, as ``GET /v1/fleet`` answers it."""
    hub = request.app.state
    settings: HubSettings = hub.settings
    rows = read_fleet_rows(hub.sessions)
    return build_fleet(rows, hub.clock.now(), settings.section.stale_after_s, load_estimates(settings.estimates))


def _interval(estimate: Interval | None) -> str:
    if estimate is None:
        return '<span class="muted">no labelled rows</span>'
    rows = f" · {estimate.rows} rows" if estimate.rows else ""
    return (f"{estimate.value:.3f} <span class=muted>({estimate.low:.3f}–{estimate.high:.3f}{rows})</span>")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _since(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    same_day = moment.date() == now.date()
    return f" since {fmt_time(moment, with_date=not same_day)}"


def _health(device: FleetDevice, now: datetime) -> str:
    if device.status != "online":
        said = getattr(device, "last_said", None)
        words = badge("offline" if device.status == "offline" else "never seen")
        return words + (f'<div class="muted">{esc(said)}</div>' if said else "")
    reason = getattr(device, "health_reason", None) or ""
    since = _since(getattr(device, "health_since", None), now)
    text = badge(device.health)
    if reason or (since and device.health != "ok"):
        text += f'<div class="reason">{esc(reason)}{esc(since)}</div>'
    return text


def _drift(device: FleetDevice, threshold: float | None) -> str:
    drift = device.max_drift
    if drift is None:
        return '<span class="muted">—</span>'
    over = threshold is not None and abs(drift.psi) > threshold
    limit = "" if threshold is None else f" {'&gt;' if over else '≤'} {threshold:g}"
    mark = badge("drifting", "bad") + " " if over else ""
    return f"{mark}PSI {drift.psi:.3f}{limit} <span class=muted>({esc(drift.feature)})</span>"


def _credential(device: FleetDevice, now: datetime) -> str:
    if device.revoked:
        return badge("revoked")
    expiry = device.certificate_not_after
    if expiry is None:
        return '<span class="muted">token</span>'
    left = (expiry - now).total_seconds()
    if left <= 0:
        return badge("expired") + f" {esc(fmt_time(expiry))}"
    word = badge("expiring") + " " if left < EXPIRING_S else ""
    return f"{word}certificate until {esc(expiry.strftime('%Y-%m-%d'))}"


def _problem(device: FleetDevice, now: datetime, threshold: float | None) -> int:
    """Lower: more urgent (sort key)."""
    if device.revoked:
        return 10  # retired on purpose: last
    if device.status == "online" and device.health == "error":
        return 0
    if device.status == "online" and device.health == "degraded":
        return 1
    if device.status == "offline":
        return 2
    if device.max_drift is not None and threshold is not None and abs(device.max_drift.psi) > threshold:
        return 3
    expiry = device.certificate_not_after
    if expiry is not None and (expiry - now).total_seconds() < EXPIRING_S:
        return 4
    if device.status == "never seen":
        return 5
    return 9


def _options(name: str, label: str, choices: list[str], chosen: str) -> str:
    opts = "".join(f'<option value="{esc(c)}"{" selected" if c == chosen else ""}>{esc(c)}</option>' for c in choices)
    return f'<label>{label}<select name="{name}"><option value="">any</option>{opts}</select></label>'


def _filter_form(fleet: Fleet, chosen: Filters) -> str:
    channels = sorted({d.channel for d in fleet.devices})
    versions = sorted({d.model_version for d in fleet.devices if d.model_version})
    return ('<form class="filters" method="get" action="/console/fleet">'
            + _options("channel", "Channel", channels, chosen.channel)
            + _options("status", "Status", list(STATUS_WORDS), chosen.status)
            + _options("health", "Health", [*HEALTH_WORDS, "unknown"], chosen.health)
            + _options("version", "Version", versions, chosen.version)
            + f'<label>Device id contains<input name="q" value="{esc(chosen.q)}" size="18"></label>'
            + '<button type="submit">Filter</button> <a href="/console/fleet">clear</a></form>')


def _summary(fleet: Fleet) -> str:
    devices = fleet.devices
    status = {word: sum(1 for d in devices if d.status == word) for word in STATUS_WORDS}
    health = {word: sum(1 for d in devices if d.status == "online" and d.health == word) for word in HEALTH_WORDS}
    estimate = fleet.estimates.accuracy if fleet.estimates else None
    versions = ", ".join(f"{esc(r.model_version)} ({len(r.devices)})" for r in fleet.releases) or "none reported"
    cards = [
        ("Devices", f"{len(devices)}", " · ".join(f"{n} {w}" for w, n in status.items())),
        ("Health (online)", " · ".join(f"{n} {w}" for w, n in health.items()), ""),
        ("Fleet accuracy (estimated)", _interval(estimate), "IPW, 95% interval"),
        ("Versions in use", versions, ""),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="muted">{title}</div><div class="big">{value}</div>'
        f'<div class="muted">{note}</div></div>' for title, value, note in cards) + "</div>"


def render_fleet(fleet: Fleet, chosen: Filters, threshold: float | None) -> str:
    """The fleet page's body: summary, filters, and the (filtered) devices, problems first."""
    now = fleet.generated_at
    shown = sorted((d for d in fleet.devices if chosen.keep(d)),
                   key=lambda d: (_problem(d, now, threshold), d.device_id))
    rows = []
    for d in shown:
        seen = d.last_seen
        last = (f'<span title="{esc(fmt_time(seen))}">{_ago((now - seen).total_seconds())}</span>'
                if seen is not None else '<span class="muted">never</span>')
        rows.append((
            f'<a href="/console/devices/{esc(d.device_id)}">{esc(d.device_id)}</a>', esc(d.channel),
            esc(d.model_version or "—"), esc(d.config_version or "—"),
            _health(d, now), _drift(d, threshold), _interval(d.estimated_accuracy),
            "—" if d.backlog is None else f"{d.backlog:,}", last, _credential(d, now),
        ))
    count = f"{len(shown)} of {len(fleet.devices)} devices" if len(shown) != len(fleet.devices) else \
        f"{len(shown)} devices"
    return (f"<h1>Fleet</h1>{_summary(fleet)}{_filter_form(fleet, chosen)}"
            f'<p class="muted">{count}, problems first · generated {esc(fmt_time(now))} · devices silent for more '
            f"than {fleet.stale_after_s:g} s are offline</p>"
            + table(["Device", "Channel", "Version", "Config", "Health", "Largest drift", "Estimated accuracy",
                     "Backlog", "Last seen", "Credential"], rows, numeric=(7,),
                    empty="no device matches these filters"))


@router.get("/console/")
@router.get("/console")
def console_home() -> Response:
    """The console starts at the fleet."""
    return RedirectResponse("/console/fleet", status_code=303)


@router.get("/console/fleet")
def fleet_page(request: Request, channel: str = "", status: str = "", health: str = "", version: str = "",
               q: str = "", who: Operator = Depends(operator)) -> Response:  # noqa: B008
    """Every device, problems first, with the GET filters applied."""
    chosen = Filters(channel[:64], status[:32], health[:32], version[:64], q[:64])
    settings: HubSettings = request.app.state.settings
    body = render_fleet(fleet_document(request), chosen, drift_threshold(settings.root))
    return page("Fleet", body, who, "fleet")
