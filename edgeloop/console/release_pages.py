"""Console routes: releases, channel pointers, rollout progress and the promote / roll back / halt actions.

- ``GET /console/releases``: each channel (its release, devices on it / expected, rejected, rolled back,
  halt, and the roll back / halt / resume links), then every release newest first (channels, gate
  verdict and the metric the gate compared with the champion's, lineage, devices running / rejecting /
  rolling back it, its candidate page, a promote form);
- ``GET /console/releases/<version>``: the full record (gate rules, metrics, lineage, files, history);
- ``GET /console/releases/<action>`` (promote, rollback, halt, resume): the confirmation page saying
  what will happen, or the one-line refusal (409) when the action cannot be done; ``POST`` (with the
  CSRF field) does it and comes back to the releases page with what happened.

Leaves out: gathering the data (``release_data``), the actions' rules (``release_actions``), the page
shell and authentication (``layout``, ``auth``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from edge.contracts.errors import UserError
from edge.contracts.release_layout import MANIFEST_FILE
from edgeloop.console import auth
from edgeloop.console.auth import Operator
from edgeloop.console.layout import badge, csrf_field, esc, fmt_time, page, table
from edgeloop.console.release_actions import KINDS, Plan, perform, plan
from edgeloop.console.release_data import (
    Catalog,
    Project,
    Release,
    Tally,
    catalog,
    fleet_rows,
    project,
    rollout,
    tally,
)

__all__ = ["router"]

router = auth.console_router()
Who = Annotated[Operator, Depends(auth.operator)]
BASE = "/console/releases"
REPORTS = "/console/reports"  # the report pages (report_pages) serve the project's data folder below this


def _short(value: str | None, n: int = 12) -> str:
    return "-" if not value else f'<code title="{esc(value)}">{esc(value[:n])}</code>'


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else esc(value)


def _action_link(kind: str, label: str, **query: object) -> str:
    return f'<a href="{BASE}/{kind}?{urlencode(query)}">{esc(label)}</a>'


def _current_candidate(found: Project) -> str | None:
    """The candidate id of the project's candidate folder when it has its overview page (read once a request)."""
    folder = found.paths.candidate
    try:
        if not (folder / "index.html").is_file():
            return None
        candidate = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(candidate) if candidate else None


def _candidate_link(found: Project, current: str | None, release: Release) -> str:
    """A link to the candidate page when the project's candidate folder still holds this release's candidate."""
    if current is None or current != release.manifest.candidate:
        return "-"
    rel = found.paths.candidate.relative_to(found.paths.data) / "index.html"
    return f'<a href="{REPORTS}/{quote(str(rel))}">candidate page</a>'


def _champion(release: Release) -> str:
    """The gate's comparison with the champion: candidate value vs the floor the champion set."""
    for rule in release.manifest.gate.rules:
        if rule.name == "champion":
            if rule.threshold is None:
                return f"{_number(rule.observed)} <span class=muted>(no champion)</span>"
            verdict = badge("pass" if rule.passed else "fail")
            return f"{_number(rule.observed)} vs &ge; {_number(rule.threshold)} {verdict}"
    return "-"


def _channels_cell(release: Release, halts: Iterable[str]) -> str:
    halted = set(halts)
    return " ".join(badge(f"{c} (halted)" if c in halted else c, "warn" if c in halted else "info")
                    for c in release.channels) or "-"


def _promote_form(release: Release, channels: list[str]) -> str:
    options = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in channels if c not in release.channels)
    if not options:
        return ""
    return (f'<form method="get" action="{BASE}/promote" class="inline">'
            f'<input type="hidden" name="version" value="{release.version}">'
            f'<select name="channel" aria-label="channel for release {release.version}">{options}</select> '
            f'<button type="submit">Promote&hellip;</button></form>')


def _counts(request: Request) -> Tally:
    return tally(fleet_rows(request.app.state.sessions))


def _channel_table(found: Project, cat: Catalog, counts: Tally) -> str:
    halts = found.halts()
    rows = []
    for channel in sorted(set(cat.pointers) | set(halts)):
        version = cat.pointers.get(channel)
        halt = halts.get(channel)
        state = (f'{badge("halted")} <span class="reason">{esc(halt.describe())}</span>' if halt else badge("active"))
        actions = [_action_link("resume", "resume", channel=channel) if halt else
                   _action_link("halt", "halt", channel=channel)]
        if version is None:
            rows.append([esc(channel), "-", state, "-", "-", "-", " ".join(actions)])
            continue
        r = rollout(channel, version, counts, halts)
        if cat.previous.get(channel) is not None:
            actions.insert(0, _action_link("rollback", f"roll back to {cat.previous[channel]}", channel=channel))
        progress = (f'<progress max="{max(r.expected, 1)}" value="{r.on_it}"></progress> '
                    f"{r.on_it} / {r.expected}")
        rows.append([esc(channel), f'<a href="{BASE}/{version}">{version}</a>', state, progress,
                     str(r.rejected), str(r.rolled_back), " &middot; ".join(actions)])
    return table(["channel", "release", "state", "devices on it / following", "rejected it", "rolled back from it",
                  "actions"], rows, numeric=(4, 5), empty="no channels yet: publish a release")


