"""The fleet at a glance: the fleet document as display rows and as an HTML page.

Pure functions over the ``GET /v1/fleet`` document (no database, no HTTP, no clock): ``summary_rows``
turns it into display rows (shared by the HTML page and ``edgeloop fleet``), ``render_fleet_html`` writes
the page: the fleet summary (estimated accuracy with its 95% interval, label balance), the devices, and
per release the devices running it. Estimates are inverse-probability weighted (hub.fleet_loop); absent
ones show as "-". An offline device is never shown with its last reported health: what it said is
history, not its state. The certificate column says when the device's client certificate expires (and
how many days are left at the document's ``generated_at``), or "token only". The health of an online
device carries its reason when the runner gave one (``health_reason``, ``health_since``: "degraded:
accuracy 0.778 below floor 0.8 since 2026-12-02 14:02"). Every value from a device
or a file is HTML-escaped. The page has inline CSS only (no script, no font, no CDN) so it works on a
closed network. The status words are
hub.fleet_status's (re-exported here for ``edgeloop fleet``).
Leaves out: building the document (hub.fleet_document) and auto-refresh (reload the page).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from edge.contracts.layout import Paths
from hub.fleet_status import NEVER_SEEN, OFFLINE, ONLINE

__all__ = ["COLUMNS", "NEVER_SEEN", "OFFLINE", "ONLINE", "TOKEN_ONLY", "certificate_text", "health_text",
           "render_fleet_html", "summary_row", "summary_rows"]

COLUMNS = (
    "device", "channel", "status", "health", "model", "config", "last heard", "accuracy", "est. accuracy (95%)",
    "max drift", "backlog", "uploads", "certificate",
)
TOKEN_ONLY = "token only"
ESTIMATES_FILE = Paths(Path(".")).estimates.as_posix()  # as the page names it: relative to the project

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1d2330; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { border-bottom: 1px solid #e4e6ea; padding: .35rem .5rem; text-align: left; vertical-align: top; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; color: #fff; font-weight: 600; }
.online { background: #1b873f; } .offline { background: #c62828; } .never { background: #66708a; }
.ok { color: #1b873f; } .degraded { color: #d9822b; font-weight: 600; } .error { color: #c62828; font-weight: 600; }
.revoked { text-decoration: line-through; color: #66708a; }
.muted { color: #66708a; } code { font-size: .85rem; }
"""


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover (the loop returns)


def _max_drift(device: dict[str, Any], state: dict[str, Any]) -> str:
    top = device.get("max_drift")
    if isinstance(top, dict):
        return f"{top.get('feature')} {float(top.get('psi', 0.0)):.3g}"
    drift = state.get("drift") or {}
    if not drift:
        return "-"
    name, score = max(drift.items(), key=lambda item: abs(float(item[1])))
    return f"{name} {float(score):.3g}"


def interval_text(estimate: dict[str, Any] | None, with_version: bool = False) -> str:
    """``0.978 [0.975, 0.981] n=703`` for an estimate document (hub.fleet_loop.Interval), else "-"."""
    if not isinstance(estimate, dict) or estimate.get("value") is None:
        return "-"
    text = (f"{float(estimate['value']):.3f} [{float(estimate['low']):.3f}, {float(estimate['high']):.3f}] "
            f"n={int(estimate.get('rows', 0))}")
    if with_version:
        version = estimate.get("model_version")
        text += " (all versions)" if version is None else f" (v {version})"
    return text


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def certificate_text(not_after: object, now: object = None) -> str:
    """``2027-03-02 (89 d left)``, ``expired 2026-11-30`` or "token only" (no certificate)."""
    expires = None if not_after is None else _moment(not_after)
    if expires is None:
        return TOKEN_ONLY
    day = expires.strftime("%Y-%m-%d")
    moment = None if now is None else _moment(now)
    if moment is None:
        return day
    if expires <= moment:
        return f"expired {day}"
    return f"{day} ({(expires - moment).total_seconds() / 86400:.0f} d left)"


def health_text(device: dict[str, Any]) -> str:
    """``ok``, ``degraded: <reason> since <when>`` or "-" (not online: an offline device is not healthy)."""
    health = device.get("health")
    if not health:
        return "-"
    state = (device.get("last_heartbeat") or {}).get("state") or {}
    reason = device.get("health_reason") or state.get("health_reason")
    if not reason or health == "ok":
        return str(health)
    since = device.get("health_since") or state.get("health_since")
    moment = None if since is None else _moment(since)
    when = "" if moment is None else f" since {moment.strftime('%Y-%m-%d %H:%M')}"
    return f"{health}: {' '.join(str(reason).split())}{when}"


