"""The demo's offline report: one self-contained HTML page, and the same story as terminal text.

``write_report(timeline, folder, title, summary)`` writes ``folder/index.html``: the run's summary in
rows named for people ("devices that updated to release 3: 4 of 4", counts of what happened in words),
six inline SVG charts (accuracy over time per group with version changes and drift onset marked, drift
score per group on a log axis with the "moderate" and "major" PSI thresholds drawn and labelled, the
sampling rate per group (the random rate the runners' upload policies set, and the share of labelled rows
the random rule uploaded), devices per release, cumulative bytes uploaded vs raw, and the events on a time
strip, all on one time axis; the sampling chart only when the timeline has rates), and every event in time order,
described in words. No scripts, no CDN, no URL: it opens from disk, offline. All text is escaped.
``terminal_summary(timeline, summary)`` gives the same summary rows and the latest events as text.
``worse_candidate_page(name, decision)`` is the page of the candidate the demo makes worse on purpose: it
says so, and why the demo publishes it.

``headline`` keeps its machine keys (tests, benchmarks and ``run_demo``'s result use them); only the
rendering speaks in words. Leaves out running the demo (the orchestrator), the series maths
(``edgeloop.demo.timeline``) and drawing (``edgeloop.demo.charts``).
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from edge.atomic import write_text_atomic
from edgeloop.demo.charts import PALETTE, events_strip, line_chart, stacked_area
from edgeloop.demo.timeline import (
    NO_MODEL,
    Event,
    Sample,
    Timeline,
    accuracy_by_group,
    adoption,
    cumulative_bytes,
    drift_by_group,
    sampling_by_group,
    version_starts,
)

__all__ = ["REPORT_FILE", "bucket_hours", "describe_event", "headline", "ordered_events", "sampling_svg",
           "summary_rows", "terminal_summary", "worse_candidate_page", "write_report"]

REPORT_FILE = "index.html"
MAX_BUCKETS = 60  # points per line at most: ticks are pooled into buckets beyond that
MODERATE_PSI, MAJOR_PSI = 0.1, 0.25  # the edge's drift levels (edge.drift)
PERCENT = frozenset({"accuracy before drift", "lowest accuracy after drift", "accuracy at the end", "uploaded / raw"})
WORSE_WHY = ("The demo trains this model on flipped labels and publishes it to the canary channel on purpose, "
             "past the gate, to show the two safety nets after it: canary devices compare it with their active "
             "model on their own labelled rows and refuse it, and the promote-soaked flow rolls canary back. "
             "Never promote it.")

# event kind -> (one event, several) in words; other kinds are shown with "_" as spaces
KIND_WORDS = {
    "publish": ("release published", "releases published"),
    "promote": ("release promoted", "releases promoted"),
    "activate": ("device took a release", "times a device took a release"),
    "reject": ("device refused a release", "times a device refused a release"),
    "bundle_quarantined": ("refused release set aside", "refused releases set aside"),
    "rollback": ("rollback", "rollbacks"),
    "drift": ("drift onset", "drift onsets"),
    "retrain": ("retrain fired", "retrains fired"),
    "quarantine": ("batch quarantined", "batches quarantined"),
    "recovered": ("fleet recovered", "fleet recoveries"),
    "gate_blocked": ("gate blocked a candidate", "candidates blocked by the gate"),
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
svg { width: 100%; height: auto; } .tick { fill: #555; } .axis { fill: #333; } .legend { fill: #222; }
.marker { fill: #333; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.kind { font-weight: 600; white-space: nowrap; } .note { color: #666; font-size: .9em; }
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


def ordered_events(timeline: Timeline) -> list[Event]:
    """The events in time order: simulated hour, then the moment they were recorded (stable for ties)."""
    return sorted(timeline.events, key=lambda e: (e.t_h, e.wall_s))


def headline(timeline: Timeline) -> dict[str, Any]:
    """Accuracy before drift / lowest after / at the end, bytes uploaded vs raw, end versions, event counts."""
    samples, events = timeline.samples, ordered_events(timeline)
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


# -- words --------------------------------------------------------------------------------------------------


def _value(value: Any, percent: bool = False) -> str:
    """A value for people: numbers with separators, percentages, mappings as "key: value" pairs."""
    if isinstance(value, float):
        return f"{value:.2%}" if percent else f"{value:,.6g}"
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "-"
    return str(value)


def _release(version: Any) -> str:
    return "no model" if version in (None, NO_MODEL) else f"release {version}"


def _bytes(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:,} bytes"


def _hours(hours: float) -> str:
    days = f" ({hours / 24:.1f} days)" if hours >= 48 else ""
    return f"{hours:,.1f} hours{days}"


def kind_words(kind: str, count: int = 1) -> str:
    one, many = KIND_WORDS.get(kind, (kind.replace("_", " "),) * 2)
    return one if count == 1 else many


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind_words(kind, count)}" for kind, count in counts.items()) or "nothing"


def _groups(timeline: Timeline) -> str:
    group_of = {s.device: s.group for s in timeline.samples}
    counts = Counter(group_of.values())
    return ", ".join(f"{n} {group}" for group, n in sorted(counts.items()))


def _updated_to(timeline: Timeline, version: Any) -> int:
    return len({s.device for s in timeline.samples if s.model_version == str(version)})


def _worse_outcome(timeline: Timeline, version: Any) -> str:
    refused = {e.device for e in timeline.events if e.kind == "reject" and e.version == str(version)}
    took = _updated_to(timeline, version)
    rolled = any(e.kind == "rollback" and f"release {version} " in f"{e.detail} " for e in timeline.events)
    parts = [f"refused by {len(refused)} canary device{'s' if len(refused) != 1 else ''}" if refused else
             "refused by no device"]
    if took:
        parts.append(f"run by {took} device{'s' if took != 1 else ''}")
    parts.append("canary rolled back" if rolled else "no rollback recorded")
    return "; ".join(parts)


def summary_rows(timeline: Timeline, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows for people, in the story's order: the caller's ``summary`` (``run_demo``'s result)
    and ``headline``'s numbers, with keys it does not know shown as they are, at the end."""
    values = {**headline(timeline), **summary}
    done: set[str] = set()
    rows: list[tuple[str, str]] = []

    def take(*keys: str) -> list[Any]:
        done.update(keys)
        return [values.get(key) for key in keys]

    devices, hours = take("devices", "simulated hours")
    groups = _groups(timeline)
    rows.append(("devices in the fleet", f"{devices}" + (f" ({groups})" if groups else "")))
    rows.append(("simulated time", _hours(float(hours or 0.0))))
    v1, worse, v2 = take("v1", "worse candidate", "v2")
    if v1 is not None:
        rows.append(("first model (v1)", f"{_release(v1)}, trained on the simulated history"))
    if worse is not None:
        rows.append(("deliberately worse candidate", f"{_release(worse)}: trained on flipped labels and published "
                     f"to canary on purpose, to show devices refusing it and canary rolling back "
                     f"({_worse_outcome(timeline, worse)})"))
    (onset,) = take("drift onset (h)")
    rows.append(("sensor drift starts", "no drift" if onset is None else f"at hour {float(onset):,.1f}"))
    if "v2" in summary:
        rows.append(("retrained model (v2)", "none: no retrained candidate passed the gate" if v2 is None else
                     f"{_release(v2)}, trained on the ground truth the devices uploaded"))
        if v2 is not None:
            rows.append((f"devices that updated to {_release(v2)}", f"{_updated_to(timeline, v2)} of {devices}"))
    before, lowest, end = take("accuracy before drift", "lowest accuracy after drift", "accuracy at the end")
    if onset is not None:
        rows.append(("fleet accuracy before the drift", _value(before, True)))
        rows.append(("lowest fleet accuracy after the drift", _value(lowest, True)))
    rows.append(("fleet accuracy at the end", _value(end, True)))
    sim_h, wall_s = take("drift onset -> fleet recovered (simulated h)", "drift onset -> fleet recovered (wall s)")
    if sim_h is not None:
        rows.append(("from the drift to a recovered fleet",
                     f"{float(sim_h):,.1f} simulated hours ({float(wall_s or 0):,.1f} s of demo time)"))
    (final,) = take("versions at the end")
    if isinstance(final, dict):
        rows.append(("models running at the end", "; ".join(
            f"{_release(version)} on {count} of {devices} devices" for version, count in sorted(final.items()))
            or "-"))
    raw, uploaded, share, labelled = take("bytes raw", "bytes uploaded", "uploaded / raw", "labelled rows uploaded")
    if raw is not None:
        rows.append(("data the devices saw", f"{_bytes(int(raw))} of CSV rows"))
        sent = f"{_bytes(int(uploaded or 0))}, {_value(share, True)} of what the devices saw"
        rows.append(("data uploaded to the hub", sent + (f" ({labelled:,} labelled rows)" if labelled else "")))
    (events,) = take("events")
    if isinstance(events, dict):
        rows.append(("what happened", _counted(events)))
    (wall,) = take("demo wall time (s)")
    if wall is not None:
        rows.append(("demo run time", f"{float(wall):,.1f} s"))
    rows += [(key, _value(value, key in PERCENT)) for key, value in values.items() if key not in done]
    return rows