def _release_table(found: Project, cat: Catalog, counts: Tally) -> str:
    halts = found.halts()
    channels = sorted(set(cat.pointers) | set(halts))
    current = _current_candidate(found)
    rows = []
    for r in cat.releases:
        m = r.manifest
        key = str(r.version)
        gate = m.gate
        rows.append([
            f'<a href="{BASE}/{r.version}">{r.version}</a>', _channels_cell(r, halts), esc(fmt_time(m.created)),
            badge("passed" if gate.passed else "failed"),
            f"{esc(gate.metric)} {_number(gate.metrics.get(gate.metric))}", _champion(r),
            f"data {_short(m.lineage.data_hash)}<br>params {_short(m.lineage.params_hash)}<br>"
            f"commit {_short(m.lineage.git_commit)}",
            str(counts.running[key]), str(len(counts.rejected.get(key, ()))),
            str(len(counts.rolled_back.get(key, ()))), _candidate_link(found, current, r),
            _promote_form(r, channels),
        ])
    return table(["release", "channels", "created", "gate", "metric", "vs champion", "lineage", "running",
                  "rejected", "rolled back", "reports", "promote"], rows, numeric=(7, 8, 9),
                 empty="no releases yet: `edgeloop retrain` publishes the first")


def _done(message: str | None) -> str:
    return f'<div class="message ok" role="status"><p>{esc(message)}</p></div>' if message else ""


@router.get(BASE)
def releases_page(request: Request, who: Who, done: str | None = None) -> Response:
    """Channels with their rollout, then every release (newest first)."""
    try:
        found = project(request)
        cat = catalog(found)
        counts = _counts(request)
        body = (f"<h1>Releases</h1>{_done(done)}<h2>Channels</h2>{_channel_table(found, cat, counts)}"
                f"<h2>Releases ({len(cat.releases)})</h2>{_release_table(found, cat, counts)}")
    except UserError as exc:  # a corrupt manifest, an unreadable halts file: say which, no traceback
        raise unreadable(exc) from None
    return page("Releases", body, who, "releases")


def unreadable(exc: UserError) -> auth.PageError:
    """The console page for project files the page cannot read (503: nothing the operator did)."""
    return auth.PageError(503, "Cannot read the release repository or loop state", str(exc))


def _refused(who: Operator, kind: str, message: str) -> Response:
    body = (f"<h1>Not done: {esc(kind)}</h1><div class=\"message\" role=\"alert\"><p>{esc(message)}</p></div>"
            f'<p><a href="{BASE}">Back to releases</a></p>')
    return page(f"{kind} refused", body, who, "releases", status_code=409)


def _confirm(who: Operator, planned: Plan) -> Response:
    hidden = {"channel": planned.channel, "version": "" if planned.to_version is None else str(planned.to_version),
              "expect_from": "" if planned.from_version is None else str(planned.from_version)}
    warning, button = "", {"promote": "Promote", "rollback": "Roll back", "halt": "Halt", "resume": "Resume"}
    label = button[planned.kind]
    if planned.needs_force and planned.halt is not None:
        warning = (f'<div class="message" role="alert"><p>Channel {esc(planned.channel)} is '
                   f"{esc(planned.halt.describe())}. Promoting moves it anyway.</p></div>")
        hidden["force"] = "1"
        label = "Promote anyway"
    reason = ('<p><label>Why (shown with the halt; up to 200 characters)<br>'
              '<input name="reason" required maxlength="200" size="60"></label></p>' if planned.kind == "halt" else "")
    fields = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in hidden.items())
    body = (f"<h1>Confirm: {esc(planned.kind)}</h1>{warning}<div class=\"confirm\"><p><strong>{esc(planned.summary)}"
            f"</strong></p><p class=\"muted\">Recorded in the loop's decision log as a manual {esc(planned.kind)} by "
            f"{esc(who.name)} via console.</p><form method=\"post\" action=\"{BASE}/{planned.kind}\">"
            f"{csrf_field(who)}{fields}{reason}<button type=\"submit\">{esc(label)}</button> "
            f'<a href="{BASE}">Cancel</a></form></div>')
    return page(f"Confirm {planned.kind}", body, who, "releases")


