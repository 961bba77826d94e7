"""The demo's offline report: one self-contained HTML page, and the same story as terminal text.

``write_report(timeline, folder, title, summary)`` writes ``folder/index.html``: the run's summary (the
caller's ``summary`` dict plus headline numbers computed from the timeline), five inline SVG charts
(accuracy over time per group with version changes and drift onset marked, drift score per group, devices
per model version, cumulative bytes uploaded vs raw, and the events on a time strip), and a table of every
event. No scripts, no CDN, no URL: it opens from disk, offline. All text is escaped.
``terminal_summary(timeline, summary)`` gives the headline numbers, end state and event counts as text.

Leaves out running the demo (the orchestrator) and the series maths (``edgeloop.demo.timeline``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from edge.atomic import write_text_atomic
from edgeloop.demo.charts import events_strip, line_chart, stacked_area
from edgeloop.demo.timeline import (
    NO_MODEL,
    Sample,
    Timeline,
    accuracy_by_group,
    adoption,
    cumulative_bytes,
    drift_by_group,
    version_starts,
)

__all__ = ["REPORT_FILE", "bucket_hours", "headline", "terminal_summary", "write_report"]

REPORT_FILE = "index.html"
MAX_BUCKETS = 60  # points per line at most: ticks are pooled into buckets beyond that
MODERATE_PSI, MAJOR_PSI = 0.1, 0.25  # the edge's drift levels (edge.drift)
PERCENT = frozenset({"accuracy before drift", "lowest accuracy after drift", "accuracy at the end", "uploaded / raw"})

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg { width: 100%; height: auto; } .tick { font-size: 10px; fill: #555; } .axis { font-size: 11px; fill: #333; }
.legend { font-size: 11px; fill: #222; }
.marker { font-size: 9px; fill: #444; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.kind { font-weight: 600; } .note { color: #666; font-size: .9em; }
"""


def bucket_hours(samples: list[Sample]) -> float:
    """Bucket width for the time series: one tick, or wider so a line has at most ``MAX_BUCKETS`` points."""
    times = sorted({s.t_h for s in samples})
    steps = [b - a for a, b in zip(times, times[1:], strict=False) if b - a > 1e-9]
    tick = min(steps) if steps else (times[0] if times and times[0] > 0 else 1.0)
    return tick * max(1, math.ceil(len(times) / MAX_BUCKETS))


def _fleet_accuracy(samples: list[Sample], bucket_h: float) -> list[tuple[float, float]]:
    return accuracy_by_group([Sample(**{**s.__dict__, "group": "fleet"}) for s in samples], bucket_h).get("fleet", [])


def _pooled(samples: list[Sample]) -> float | None:
    scored = sum(s.scored for s in samples)
    return sum(s.correct for s in samples) / scored if scored else None


def headline(timeline: Timeline) -> dict[str, Any]:
    """Accuracy before drift / lowest after / at the end, bytes uploaded vs raw, end versions, event counts."""
    samples, events = timeline.samples, timeline.events
    onset = next((e.t_h for e in events if e.kind == "drift"), None)
    bucket = bucket_hours(samples) if samples else 1.0
    fleet = _fleet_accuracy(samples, bucket)
    end_h = max((s.t_h for s in samples), default=0.0)
    out: dict[str, Any] = {"simulated hours": round(end_h, 2), "devices": len({s.device for s in samples}),
                           "drift onset (h)": onset}
    if onset is not None:
        out["accuracy before drift"] = _pooled([s for s in samples if s.t_h <= onset])
        after = [a for t, a in fleet if t > onset + 1e-9]
        out["lowest accuracy after drift"] = min(after) if after else None
    tail = [s for s in samples if s.t_h >= end_h - 2 * bucket]
    out["accuracy at the end"] = _pooled(tail)
    totals = cumulative_bytes(samples)
    if totals:
        raw, uploaded = totals[-1][1], totals[-1][2]
        out["bytes raw"], out["bytes uploaded"] = raw, uploaded
        out["uploaded / raw"] = uploaded / raw if raw else None
    final = adoption(samples)
    out["versions at the end"] = final[-1][1] if final else {}
    out["events"] = dict(Counter(e.kind for e in events))
    return out


def _value(value: Any, percent: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:.2%}" if percent else f"{value:,.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return "-" if value is None else str(value)


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_value(v, k in PERCENT))}</td></tr>"
                   for k, v in rows.items())
    return f"<table>{body}</table>"


