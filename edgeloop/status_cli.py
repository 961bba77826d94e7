"""``edgeloop status``: the whole loop on one screen, or as one JSON document (``--json``).

Gathers, each part on its own so one missing part never hides the others:

- the hub: its URL and whether it answered ``GET /v1/fleet`` (the reason in one line when not), through the
  cloud's hub client (``flows.hub_client``: ``--url``/``$EDGELOOP_HUB_URL``/params.yaml, the admin token file);
- the fleet: devices online / offline / never seen, health ok / degraded / error, the fleet's estimated
  accuracy with its 95% interval;
- the channels of the release repository and the release each points at (as ``edgeloop release list``
  reads them), with how many devices follow each and how many already run that release, and whether an
  operator halted it (``flows.loop.halts``, when this version has it);
- the newest fired decisions of the loop log;
- what needs attention: degraded or erroring devices with their reason, offline devices, certificates
  expiring within 14 days (or expired), revoked devices still heartbeating (online although revoked),
  halted channels, batches waiting in the quarantine.

What could not be read is listed under ``missing`` (hub down, no release repository yet, empty loop log)
and the command still exits 0: it reports, it does not judge. The screen fits 80x24 for a small fleet; a
large one is summarised (counts, and at most ``ATTENTION_SHOWN`` attention rows with how many more; the
JSON has them all). Leaves out watching (``watch edgeloop status``) and acting on anything.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from edge.contracts.errors import UserError
from edgeloop.cli_common import AdminTokenFileOption, HubCaFileOption, HubUrlOption, RootOption
from edgeloop.cli_tables import Col, fit_table, show

__all__ = ["ATTENTION_SHOWN", "CERTIFICATE_WARNING", "gather", "render", "status"]

CERTIFICATE_WARNING = timedelta(days=14)
ATTENTION_SHOWN = 8  # rows on screen; the rest are counted (and all are in --json)
DECISIONS_SHOWN = 3
SEVERITY = ("error", "revoked", "degraded", "halted", "halts", "certificate", "quarantine", "offline")  # shown first


@dataclass
class Report:
    """The status document while it is gathered; ``as_dict`` is what ``--json`` prints."""

    project: str
    hub: dict[str, Any]
    fleet: dict[str, Any] | None = None
    channels: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[str, Any] = field(default_factory=dict)
    attention: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def flag(self, kind: str, subject: str, detail: str) -> None:
        self.attention.append({"kind": kind, "subject": subject, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {"generated_at": datetime.now(UTC).isoformat(), "project": self.project, "hub": self.hub,
                "fleet": self.fleet, "channels": self.channels, "decisions": self.decisions,
                "attention": sorted(self.attention, key=lambda a: SEVERITY.index(a["kind"])),
                "missing": self.missing}


def _moment(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fleet_part(report: Report, document: dict[str, Any]) -> None:
    from hub.fleet_view import health_text, human_age

    devices = [d for d in document.get("devices", []) if isinstance(d, dict)]
    now = _moment(document.get("generated_at")) or datetime.now(UTC)
    counts = {s: sum(1 for d in devices if d.get("status") == s and not d.get("revoked"))
              for s in ("online", "offline", "never seen")}
    health = {h: sum(1 for d in devices if d.get("health") == h and not d.get("revoked"))
              for h in ("ok", "degraded", "error")}
    estimates = document.get("estimates") if isinstance(document.get("estimates"), dict) else None
    accuracy = (estimates or {}).get("accuracy")
    report.fleet = {"devices": len(devices), **{k.replace(" ", "_"): v for k, v in counts.items()},
                    "revoked": sum(1 for d in devices if d.get("revoked")), "health": health,
                    "estimated_accuracy": accuracy if isinstance(accuracy, dict) else None,
                    "generated_at": document.get("generated_at")}
    for d in devices:
        name = str(d.get("device_id"))
        if d.get("revoked"):
            if d.get("status") == "online":
                beat = d.get("last_heartbeat") or {}
                report.flag("revoked", name, f"revoked but heard {human_age(beat.get('age_s'))}: the gateway still "
                                             "runs; switch it off or re-add the device")
            continue
        if d.get("status") == "online" and d.get("health") in ("degraded", "error"):
            report.flag(str(d["health"]), name, health_text(d))
        elif d.get("status") == "offline":
            beat = d.get("last_heartbeat") or {}
            said = f"; {d['last_said']}" if d.get("last_said") else ""
            report.flag("offline", name, f"silent, last heard {human_age(beat.get('age_s'))}{said}")
        expires = _moment(d.get("certificate_not_after")) if d.get("certificate_not_after") else None
        if expires is not None and expires - now <= CERTIFICATE_WARNING:
            left = (expires - now).total_seconds() / 86400
            detail = (f"certificate expired {expires:%Y-%m-%d}" if left <= 0
                      else f"certificate expires {expires:%Y-%m-%d} ({left:.0f} d left)")
            report.flag("certificate", name, detail + "; the runner renews it itself while it can reach the hub")


def _hub_part(report: Report, root: Path, hub: Any, url: str | None, token_file: Path | None,
              ca_file: Path | None, timeout_s: float) -> dict[str, Any] | None:
    from flows.hub_client import HubAdminClient, HubUnreachable

    client = HubAdminClient.for_project(root, hub, url=url, token_file=token_file, ca_file=ca_file,
                                        timeout_s=timeout_s)
    report.hub = {"url": client.url, "reachable": False, "reason": None}
    try:
        document = client.fleet()
    except HubUnreachable as exc:
        report.hub["reason"] = str(exc)
        report.missing.append("fleet: unknown while the hub cannot be asked (above)")
        return None
    report.hub["reachable"] = True
    _fleet_part(report, document)
    return document


def _halts(log: Path) -> dict[str, Any]:
    """Channel -> its halt (an object with ``by``, ``at``, ``reason``); empty without halt support."""
    try:
        halts = importlib.import_module("flows.loop.halts")
    except ModuleNotFoundError:
        return {}
    found: dict[str, Any] = halts.read_halts(halts.halts_path(log))
    return found


def _channels_part(report: Report, params: Any, paths: Any, log: Path, fleet: dict[str, Any] | None) -> None:
    from flows.releases import ReleaseConfig, list_channels

    config = ReleaseConfig.from_params(params, paths)
    try:
        pointers = list_channels(config)
    except UserError as exc:
        report.missing.append(f"channels: {exc}")
        pointers = {}
    else:
        if not pointers:
            report.missing.append(f"channels: no release repository yet at {config.repository} "
                                  "(edgeloop release init, then a retrain publishes release 1)")
    try:
        halts = _halts(log)
    except UserError as exc:
        report.flag("halts", "halts", str(exc))
        halts = {}
    devices = [d for d in (fleet or {}).get("devices", []) if isinstance(d, dict) and not d.get("revoked")]
    for channel in sorted(set(pointers) | set(halts)):
        release = pointers.get(channel)
        following = [d for d in devices if d.get("channel") == channel]
        halt = halts.get(channel)
        entry: dict[str, Any] = {
            "channel": channel, "release": release, "devices": len(following) if fleet is not None else None,
            "on_release": (sum(1 for d in following if str(d.get("model_version")) == str(release))
                           if fleet is not None and release is not None else None),
            "halted": None if halt is None else {"by": halt.by, "at": halt.at, "reason": halt.reason},
        }
        report.channels.append(entry)
        if halt is not None:
            report.flag("halted", channel, halt.describe())


def _quarantine_part(report: Report, params: Any, paths: Any) -> None:
    from flows.storage import is_url

    where = params.storage.quarantine
    if is_url(where):
        report.missing.append(f"quarantine: {where} is object storage; `edgeloop ingest --json` counts it")
        return
    from flows.ingest.ledger import still_quarantined

    folder = paths.resolve(where)
    waiting = sum(1 for _ in still_quarantined(paths.curated, folder))
    if waiting:
        report.flag("quarantine", str(where), f"{waiting} batch{'es' if waiting != 1 else ''} quarantined: see "
                                              "the reasons beside them; after a fix, edgeloop ingest "
                                              "--retry-quarantined")


def _decisions_part(report: Report, log: Path) -> None:
    from flows.loop.log import read_decisions

    entries = read_decisions(log)
    fired = [e for e in entries if e.get("fired")]
    report.decisions = {
        "log": str(log), "total": len(entries), "fired": len(fired),
        "newest_fired": [{k: e.get(k) for k in ("at", "source", "kind", "summary")}
                         for e in fired[-DECISIONS_SHOWN:]],
    }
    if not entries:
        report.missing.append(f"decisions: none yet in {log}")


def gather(root: Path, url: str | None = None, token_file: Path | None = None, ca_file: Path | None = None,
           timeout_s: float = 5.0) -> dict[str, Any]:
    """The status document of the project at ``root`` (see the module docstring for its parts)."""
    from edge.contracts.layout import Paths
    from flows.params import load_params

    paths = Paths.at(root)
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    report = Report(project=str(paths.root.resolve()), hub={})
    fleet = _hub_part(report, paths.root, params.hub, url, token_file, ca_file, timeout_s)
    _channels_part(report, params, paths, log, fleet)
    _decisions_part(report, log)
    _quarantine_part(report, params, paths)
    return report.as_dict()


def _interval(estimate: dict[str, Any] | None) -> str:
    from hub.fleet_view import interval_text

    return interval_text(estimate) if estimate else "-"


def render(document: dict[str, Any], out: Console, wide: bool = False) -> None:
    """The status document as one screen on ``out`` (its width decides how tables fit)."""
    hub = document["hub"]
    line = Text.assemble(("hub      ", "bold"), hub["url"], " ")
    line.append("reachable" if hub["reachable"] else "UNREACHABLE", style="green" if hub["reachable"] else "bold red")
    out.print(line)
    if not hub["reachable"]:
        out.print(Text(f"         {hub['reason']}", style="red"))
    fleet = document["fleet"]
    if fleet is not None:
        health = fleet["health"]
        revoked = f", {fleet['revoked']} revoked" if fleet["revoked"] else ""
        out.print(Text.assemble(("fleet    ", "bold"), f"{fleet['devices']} devices: {fleet['online']} online, "
                                f"{fleet['offline']} offline, {fleet['never_seen']} never seen{revoked}; health "
                                f"{health['ok']} ok, {health['degraded']} degraded, {health['error']} error"))
        out.print(Text.assemble(("accuracy ", "bold"), _interval(fleet["estimated_accuracy"]),
                                " (fleet estimate, 95% interval)" if fleet["estimated_accuracy"] else
                                " (no estimate yet: the monitor writes it from uploaded labels)"))
    if document["channels"]:
        rows: list[list[str | Text]] = []
        for c in document["channels"]:
            on = "-" if c["on_release"] is None else f"{c['on_release']} of {c['devices']}"
            state = Text("halted", style="bold red") if c["halted"] else Text("active", style="green")
            rows.append([c["channel"], "-" if c["release"] is None else str(c["release"]),
                         "-" if c["devices"] is None else str(c["devices"]), on, state])
        cols = (Col("channel", whole=True), Col("release", whole=True), Col("devices", whole=True, drop=2),
                Col("running it", whole=True, drop=1), Col("state", whole=True, drop=3))
        show(out, fit_table(cols, rows, out.width, title="channels", wide=wide, compact=True), wide)
    decisions = document["decisions"]
    if decisions.get("newest_fired"):
        rows = [[str(e["at"])[:16].replace("T", " "), f"{e['source']} {e['kind']}", str(e["summary"])]
                for e in decisions["newest_fired"]]
        decision_cols = (Col("at (UTC)", whole=True), Col("who, what", whole=True, drop=1),
                         Col("decision", min_width=20))
        title = f"newest fired decisions ({decisions['fired']} fired of {decisions['total']}; edgeloop loop status)"
        show(out, fit_table(decision_cols, rows, out.width, title=title, wide=wide, compact=True), wide)
    attention = document["attention"]
    if attention:
        shown = attention[:ATTENTION_SHOWN]
        rows = [[a["kind"], Text.assemble(a["subject"], ("\n" + a["detail"], "dim"))]
                for a in shown]
        longest = max(len(a["subject"]) for a in shown)  # each subject whole on its line, its detail beneath
        attention_cols = (Col("what", whole=True), Col("who and why", min_width=longest))
        title = f"needs attention ({len(attention)})"
        show(out, fit_table(attention_cols, rows, out.width, title=title, wide=wide, compact=True), wide)
        if len(attention) > len(shown):
            rest = attention[len(shown):]
            kinds = {a["kind"]: sum(1 for b in rest if b["kind"] == a["kind"]) for a in rest}
            out.print(f"… and {len(rest)} more: {', '.join(f'{n} {kind}' for kind, n in kinds.items())} "
                      "(edgeloop status --json, edgeloop fleet)", style="dim", markup=False)
    elif fleet is not None:
        out.print(Text("nothing needs attention", style="green"))
    for missing in document["missing"]:
        out.print(Text(f"missing: {missing}", style="yellow"))


def status(
    url: HubUrlOption = None,
    token_file: AdminTokenFileOption = None,
    ca_file: HubCaFileOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the hub.", min=0.1)] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the same as one JSON document (stdout only).")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the tables get.")] = False,
    root: RootOption = Path("."),
) -> None:
    """One screen: the hub, the fleet, channels and their releases, the newest decisions, what needs attention."""
    document = gather(root, url, token_file, ca_file, timeout)
    if as_json:
        print(json.dumps(document, indent=2, default=str))
        return
    render(document, Console(highlight=False), wide)
