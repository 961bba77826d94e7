"""Inline SVG charts drawn in Python for the demo report: lines, stacked areas and an event strip.

Each function returns one ``<svg>`` element as a string, sized by ``viewBox`` (it scales with the page),
with axes, ticks, a legend and optional vertical markers (version changes, drift onset). Every piece of
text is XML-escaped here, so callers may pass device names, versions and details as they come. No
scripts, no external references, no styling beyond presentation attributes and the report's CSS classes.
Leaves out the page around the charts (``edgeloop.demo.report``) and computing the series
(``edgeloop.demo.timeline``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["PALETTE", "events_strip", "line_chart", "stacked_area"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 30, 40  # margins: the legend sits on the right

Points = Sequence[tuple[float, float]]


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= step * factor:
            step *= factor
            break
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


class _Frame:
    """Maps data coordinates to the plot area and draws the axes."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0

    def x(self, value: float) -> float:
        return round(LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT), 2)

    def y(self, value: float) -> float:
        return round(HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM), 2)

    def axes(self, x_label: str, y_label: str, y_format: str = "g") -> list[str]:
        out = [f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
               f'fill="#fff" stroke="#999"/>']
        for tick in _ticks(self.y0, self.y1):
            y = self.y(tick)
            label = f"{tick:.0%}" if y_format == "%" else _fmt(tick)
            out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#eee"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" class="tick">{_t(label)}</text>')
        for tick in _ticks(self.x0, self.x1, 8):
            x = self.x(tick)
            out.append(f'<text x="{x}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">'
                       f'{_t(_fmt(tick))}</text>')
        out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" class="axis">'
                   f'{_t(x_label)}</text>')
        out.append(f'<text transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{_t(y_label)}</text>')
        return out

    def markers(self, markers: Sequence[tuple[float, str]]) -> list[str]:
        out = []
        for i, (at, label) in enumerate(markers):
            if not self.x0 <= at <= self.x1:
                continue
            x = self.x(at)
            out.append(f'<line x1="{x}" x2="{x}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#555" '
                       f'stroke-dasharray="4 3"/>')
            out.append(f'<text x="{x + 3}" y="{TOP + 11 + 11 * (i % 4)}" class="marker">{_t(label)}</text>')
        return out


def _svg(title: str, body: list[str]) -> str:
    # No xmlns: inline SVG in HTML5 needs none, and the page then names no URL at all.
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{_t(title)}"><title>{_t(title)}</title>' + "".join(body) + "</svg>")


def _legend(names: Sequence[str], colors: Sequence[str]) -> list[str]:
    out = []
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        y = TOP + 8 + 18 * i
        out.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="12" height="10" fill="{color}"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 30}" y="{y + 1}" class="legend">{_t(name)}</text>')
    return out


def _range(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    return min(values) - pad, max(values) + pad


def line_chart(title: str, series: Mapping[str, Points], *, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None, y_format: str = "g",
               markers: Sequence[tuple[float, str]] = (), hlines: Sequence[tuple[float, str]] = (),
               x_range: tuple[float, float] | None = None) -> str:
    """One line per series (``name -> [(x, y)]``), vertical ``markers`` and horizontal ``hlines``."""
    xs = [x for points in series.values() for x, _ in points] + [at for at, _ in markers]
    ys = [y for points in series.values() for _, y in points] + [y for y, _ in hlines]
    frame = _Frame(x_range or _range(xs), y_range or _range(ys))
    body = frame.axes(x_label, y_label, y_format)
    for value, label in hlines:
        y = frame.y(value)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#aaa" stroke-dasharray="2 2"/>')
        body.append(f'<text x="{WIDTH - RIGHT - 4}" y="{y - 3}" text-anchor="end" class="marker">{_t(label)}</text>')
    body += frame.markers(markers)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    for (_name, points), color in zip(series.items(), colors, strict=True):
        if not points:
            continue
        path = " ".join(f"{frame.x(x)},{frame.y(y)}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(points) == 1:
            body.append(f'<circle cx="{frame.x(points[0][0])}" cy="{frame.y(points[0][1])}" r="3" fill="{color}"/>')
    body += _legend(list(series), colors)
    return _svg(title, body)


def stacked_area(title: str, times: Sequence[float], layers: Mapping[str, Sequence[float]], *, x_label: str,
                 y_label: str, markers: Sequence[tuple[float, str]] = (),
                 x_range: tuple[float, float] | None = None) -> str:
    """Layers stacked bottom-up at each time (``name -> value per time``), e.g. devices per version."""
    totals = [sum(values[i] for values in layers.values()) for i in range(len(times))]
    frame = _Frame(x_range or _range(list(times)), (0.0, max(totals, default=1.0) or 1.0))
    body = frame.axes(x_label, y_label)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(layers))]
    below = [0.0] * len(times)
    for (_name, values), color in zip(layers.items(), colors, strict=True):
        above = [b + v for b, v in zip(below, values, strict=True)]
        if times:
            top = [f"{frame.x(t)},{frame.y(v)}" for t, v in zip(times, above, strict=True)]
            bottom = [f"{frame.x(t)},{frame.y(v)}" for t, v in zip(reversed(times), reversed(below), strict=True)]
            body.append(f'<polygon points="{" ".join(top + bottom)}" fill="{color}" fill-opacity="0.75" '
                        f'stroke="{color}"/>')
        below = above
    body += frame.markers(markers)
    body += _legend(list(layers), colors)
    return _svg(title, body)


def events_strip(title: str, events: Sequence[tuple[float, str, str]], *, x_label: str,
                 x_range: tuple[float, float] | None = None) -> str:
    """One row per event kind, a dot per event at its time (``(t, kind, tooltip)``)."""
    kinds = list(dict.fromkeys(kind for _, kind, _ in events))
    frame = _Frame(x_range or _range([t for t, _, _ in events]), (0.0, float(max(len(kinds), 1))))
    body = frame.axes(x_label, "")[:1]  # the plot box only: rows are named in the legend area
    for tick in _ticks(frame.x0, frame.x1, 8):
        body.append(f'<text x="{frame.x(tick)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">'
                    f'{_t(_fmt(tick))}</text>')
    body.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" class="axis">'
                f'{_t(x_label)}</text>')
    colors = {kind: PALETTE[i % len(PALETTE)] for i, kind in enumerate(kinds)}
    for i, kind in enumerate(kinds):
        y = frame.y(len(kinds) - i - 0.5)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#eee"/>')
        body.append(f'<text x="{WIDTH - RIGHT + 8}" y="{y + 4}" class="legend">{_t(kind)}</text>')
    for t, kind, tip in events:
        y = frame.y(len(kinds) - kinds.index(kind) - 0.5)
        body.append(f'<circle cx="{frame.x(t)}" cy="{y}" r="5" fill="{colors[kind]}" fill-opacity="0.8">'
                    f'<title>{_t(tip)}</title></circle>')
    return _svg(title, body)