def summary_row(device: dict[str, Any], now: object = None) -> dict[str, str]:
    """One device of the fleet document as display strings, keyed by ``COLUMNS`` (``now``: the document's
    ``generated_at``, for the days a certificate has left)."""
    beat = device.get("last_heartbeat") or {}
    state = beat.get("state") or {}
    accuracy = state.get("rolling_accuracy")
    uploads = device.get("uploads") or {}
    return {
        "device": str(device["device_id"]),
        "channel": str(device.get("channel", "")),
        "status": str(device["status"]) + (" (revoked)" if device.get("revoked") else ""),
        "health": health_text(device),  # "-" unless online: an offline device is not healthy
        "model": str(state.get("model_version") or "-"),
        "config": str(device.get("config_version") or state.get("config_version") or "-"),  # runner policy version
        "last heard": human_age(beat.get("age_s")),
        "accuracy": "-" if accuracy is None else f"{float(accuracy):.3f}",
        "est. accuracy (95%)": interval_text(device.get("estimated_accuracy"), with_version=True),
        "max drift": _max_drift(device, state),
        "backlog": str(state.get("spool_backlog", "-")),
        "uploads": f"{uploads.get('count', 0)} ({human_bytes(int(uploads.get('bytes', 0)))})",
        "certificate": certificate_text(device.get("certificate_not_after"), now),
    }


def summary_rows(fleet: dict[str, Any]) -> list[dict[str, str]]:
    return [summary_row(device, fleet.get("generated_at")) for device in fleet.get("devices", [])]


def _cell(column: str, value: str, device: dict[str, Any]) -> str:
    text = escape(value)
    if column == "status":
        status = str(device["status"])
        css = status if status in (ONLINE, OFFLINE) else "never"  # the CSS classes are the status words
        text = f'<span class="badge {css}">{text}</span>'
    elif column == "health" and value.split(":")[0] in {"ok", "degraded", "error"}:
        text = f'<span class="{value.split(":")[0]}">{text}</span>'
    elif column == "device":
        text = f'<code class="{"revoked" if device.get("revoked") else ""}">{text}</code>'
    return f"<td>{text}</td>"


def _summary_html(fleet: dict[str, Any]) -> str:
    estimates = fleet.get("estimates")
    if not isinstance(estimates, dict):
        return ("<p class='muted'>No fleet estimates yet: the loop's monitor writes them "
                f"(<code>{escape(ESTIMATES_FILE)}</code>) from uploaded ground truth.</p>")
    shares = estimates.get("label_shares") or {}
    balance = "; ".join(f"{escape(str(c))}: {escape(interval_text(e))}" for c, e in shares.items()) or "-"
    return (
        "<h2>Fleet estimate</h2><table>"
        f"<tr><th>estimated accuracy (95%)</th><td>{escape(interval_text(estimates.get('accuracy')))}</td></tr>"
        f"<tr><th>label balance (95%)</th><td>{balance}</td></tr>"
        f"<tr><th>uploaded labelled rows</th><td>{int(estimates.get('rows', 0))}</td></tr>"
        f"<tr><th>computed</th><td>{escape(str(estimates.get('computed_at') or '-'))}</td></tr></table>"
        "<p class='muted'>Weighted by 1/inclusion probability: uploads over-represent mistakes, so the plain "
        "share of correct uploaded rows would be far too low.</p>"
    )


def _releases_html(fleet: dict[str, Any]) -> str:
    rows = []
    for release in fleet.get("releases") or []:
        devices = ", ".join(f"<code>{escape(str(d))}</code>" for d in release.get("devices", []))
        rows.append(
            f"<tr><td><code>{escape(str(release.get('model_version')))}</code></td><td>{devices}</td>"
            f"<td>{int(release.get('online', 0))} of {len(release.get('devices', []))}</td>"
            f"<td>{escape(', '.join(str(c) for c in release.get('channels', [])))}</td>"
            f"<td>{escape(interval_text(release.get('estimated_accuracy')))}</td></tr>"
        )
    if not rows:
        return "<h2>Releases</h2><p class='muted'>No device has reported a model version yet.</p>"
    head = "<tr><th>model version</th><th>devices running it</th><th>online</th><th>channels</th>" \
           "<th>est. accuracy (95%)</th></tr>"
    return f"<h2>Releases</h2><table>{head}{''.join(rows)}</table>"


def render_fleet_html(fleet: dict[str, Any]) -> str:
    """The whole fleet page from the ``GET /v1/fleet`` document."""
    devices = fleet.get("devices", [])
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for device in devices:
        row = summary_row(device, fleet.get("generated_at"))
        body.append("<tr>" + "".join(_cell(c, row[c], device) for c in COLUMNS) + "</tr>")
    counts = {s: sum(1 for d in devices if d["status"] == s) for s in (ONLINE, OFFLINE, NEVER_SEEN)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    table = (
        f"<table><tr>{head}</tr>{''.join(body)}</table>" if body
        else "<p class='muted'>No devices registered yet (<code>edgeloop devices add NAME</code>).</p>"
    )
    stale = float(fleet.get("stale_after_s", 0))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeloop fleet</title>
<style>{_CSS}</style></head><body>
<h1>Fleet: {len(devices)} devices</h1>
<p class="muted">{escape(summary)}. Generated {escape(str(fleet.get("generated_at", "")))};
a device silent for more than {stale:.0f} s is shown offline. Reload the page to refresh.</p>
{_summary_html(fleet)}
<h2>Devices</h2>
{table}
<p class="muted">accuracy: the device's own rolling accuracy; est. accuracy: inverse-probability weighted
from its uploads, for the version it runs.</p>
{_releases_html(fleet)}
</body></html>
"""
