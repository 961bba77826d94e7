"""Inline SVG charts for console pages: pure functions from numbers to SVG text (no script, no assets).

``line_chart`` draws one or more series over time (datetimes) or numbers, with ticked axes whose labels
never overlap (the tick count follows the width), a legend, labelled threshold lines and a ``<title>``
per point (hover). ``bar_chart`` draws counts per bucket (times, numbers or words). Colours are the
Okabe-Ito colour-blind-safe palette, and series also differ by dash and marker so colour is never the
only cue. All text is escaped. Leaves out interactivity, log scales and stacking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

__all__ = ["PALETTE", "bar_chart", "line_chart", "nice_ticks", "time_ticks"]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MARKERS = ("circle", "square", "diamond", "triangle")
CHAR_W = 6.2  # approximate width of one 11px label character
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 40

X = datetime | float | int


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    """A number as a short label: 0.778, 12, 1.2k, 3.4M."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, most: int) -> list[float]:
    """Round tick values covering [low, high], at most ``most`` of them (at least 2)."""
    most = max(2, most)
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / (most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks: list[float] = []
    value = first
    while value <= high + step * 1e-9 and len(ticks) <= most:
        ticks.append(round(value, 12))
        value += step
    return ticks or [low, high]


_TIME_STEPS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
               7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400)


def time_ticks(low: float, high: float, most: int) -> tuple[list[float], str]:
    """Tick positions (epoch seconds, UTC) on round times and the strftime format for their labels."""
    span = max(high - low, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= max(1, most - 1)), _TIME_STEPS[-1])
    first = math.ceil(low / step) * step
    ticks = [float(t) for t in range(int(first), int(high) + 1, step)][:most] or [low]
    if step >= 86400:
        fmt = "%Y-%m-%d" if span > 300 * 86400 else "%m-%d"
    elif span >= 86400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M" if step >= 60 else "%H:%M:%S"
    return ticks, fmt


def _x_value(x: X) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _label_x(value: float, time_fmt: str | None) -> str:
    return datetime.fromtimestamp(value, UTC).strftime(time_fmt) if time_fmt else _num(value)


def _point_title(name: str, x: X, y: float) -> str:
    when = x.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(x, datetime) else _num(float(x))
    return f"{name}: {y:.4g} at {when}"


def _marker(kind: str, x: float, y: float, colour: str, title: str) -> str:
    tip = f"<title>{_e(title)}</title>"
    if kind == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{colour}">{tip}</rect>'
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y:.1f} {x:.1f},{y + 4:.1f} {x - 4:.1f},{y:.1f}"'
                f' fill="{colour}">{tip}</polygon>')
    if kind == "triangle":
        return (f'<polygon points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y + 3:.1f} {x - 4:.1f},{y + 3:.1f}"'
                f' fill="{colour}">{tip}</polygon>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">{tip}</circle>'


class _Frame:
    """Maps data to pixels inside the plot area."""

    def __init__(self, width: int, height: int, x0: float, x1: float, y0: float, y1: float) -> None:
        self.left, self.right = LEFT, width - RIGHT
        self.top, self.bottom = TOP, height - BOTTOM
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1.0)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1.0)

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def py(self, y: float) -> float:
        y = min(max(y, self.y0), self.y1)
        return self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)


def _open(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_e(title)}" font-family="system-ui,sans-serif" '
            f'font-size="11"><title>{_e(title)}</title>',
            f'<text x="{LEFT}" y="16" font-size="13" font-weight="600" fill="#1d1d1f">{_e(title)}</text>']


def _y_axis(frame: _Frame, ticks: Sequence[float], y_label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = frame.py(tick)
        parts.append(f'<line x1="{frame.left}" x2="{frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{frame.left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#374151">{_e(_num(tick))}'
                     f"</text>")
    middle = (frame.top + frame.bottom) / 2
    parts.append(f'<text x="12" y="{middle:.1f}" transform="rotate(-90 12 {middle:.1f})" text-anchor="middle" '
                 f'fill="#374151">{_e(y_label)}</text>')
    parts.append(f'<line x1="{frame.left}" x2="{frame.left}" y1="{frame.top}" y2="{frame.bottom}" stroke="#6b7280"/>'
                 f'<line x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}" '
                 f'stroke="#6b7280"/>')
    return parts


def _x_labels(frame: _Frame, positions: Sequence[tuple[float, str]]) -> list[str]:
    """Tick labels under the plot, dropping any that would overlap the previous one."""
    parts, last_end = [], -math.inf
    for x, text in positions:
        half = len(text) * CHAR_W / 2
        if x - half < last_end + 4 or x + half > frame.right + RIGHT:
            continue
        last_end = x + half
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom}" y2="{frame.bottom + 4}" stroke="#6b7280"/>'
                     f'<text x="{x:.1f}" y="{frame.bottom + 16}" text-anchor="middle" fill="#374151">{_e(text)}</text>')
    return parts


def _legend(names: Sequence[str], width: int, height: int) -> list[str]:
    parts, x = [], float(LEFT)
    y = height - 8
    for i, name in enumerate(names):
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        label = name if len(name) <= 40 else name[:39] + "…"
        parts.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="{dash}"/><text x="{x + 22:.1f}" y="{y}" fill="#1d1d1f">'
                     f"{_e(label)}</text>")
        x += 30 + len(label) * CHAR_W
        if x > width - 40:
            break
    return parts