@router.get(BASE + "/{kind}")
def confirm_page(request: Request, who: Who, kind: str, channel: str = "", version: str = "") -> Response:
    """What the action will do and a confirm button, or why it cannot be done. A number is a release's page."""
    if kind.isdigit():
        return release_page(request, who, int(kind))
    found = project(request)
    try:
        planned = plan(found, catalog(found), _counts(request), kind, channel, version or None)
    except UserError as refusal:
        return _refused(who, kind if kind in KINDS else "action", str(refusal))
    return _confirm(who, planned)


@router.post(BASE + "/{kind}")
async def do_action(request: Request, who: Who, kind: str) -> Response:
    """Do a confirmed action (CSRF-checked), then back to the releases page saying what happened."""
    form = await auth.checked_form(request, who)
    found = project(request)
    fields = {k: str(form.get(k) or "") for k in ("channel", "version", "expect_from", "force", "reason")}

    def act() -> str:
        return perform(found, _counts(request), kind, fields["channel"], fields["version"] or None,
                       f"{who.name} via console", expect_from=fields["expect_from"] or None,
                       force=fields["force"] == "1", reason=fields["reason"])

    try:
        message = await run_in_threadpool(act)
    except UserError as refusal:
        return _refused(who, kind if kind in KINDS else "action", str(refusal))
    return RedirectResponse(f"{BASE}?{urlencode({'done': message})}", status_code=303)


def release_page(request: Request, who: Who, version: int) -> Response:
    """One release's full record."""
    try:
        return _release_page(request, who, version)
    except UserError as exc:
        raise unreadable(exc) from None


def _release_page(request: Request, who: Who, version: int) -> Response:
    found = project(request)
    cat = catalog(found)
    release = cat.get(version)
    if release is None:
        have = ", ".join(str(r.version) for r in reversed(cat.releases)) or "none yet"
        return _refused(who, "show", f"no release {version} in the repository (releases: {have})")
    counts = _counts(request)
    halts = found.halts()
    m = release.manifest
    gate = m.gate
    rules = table(["rule", "result", "threshold", "observed", "detail"],
                  [[esc(r.name), badge("pass" if r.passed else "fail"), _number(r.threshold), _number(r.observed),
                    esc(r.detail)] for r in gate.rules], numeric=(2, 3))
    metrics = table(["metric", "candidate (holdout)"], [[esc(k), _number(v)] for k, v in sorted(gate.metrics.items())],
                    numeric=(1,))
    lin = m.lineage
    lineage = table(["what", "value"], [
        ["data hash", f"<code>{esc(lin.data_hash)}</code>"], ["params hash", f"<code>{esc(lin.params_hash)}</code>"],
        ["schema hash", f"<code>{esc(lin.schema_hash)}</code>"],
        ["dvc.lock hash", f"<code>{esc(lin.dvc_lock_hash or '-')}</code>"],
        ["git commit", f"<code>{esc(lin.git_commit)}</code>"],
        ["libraries", esc(", ".join(f"{k} {v}" for k, v in sorted(lin.libraries.items())) or "-")]])
    files = table(["file", "bytes", "sha256"], [[esc(n), str(size), f"<code>{esc(sha)}</code>"]
                                                 for n, (size, sha) in release.files.items()], numeric=(1,))
    moves = [e for e in cat.history if e.get("to") == version or e.get("from") == version]
    history = table(["time", "move", "channel", "from", "to"],
                    [[esc(fmt_time(str(e.get("time", "")).replace("Z", "+00:00"))), esc(e.get("event")),
                      esc(e.get("channel")), esc(e.get("from") or "-"), esc(e.get("to"))] for e in reversed(moves)],
                    empty="never moved")
    rollouts = table(["channel", "devices on it / following", "rejected it", "rolled back from it"],
                     [[esc(c), f"{r.on_it} / {r.expected}", str(r.rejected), str(r.rolled_back)]
                      for c in release.channels for r in [rollout(c, version, counts, halts)]],
                     numeric=(2, 3), empty="no channel points at it")
    channels = sorted(set(cat.pointers) | set(halts))
    body = (f"<h1>Release {version}</h1>"
            f"<p>candidate <code>{esc(m.candidate or m.version)}</code> &middot; created {esc(fmt_time(m.created))}"
            f" &middot; channels {_channels_cell(release, halts)}"
            f" &middot; gate {badge('passed' if gate.passed else 'failed')}"
            f" on {esc(gate.metric)} &middot; {_candidate_link(found, _current_candidate(found), release)}</p>"
            f"<p>{_promote_form(release, channels)}</p>"
            f"<h2>Rollout</h2>{rollouts}<h2>Gate rules</h2>{rules}<h2>Metrics</h2>{metrics}"
            f"<h2>Lineage</h2>{lineage}<h2>Files (signed TUF targets)</h2>{files}<h2>Channel history</h2>{history}"
            f'<p><a href="{BASE}">All releases</a></p>')
    return page(f"Release {version}", body, who, "releases")
