"""``edge-runner status``: the runner's state read from its state dir, with or without a running daemon.

Sources: the ``current``/``previous`` links, blocked versions and recent events (``state.json``), the
spool's backlog and eviction counts (``spool.db``), the client certificate's end (``tls.cert_file``,
read here: ``certificate_expires``), and the daemon's last ``status.json`` (health with its reason and
since when, the hub link (reachable, unreachable since, or this device refused: 401/403), drift, rolling
accuracy, last poll, last sync, counters, and the live inputs block when ``[inputs]`` is configured), and
the signed runner policy in force (``policy/applied.json``: version, channel, when, pins that kept a local
value; ``policy/refused.json``: the newest refused versions).
Whether a daemon is running is read from the state dir's lock. ``format_status`` renders the report as
a few aligned lines.

Leaves out: asking the daemon over HTTP (the files are the truth, and work when the API is off), and
anything secret (the token and the private key are never read here).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from edge.config import RunnerConfig
from edge.spool import Spool
from edge.state import SPOOL_FILE, STATUS_FILE, StateDir, StateError

__all__ = ["format_status", "read_status"]


def read_status(config: RunnerConfig) -> dict[str, Any]:
    state = StateDir(config.state_dir)
    report: dict[str, Any] = {
        "device_id": config.device_id, "state_dir": str(config.state_dir), "channel": config.releases.channel,
        "running": _running(state), "current_version": state.current_version(),
        "previous_version": state.previous_version(), "blocked": state.blocked_versions(),
        "events": state.events()[-5:],
    }
    activation = state.activation()
    report["activated_at"] = None if activation is None else activation.activated_at
    spool_file = config.state_dir / SPOOL_FILE
    if spool_file.exists():
        spool = Spool(spool_file, config.upload.spool_quota_bytes)
        try:
            report |= {"spool_backlog": spool.backlog_rows(), "spool_bytes": spool.backlog_bytes(),
                       "evictions": spool.evictions()}
        finally:
            spool.close()
    else:
        report |= {"spool_backlog": 0, "spool_bytes": 0, "evictions": {}}
    try:
        daemon = json.loads((config.state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        daemon = {}
    for key in ("health", "health_reason", "health_since", "hub", "drift",
                "rolling_accuracy", "last_poll", "last_sync", "last_heartbeat", "counters",
                "written_at", "api", "certificate_expires", "inputs"):
        report[key] = daemon.get(key) if isinstance(daemon, dict) else None
    report["policy"] = _policy(config)
    report["config_version"] = None if report["policy"] is None else report["policy"]["version"]
    if config.tls.cert_file is not None and config.tls.key_file is not None:
        report["certificate_expires"] = _certificate_expires(config) or report["certificate_expires"]
    return report


def _policy(config: RunnerConfig) -> dict[str, Any] | None:
    """The signed runner policy in force, from the files edge.policy_updates writes (None: runner.toml alone)."""
    folder = config.state_dir / "policy"
    try:
        applied = json.loads((folder / "applied.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        applied = None
    try:
        raw = json.loads((folder / "refused.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}
    refused = raw.get("versions") if isinstance(raw, dict) and raw.get("channel") == config.releases.channel else {}
    refused = refused if isinstance(refused, dict) else {}
    if not isinstance(applied, dict) or not config.policy.enabled:
        return None if not refused else {"version": None, "channel": None, "applied_at": None, "kept": {},
                                          "refused": refused, "enabled": config.policy.enabled}
    return {"version": applied.get("version"), "channel": applied.get("channel"),
            "applied_at": applied.get("applied_at"), "kept": applied.get("kept") or {},
            "refused": refused if isinstance(refused, dict) else {}, "enabled": True}


def _policy_line(policy: object) -> str:
    if not isinstance(policy, dict):
        return "none (runner.toml alone)"
    if policy.get("version") is None:
        text = "none (runner.toml alone)" if policy.get("enabled", True) else "off ([policy] enabled = false)"
    else:
        text = f"version {policy['version']} of channel {policy.get('channel')}, applied {policy.get('applied_at')}"
        kept = policy.get("kept") or {}
        if kept:
            text += "; pinned locally: " + ", ".join(f"{k} kept {json.dumps(v)}" for k, v in kept.items())
    refused = policy.get("refused") or {}
    if refused:
        newest = max(refused, key=lambda v: int(v) if str(v).isdigit() else 0)
        text += f"; refused {', '.join(sorted(refused, key=lambda v: int(v) if str(v).isdigit() else 0))} " \
                f"(latest: {refused[newest]})"
    return text


def _certificate_expires(config: RunnerConfig) -> str | None:
    """When the client certificate in use ends (ISO 8601); None when it cannot be read."""
    from edge.credentials import resolve_pair
    from edge.device_keys import CertificateError, load_certificate, not_after

    assert config.tls.cert_file is not None and config.tls.key_file is not None
    cert_file, _ = resolve_pair(config.tls.cert_file, config.tls.key_file)
    try:
        return not_after(load_certificate(cert_file.read_bytes())).isoformat()
    except (OSError, CertificateError):
        return None


def _certificate_line(expires: object) -> str:
    if not isinstance(expires, str):
        return "-"
    try:
        left = datetime.fromisoformat(expires) - datetime.now(UTC)
    except ValueError:
        return f"expires {expires}"
    if left.total_seconds() <= 0:
        return f"EXPIRED {expires}: enroll again (edge-runner enroll --force)"
    if left.days >= 1:
        return f"expires {expires} (in {left.days} days)"
    return f"expires {expires} (in {int(left.total_seconds() // 3600)} h {int(left.total_seconds() % 3600 // 60)} min)"


def _inputs_line(inputs: dict[str, Any]) -> str:
    """The live inputs block (edge.inputs.live) in one line: connection, predictions, skips, labels."""
    state = "connected" if inputs.get("connected") else "NOT connected"
    skipped = {f"{reason} {tag}": n for reason, tags in (inputs.get("skipped") or {}).items()
               for tag, n in (tags or {}).items()}
    labels = inputs.get("labels") or {}
    parts = [f"{inputs.get('url', '-')} {state}", f"{inputs.get('predictions', 0)} predictions",
             "skipped " + (", ".join(f"{what} {n}" for what, n in sorted(skipped.items())) if skipped else "0"),
             "labels " + (", ".join(f"{kind} {n}" for kind, n in sorted(labels.items())) if labels else "0"),
             f"reconnects {inputs.get('reconnects', 0)}"]
    return "; ".join(parts)


def _health_line(report: dict[str, Any]) -> str:
    """"degraded since 14:02:11 UTC: accuracy 0.778 below floor 0.8 on the last 200 labels"."""
    health = report.get("health")
    if not health:
        return "unknown (no status written yet)"
    since = report.get("health_since")
    reason = report.get("health_reason")
    return f"{health}{' since ' + _when(since) if since else ''}{': ' + reason if reason else ''}"


def _hub_line(hub: object) -> str:
    """The hub link (edge.hub_link): "ok", "unreachable since ... (why)", "refused this device (401) ..."."""
    if not isinstance(hub, dict) or hub.get("state") in (None, "unknown"):
        return "no request answered yet"
    since = f" since {_when(hub.get('since'))}" if hub.get("since") else ""
    if hub["state"] == "refused":
        return (f"refused this device ({hub.get('status')}){since}: {hub.get('detail')}: check the token file "
                f"(hub.token_file) or enroll again")
    if hub["state"] == "unreachable":
        return f"unreachable{since} ({hub.get('detail')})"
    return f"ok{since}"


def _when(value: object) -> str:
    """An ISO 8601 time as "2026-12-02 14:02:11 UTC" (as given when it does not parse)."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at.tzinfo else str(value)