_PREVIOUS = re.compile(r"previous: (\S+)")
_SHADOW = re.compile(r"shadow: (\S+) ([\d.]+) on (\d+) labelled rows: worse than the active model's ([\d.]+) "
                     r"minus margin ([\d.]+)")
_REFUSED = re.compile(r"release (\S+) refused")
_TRIGGERS = re.compile(r"monitor fired: retrain: (.*?)(?: fired)?$")
_BATCH = re.compile(r"^(?P<source>[^/\s]+)/(?P<name>\S+?)(?:\.reason\.txt)?: (?P<reason>.*)$", re.S)
_DEVICE_PREFIX = re.compile(r"^(?P<device>[^:]+?) \((?P<group>[^)]*)\): (?P<kind>[a-z_]+)(?:: (?P<rest>.*))?$", re.S)


def _mapping_words(text: str) -> str:
    """A detail that is a printed dict or list, in words; other text as it is."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return text
    try:
        found = ast.literal_eval(text[start:])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(found, dict) and found.get("reasons"):
        return text[:start] + "; ".join(str(r) for r in found["reasons"])
    return text[:start] + _value(found)


def describe_event(event: Event, worse: Any = None) -> str:
    """One event in a sentence: who, what, and the numbers behind it (no raw JSON or Python reprs)."""
    detail = event.detail.strip()
    who = _DEVICE_PREFIX.match(detail)
    if who:
        device, rest = f"{who['device']} ({who['group']})", (who["rest"] or "").strip()
        if event.kind == "activate":
            previous = _PREVIOUS.search(rest)
            before = (f", replacing {_release(previous[1])}" if previous and previous[1] != "None"
                      else " (its first model)")
            return f"{device} now runs {_release(event.version)}{before}"
        if event.kind == "reject":
            shadow = _SHADOW.search(rest)
            if shadow:
                metric, value, rows, active, margin = shadow.groups()
                return (f"{device} refused {_release(event.version)}: on its own {int(rows):,} labelled rows it "
                        f"scored {metric} {value}, below the active model's {active} minus the {margin} margin")
            return f"{device} refused {_release(event.version)}: {rest.removeprefix('blocked: ')}"
        if event.kind == "bundle_quarantined":
            refused = _REFUSED.search(rest)
            what = _release(refused[1]) if refused else "a refused release"
            return f"{device} set {what} aside in its quarantine folder (kept, not deleted)"
        return f"{device}: {kind_words(event.kind)}" + (f": {_mapping_words(rest)}" if rest else "")
    if event.kind == "publish" and worse is not None and event.version == str(worse):
        return (f"{_release(event.version)} published to canary: the deliberately worse candidate (flipped labels), "
                "sent on purpose to show devices refusing it and canary rolling back")
    if event.kind == "retrain":
        triggers = _TRIGGERS.search(detail)
        if triggers:
            return f"the monitor fired a retrain (triggers: {triggers[1].replace('_', ' ')})"
    batch = _BATCH.match(detail) if event.kind == "quarantine" else None
    if batch:
        return f"ingest quarantined a batch from {batch['source']} ({batch['name'][:12]}\u2026): {batch['reason']}"
    text = _mapping_words(detail) or kind_words(event.kind)
    if event.kind == "publish" and event.version:
        text = f"{_release(event.version)}: {text}"
    return f"{event.device}: {text}" if event.device and event.device not in text else text


def _event_line(event: Event, worse: Any = None) -> str:
    return f"hour {event.t_h:,.1f}: {kind_words(event.kind)}: {describe_event(event, worse)}"


# -- the page -----------------------------------------------------------------------------------------------


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _charts(timeline: Timeline, worse: Any = None) -> list[tuple[str, str, str]]:
    """(heading, note, svg) per chart."""
    samples, events = timeline.samples, ordered_events(timeline)
    bucket = bucket_hours(samples) if samples else 1.0
    series = {"accuracy": accuracy_by_group(samples, bucket), "drift": drift_by_group(samples, bucket)}
    ends = [x for by_group in series.values() for points in by_group.values() for x, _ in points]
    span = (0.0, max([s.t_h for s in samples] + [e.t_h for e in events] + ends, default=1.0))
    first = min((s.t_h for s in samples), default=0.0)
    drift_marks = [(e.t_h, "drift starts") for e in events if e.kind == "drift"]
    version_marks = [(t, f"{group} on {_release(version)}") for t, group, version in version_starts(samples)
                     if t > first]
    accuracy = line_chart("Accuracy over time per group", series["accuracy"], x_label="simulated hours",
                          y_label="accuracy (truth)", y_format="%", markers=drift_marks + version_marks, x_range=span)
    drift = line_chart("Drift score over time per group", series["drift"], x_label="simulated hours",
                       y_label="max feature PSI (log scale)", y_log=True, markers=drift_marks, x_range=span,
                       hlines=[(MODERATE_PSI, f"moderate drift (PSI {MODERATE_PSI:g})"),
                               (MAJOR_PSI, f"major drift (PSI {MAJOR_PSI:g})")])
    sampling = sampling_svg(timeline, bucket, span, drift_marks) if timeline.rates else None  # none before issue 15
    spread = adoption(samples)
    versions = sorted({v for _, counts in spread for v in counts}, key=lambda v: (v == NO_MODEL, v))
    layers = {_release(v): [float(counts.get(v, 0)) for _, counts in spread] for v in versions}
    versions_svg = stacked_area("Devices per release", [t for t, _ in spread], layers,
                                x_label="simulated hours", y_label="devices", markers=drift_marks, x_range=span)
    totals = cumulative_bytes(samples)
    byte_series = {"seen (raw)": [(t, float(raw)) for t, raw, _ in totals],
                   "uploaded": [(t, float(up)) for t, _, up in totals]}
    bytes_svg = line_chart("Bytes uploaded vs raw (cumulative)", byte_series, x_label="simulated hours",
                           y_label="bytes", markers=drift_marks, x_range=span)
    strip = events_strip("Events", [(e.t_h, kind_words(e.kind), _event_line(e, worse)) for e in events],
                         x_label="simulated hours", x_range=span)
    return [
        ("Accuracy over time", "Share of predictions matching the simulator's truth, per group; dashed lines: "
         "the drift's start and the first time a group ran each release.", accuracy),
        ("Drift score", f"Mean over the group's devices of the runner's largest feature PSI, on a log scale; dashed "
         f"lines: the edge's drift levels, moderate from PSI {MODERATE_PSI:g} and major from {MAJOR_PSI:g}.", drift),
        *([] if sampling is None else [(
            "Sampling rate per group", "Solid: share of the group's labelled rows that the random rule uploaded "
            "(rows uploaded because the model was wrong, unsure or saw an anomaly are not counted); dashed: the "
            "random rate the group's runners' upload policies set (their mean; a signed runner policy can change "
            "it while they run). Hover a dot for its value.", sampling)]),
        ("Releases on the fleet", "Devices running each release.", versions_svg),
        ("Bytes uploaded vs raw", "Cumulative CSV bytes of every row the devices saw vs bytes they uploaded.",
         bytes_svg),
        ("Events", "Each dot is an event (hover for details); all are listed below, in time order.", strip),
    ]


GROUP_COLORS = {"canary": "#1f77b4", "stable": "#2ca02c"}


def sampling_svg(timeline: Timeline, bucket_h: float, x_range: tuple[float, float],
                 markers: list[tuple[float, str]]) -> str:
    """The "sampling rate per group" chart: per group (canary, then stable, then any other), the rate its
    runners' upload policies set (dashed) and the share the random rule uploaded (solid), in percent."""
    by_group = sampling_by_group(timeline.rates, bucket_h)
    series: dict[str, list[tuple[float, float]]] = {}
    colors: dict[str, str] = {}
    dashed: list[str] = []
    order = [g for g in GROUP_COLORS if g in by_group] + sorted(g for g in by_group if g not in GROUP_COLORS)
    for i, group in enumerate(order):
        color = GROUP_COLORS.get(group, PALETTE[(i + 3) % len(PALETTE)])
        policy, used = f"{group}: policy rate", f"{group}: used rate"
        series[policy], series[used] = by_group[group]["configured"], by_group[group]["used"]
        colors[policy] = colors[used] = color
        dashed.append(policy)
    values = [y for points in series.values() for _, y in points]
    top = min(1.0, max(values, default=0.0) * 1.15) or 0.05
    return line_chart("Sampling rate per group", series, x_label="simulated hours",
                      y_label="random sampling rate", y_format="%", y_range=(0.0, top), markers=markers,
                      x_range=x_range, colors=colors, dashed=dashed, tip_format="{:.2%}")