def line_chart(series: Mapping[str, Sequence[tuple[X, float]]], *, title: str, y_label: str,
               thresholds: Sequence[tuple[float, str]] = (), y_range: tuple[float, float] | None = None,
               width: int = 640, height: int = 220) -> str:
    """SVG text: each named series as a line with point markers over a time (datetime) or number x axis."""
    points = [(x, float(y)) for values in series.values() for x, y in values if math.isfinite(float(y))]
    parts = _open(width, height, title)
    if not points:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#6b7280">'
                     f"no data yet</text></svg>")
        return "".join(parts)
    is_time = isinstance(points[0][0], datetime)
    xs = [_x_value(x) for x, _ in points]
    ys = [y for _, y in points] + [value for value, _ in thresholds]
    if y_range is not None:
        y_low, y_high = y_range
    else:
        y_low, y_high = min(ys), max(ys)
        pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    y_ticks = nice_ticks(y_low, y_high, max(2, (height - TOP - BOTTOM) // 28))
    if y_range is None:
        y_low, y_high = min(y_low, y_ticks[0]), max(y_high, y_ticks[-1])
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - (1800 if is_time else 1), x_high + (1800 if is_time else 1)
    frame = _Frame(width, height, x_low, x_high, y_low, y_high)
    y_ticks = [t for t in y_ticks if y_low <= t <= y_high]
    parts += _y_axis(frame, y_ticks, y_label)
    most_x = max(3, int((frame.right - frame.left) // 70))
    if is_time:
        ticks, fmt = time_ticks(x_low, x_high, most_x)
        parts += _x_labels(frame, [(frame.px(t), _label_x(t, fmt)) for t in ticks])
    else:  # counted x values (release numbers) get whole-number ticks only: no "release 1.5"
        counted = all(float(x).is_integer() for x in xs)
        x_ticks = [t for t in nice_ticks(x_low, x_high, most_x) if x_low <= t <= x_high
                   and (not counted or float(t).is_integer())]
        if counted and len(x_ticks) < 2:
            x_ticks = sorted({float(x) for x in xs})[:most_x]
        parts += _x_labels(frame, [(frame.px(t), _num(t)) for t in x_ticks])
    for value, label in thresholds:
        y = frame.py(value)
        parts.append(f'<line x1="{frame.left}" x2="{frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#D55E00" '
                     f'stroke-width="1.5" stroke-dasharray="4 3"><title>{_e(label)}: {_e(_num(value))}</title></line>'
                     f'<text x="{frame.right - 2}" y="{y - 4:.1f}" text-anchor="end" fill="#8f1d00">'
                     f"{_e(label)} {_e(_num(value))}</text>")
    for i, (name, values) in enumerate(series.items()):
        colour, dash, marker = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)]
        kept = sorted(((x, float(y)) for x, y in values if math.isfinite(float(y))), key=lambda p: _x_value(p[0]))
        coords = [(frame.px(_x_value(x)), frame.py(y)) for x, y in kept]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                         f'stroke-dasharray="{dash}"/>')
        if len(coords) <= 400:
            parts.append(f'<g class="points" data-series="{_e(name)}">')
            parts += [_marker(marker, px, py, colour, _point_title(name, x, y))
                      for (px, py), (x, y) in zip(coords, kept, strict=True)]
            parts.append("</g>")
    parts += _legend(list(series), width, height)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: Sequence[tuple[datetime | float | str, float]], *, title: str, y_label: str,
              width: int = 640, height: int = 220, colour: str = PALETTE[0]) -> str:
    """SVG text: one bar per (bucket, count), buckets in the given order, labelled by time, number or word."""
    parts = _open(width, height, title)
    if not bars:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#6b7280">'
                     f"no data yet</text></svg>")
        return "".join(parts)
    top = max(max(float(v) for _, v in bars), 0.0)
    y_ticks = nice_ticks(0.0, top or 1.0, max(2, (height - TOP - BOTTOM) // 28))
    frame = _Frame(width, height, 0.0, float(len(bars)), 0.0, max(y_ticks[-1], top or 1.0))
    parts += _y_axis(frame, y_ticks, y_label)
    slot = (frame.right - frame.left) / len(bars)
    span = 0.0
    if isinstance(bars[0][0], datetime) and len(bars) > 1:
        span = _x_value(bars[-1][0]) - _x_value(bars[0][0])  # type: ignore[arg-type]
    labels = []
    for i, (bucket, value) in enumerate(bars):
        x = frame.left + i * slot
        y = frame.py(float(value))
        if isinstance(bucket, datetime):
            text = bucket.astimezone(UTC).strftime("%H:%M" if span < 86400 else "%m-%d")
            when = bucket.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        else:
            text = bucket if isinstance(bucket, str) else _num(float(bucket))
            when = text
        parts.append(f'<rect x="{x + slot * 0.1:.1f}" y="{y:.1f}" width="{max(slot * 0.8, 1):.1f}" '
                     f'height="{max(frame.bottom - y, 0):.1f}" fill="{colour}"><title>{_e(when)}: '
                     f"{_e(_num(float(value)))}</title></rect>")
        labels.append((x + slot / 2, text))
    parts += _x_labels(frame, labels)
    parts.append("</svg>")
    return "".join(parts)