def _running(state: StateDir) -> bool:
    if not state.path.exists():
        return False
    try:
        handle = state.lock()
    except StateError:
        return True
    handle.release()
    return False


def format_status(report: dict[str, Any]) -> str:
    drift = report.get("drift") or {}
    worst = max(drift.items(), key=lambda item: item[1]) if drift else None
    accuracy = report.get("rolling_accuracy")
    poll = report.get("last_poll") or {}
    lines = [
        ("device", f"{report['device_id']} ({'running' if report['running'] else 'not running'}), "
                   f"channel {report['channel']}"),
        ("model", f"current {report['current_version'] or '-'}, previous {report['previous_version'] or '-'}"
                  + (f", activated {report['activated_at']}" if report.get("activated_at") else "")),
        ("health", _health_line(report)),
        ("hub", _hub_line(report.get("hub"))),
        ("accuracy", "-" if accuracy is None else f"{accuracy:.3f} on recent labels"),
        ("drift", "-" if worst is None else f"max PSI {worst[1]:.3f} ({worst[0]})"),
        ("backlog", f"{report['spool_backlog']} rows, {report['spool_bytes']} bytes"
                    + (f"; evicted {report['evictions']}" if report.get("evictions") else "")),
        ("last poll", "-" if not poll else f"{poll.get('at')} {poll.get('kind')} {poll.get('detail') or ''}".strip()),
        ("last sync", str(report.get("last_sync") or "never")),
        ("certificate", _certificate_line(report.get("certificate_expires"))),
        ("policy", _policy_line(report.get("policy"))),
        ("blocked", ", ".join(f"{v} ({why})" for v, why in report["blocked"].items()) or "-"),
    ]
    if isinstance(report.get("inputs"), dict):
        lines.append(("inputs", _inputs_line(report["inputs"])))
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in lines)