def _charts(timeline: Timeline) -> list[tuple[str, str, str]]:
    """(heading, note, svg) per chart."""
    samples, events = timeline.samples, timeline.events
    bucket = bucket_hours(samples) if samples else 1.0
    span = (0.0, max([s.t_h for s in samples] + [e.t_h for e in events], default=1.0))
    first = min((s.t_h for s in samples), default=0.0)
    drift_marks = [(e.t_h, "drift onset") for e in events if e.kind == "drift"]
    version_marks = [(t, f"{group}: {version}") for t, group, version in version_starts(samples) if t > first]
    accuracy = line_chart("Accuracy over time per group", accuracy_by_group(samples, bucket), x_label="simulated hours",
                          y_label="accuracy (truth)", y_format="%", markers=drift_marks + version_marks, x_range=span)
    drift = line_chart("Drift score over time per group", drift_by_group(samples, bucket), x_label="simulated hours",
                       y_label="max feature PSI", markers=drift_marks, x_range=span,
                       hlines=[(MODERATE_PSI, "moderate"), (MAJOR_PSI, "major")])
    spread = adoption(samples)
    versions = sorted({v for _, counts in spread for v in counts}, key=lambda v: (v == NO_MODEL, v))
    layers = {v: [float(counts.get(v, 0)) for _, counts in spread] for v in versions}
    versions_svg = stacked_area("Devices per model version", [t for t, _ in spread], layers,
                                x_label="simulated hours", y_label="devices", markers=drift_marks, x_range=span)
    totals = cumulative_bytes(samples)
    byte_series = {"raw": [(t, float(raw)) for t, raw, _ in totals],
                   "uploaded": [(t, float(up)) for t, _, up in totals]}
    bytes_svg = line_chart("Bytes uploaded vs raw (cumulative)", byte_series, x_label="simulated hours",
                           y_label="bytes", markers=drift_marks, x_range=span)
    strip = events_strip("Events", [(e.t_h, e.kind, _event_text(e)) for e in events], x_label="simulated hours",
                         x_range=span)
    return [
        ("Accuracy over time", "Share of predictions matching the simulator's truth, per group; dashed lines: "
         "drift onset and the first time a group ran each version.", accuracy),
        ("Drift score", "Mean over the group's devices of the runner's max feature PSI.", drift),
        ("Version adoption", "Devices running each model version.", versions_svg),
        ("Bytes uploaded vs raw", "Cumulative CSV bytes of every row seen vs bytes the runners uploaded.", bytes_svg),
        ("Events", "Each dot is an event (hover for details); all are listed below.", strip),
    ]


def _event_text(event: Any) -> str:
    who = f" [{event.device}]" if event.device else ""
    version = f" {event.version}" if event.version else ""
    return f"{event.t_h:.2f} h: {event.kind}{version}{who}: {event.detail}"


def _events_table(timeline: Timeline) -> str:
    rows = ["<tr><th>sim h</th><th>wall s</th><th>event</th><th>version</th><th>device</th><th>detail</th></tr>"]
    for e in sorted(timeline.events, key=lambda e: (e.t_h, e.wall_s)):
        rows.append(f'<tr><td class="num">{e.t_h:.2f}</td><td class="num">{e.wall_s:.1f}</td>'
                    f'<td class="kind">{escape(e.kind)}</td><td>{escape(e.version or "")}</td>'
                    f"<td>{escape(e.device or '')}</td><td>{escape(e.detail)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def render(timeline: Timeline, title: str, summary: dict[str, Any]) -> str:
    """The report page as a string."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<h2>Summary</h2>", _table({**summary, **headline(timeline)}),
    ]
    for heading, note, svg in _charts(timeline):
        parts += [f"<h2>{escape(heading)}</h2>", f'<p class="note">{escape(note)}</p>', svg]
    parts += ["<h2>Event log</h2>", _events_table(timeline), "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(timeline: Timeline, folder: Path, title: str, summary: dict[str, Any]) -> Path:
    """Write ``folder/index.html`` (atomically) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    write_text_atomic(path, render(timeline, title, summary))
    return path


def terminal_summary(timeline: Timeline, summary: dict[str, Any]) -> str:
    """Plain text: the caller's summary, the headline numbers and the last events."""
    lines = [f"{key}: {_value(value, key in PERCENT)}" for key, value in {**summary, **headline(timeline)}.items()]
    recent = sorted(timeline.events, key=lambda e: (e.t_h, e.wall_s))[-12:]
    if recent:
        lines.append("events (latest last):")
        lines += [f"  {_event_text(e)}" for e in recent]
    return "\n".join(lines)