def _events_table(timeline: Timeline, worse: Any = None) -> str:
    rows = ["<tr><th>simulated hour</th><th>demo second</th><th>what</th><th>details</th></tr>"]
    for e in ordered_events(timeline):
        rows.append(f'<tr><td class="num">{e.t_h:,.1f}</td><td class="num">{e.wall_s:,.1f}</td>'
                    f'<td class="kind">{escape(kind_words(e.kind))}</td>'
                    f"<td>{escape(describe_event(e, worse))}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def render(timeline: Timeline, title: str, summary: dict[str, Any]) -> str:
    """The report page as a string."""
    worse = summary.get("worse candidate")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<h2>Summary</h2>", _table(summary_rows(timeline, summary)),
    ]
    for heading, note, svg in _charts(timeline, worse):
        parts += [f"<h2>{escape(heading)}</h2>", f'<p class="note">{escape(note)}</p>', svg]
    parts += ["<h2>What happened, in time order</h2>", _events_table(timeline, worse), "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(timeline: Timeline, folder: Path, title: str, summary: dict[str, Any]) -> Path:
    """Write ``folder/index.html`` (atomically) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    write_text_atomic(path, render(timeline, title, summary))
    return path


def terminal_summary(timeline: Timeline, summary: dict[str, Any]) -> str:
    """Plain text: the summary rows and the last 12 events, in time order."""
    lines = [f"{key}: {value}" for key, value in summary_rows(timeline, summary)]
    recent = ordered_events(timeline)[-12:]
    if recent:
        lines.append("events (latest last):")
        lines += [f"  {_event_line(e, summary.get('worse candidate'))}" for e in recent]
    return "\n".join(lines)


def worse_candidate_page(name: str, decision: dict[str, Any]) -> str:
    """index.html of the deliberately worse candidate's folder: what it is, why the demo publishes it, and
    that the gate never judged it (the rules in its decision.json belong to the candidate it was copied from)."""
    copied = decision.get("copied_from")
    source = (f" It never went through the gate: its decision.json is candidate {copied}'s, copied because "
              "publishing needs one." if copied else " It never went through the gate.")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeloop demo: deliberately worse candidate {escape(name)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #1d2330; }}
.warn {{ border-left: .4rem solid #c62828; background: #fdecea; padding: .8rem 1rem; }}</style></head><body>
<h1>Candidate <code>{escape(name)}</code>: deliberately worse (demo)</h1>
<p class="warn"><b>This model is worse on purpose.</b> {escape(WORSE_WHY)}{escape(source)}</p>
<p>Same features and training settings as the model it stands beside; only the labels were flipped (0 and 1
swapped), so it predicts the opposite of the truth most of the time.</p>
<p>What happened to it is in the demo report (<code>reports/demo/index.html</code>): the devices that refused it,
with the shadow numbers, and the rollback.</p>
<ul><li><a href="manifest.json">manifest.json</a></li><li><a href="decision.json">decision.json</a></li></ul>
</body></html>
"""
