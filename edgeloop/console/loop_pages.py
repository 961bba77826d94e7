"""Console routes: the loop's decisions and the quality of each release over time.

``GET /console/loop``: trend charts first (the Evidently-UI kind of view: each release's gate metrics across
retrain runs, each release's estimated accuracy on the fleet in the soak checks, and the monitor's fleet
estimated accuracy and drift share over time with their thresholds), then the decisions of the loop log,
newest first, fired ones by default (a plain GET form filters by state, source and kind; ``limit`` shows
more), each with its observed values as readable ``name = value`` lines. An unknown filter value answers
400 with the values that exist.

Leaves out: reading and flattening the log (``loop_data``), the page shell, charts and authentication
(``layout``, ``charts``, ``auth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import Response

from edge.contracts.errors import UserError
from edgeloop.console import auth
from edgeloop.console.auth import Operator
from edgeloop.console.charts import line_chart
from edgeloop.console.layout import badge, esc, fmt_time, page, table
from edgeloop.console.loop_data import (
    KINDS,
    SOURCES,
    STATES,
    Filters,
    decisions,
    flatten,
    gate_series,
    monitor_series,
    soak_series,
)
from edgeloop.console.release_data import catalog, project

__all__ = ["router"]

router = auth.console_router()
Who = Annotated[Operator, Depends(auth.operator)]
BASE = "/console/loop"
DEFAULT_LIMIT = 100


def _select(name: str, values: tuple[str, ...], chosen: str, any_label: str | None) -> str:
    options = [f'<option value="">{esc(any_label)}</option>'] if any_label else []
    options += [f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v)}</option>' for v in values]
    return f'<label>{esc(name)}<select name="{esc(name)}">{"".join(options)}</select></label>'


def _filters_form(filters: Filters) -> str:
    return (f'<form method="get" action="{BASE}" class="filters">'
            f'{_select("state", STATES, filters.state, None)}{_select("source", SOURCES, filters.source, "any")}'
            f'{_select("kind", KINDS, filters.kind, "any")}<button type="submit">Show</button></form>')


def _observed(entry: Mapping[str, Any]) -> str:
    pairs = flatten(entry.get("observed") or {})
    for trigger in entry.get("triggers") or ():  # a monitor pass: each trigger's state beside its value
        if isinstance(trigger, Mapping) and trigger.get("state") == "fired":
            pairs.append((f"{trigger.get('name')} fired", str(trigger.get("detail", ""))))
    if entry.get("failure"):
        pairs.append(("could not act", str(entry["failure"])))
    return "<br>".join(f"{esc(name)} = {esc(value)}" for name, value in pairs) or '<span class="muted">-</span>'


def _who(entry: Mapping[str, Any]) -> str:
    return esc(entry.get("by") or entry.get("requested_by") or "")


def _decisions_table(entries: list[Mapping[str, Any]]) -> str:
    rows = [[esc(fmt_time(str(e.get("at", "")))), esc(e.get("source", "")), esc(e.get("kind", "")),
             badge("fired" if e.get("fired") else "quiet", "warn" if e.get("fired") else "muted"),
             esc(e.get("summary", "")), _who(e), _observed(e)] for e in entries]
    return table(["time", "source", "kind", "state", "summary", "who", "observed"], rows,
                 empty="no decisions match: try state = all")


def _charts(request: Request, entries: list[dict[str, Any]]) -> str:
    found = project(request)
    gates = gate_series(catalog(found).releases)
    soaks = soak_series(entries)
    accuracy, drift, thresholds = monitor_series(entries)
    floor = [(thresholds["accuracy_drop"], "accuracy floor")] if "accuracy_drop" in thresholds else []
    share = [(thresholds["fleet_drift"], "retrain at")] if "fleet_drift" in thresholds else []
    charts = [
        line_chart(gates, title="Gate metrics of each release (holdout)", y_label="metric"),
        line_chart(soaks, title="Estimated accuracy of each release on the fleet (soak checks)",
                   y_label="accuracy (IPW)"),
        line_chart(accuracy, title="Fleet estimated accuracy (monitor)", y_label="accuracy (IPW)", thresholds=floor),
        line_chart(drift, title="Share of active devices drifting (monitor)", y_label="share", thresholds=share,
                   y_range=(0.0, 1.0)),
    ]
    notes = ('<p class="muted">x axis of the first chart: release number. The others: time (UTC).</p>')
    grid = "display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:.8rem"
    figures = "".join(f'<figure style="margin:0">{c}</figure>' for c in charts)
    return f'<div class="charts" style="{grid}">{figures}</div>{notes}'


@router.get(BASE)
def loop_page(request: Request, who: Who, state: str | None = None, source: str | None = None,
              kind: str | None = None, limit: int = DEFAULT_LIMIT) -> Response:
    """The trends, then the filtered decisions (newest first)."""
    try:
        filters = Filters.of(state, source, kind)
    except UserError as refusal:
        body = (f'<h1>Loop</h1><div class="message" role="alert"><p>{esc(str(refusal))}</p></div>'
                f'<p><a href="{BASE}">All fired decisions</a></p>')
        return page("Loop", body, who, "loop", status_code=400)
    found = project(request)
    entries = decisions(found.log)
    try:
        charts = _charts(request, entries)
    except UserError as exc:  # e.g. a corrupt release manifest: the decisions still show
        charts = f'<div class="message" role="alert"><p>{esc(str(exc))}</p></div>'
    kept = filters.apply(entries)
    limit = max(1, limit)
    shown = kept[:limit]
    more = ""
    if len(kept) > limit:
        query = urlencode({"state": filters.state, "source": filters.source, "kind": filters.kind,
                           "limit": limit * 5})
        more = f'<p><a href="{BASE}?{query}">Show more ({len(kept) - limit} older)</a></p>'
    counts = f"{len(shown)} of {len(kept)} matching ({len(entries)} decisions in {found.log.name})"
    body = (f"<h1>Loop</h1><h2>Quality over time</h2>{charts}"
            f"<h2>Decisions</h2>{_filters_form(filters)}<p class=\"muted\">{esc(counts)}</p>"
            f"{_decisions_table(shown)}{more}")
    return page("Loop", body, who, "loop")
