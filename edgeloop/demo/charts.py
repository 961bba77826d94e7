"""Inline SVG charts drawn in Python for the demo report: lines, stacked areas and an event strip.

Each function returns one ``<svg>`` element as a string, sized by ``viewBox`` (it scales with the page), with
axes, ticks, a legend and optional vertical markers (version changes, drift onset) and labelled horizontal
lines (thresholds). Text labels never overlap: every label's box is computed from the character advance widths
of DejaVu Sans (the font Debian's Chromium uses for ``system-ui``; a wide font, so narrower fonts only leave
more room), and a marker or threshold label goes to the first free place among a few candidates (right or left
of its line, row by row); a label with no free place is left out and stays readable in its line's tooltip. A
line chart can give each series its own color and dash (a dashed legend swatch then), and each point a tooltip
with its value (``tip_format``). ``label_boxes(svg)`` recomputes those boxes from the SVG text, for checks. A
line chart's y axis can be logarithmic (``y_log``), so thresholds far below the peak keep their own space.
Every piece of text is XML-escaped here. No scripts, no external references, no styling beyond presentation
attributes and the report's CSS classes. Leaves out the page around the charts (``edgeloop.demo.report``),
computing the series (``edgeloop.demo.timeline``) and measuring text in a browser (the width table was
measured once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from html import escape, unescape
from html.parser import HTMLParser

__all__ = ["FONT_PX", "PALETTE", "Box", "events_strip", "label_boxes", "line_chart", "stacked_area", "text_width"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 160, 30, 40  # margins: the legend sits on the right
FONT_PX = {"tick": 10.0, "axis": 11.0, "legend": 11.0, "marker": 9.0}  # font-size per text class
DASH = "6 3"  # stroke-dasharray of a dashed series
GAP = 2.0  # px kept free between two labels (the marker labels' white halo is 1.5 px)
ASCENT, DESCENT = 0.95, 0.30  # DejaVu Sans line box in em (0.93, 0.24) plus what small sizes render

# Advance widths in em of DejaVu Sans, measured in Chromium (getComputedTextLength at 100 px).
_WIDTHS = {
    "'": 0.275, "ijl": 0.278, "IJ": 0.295, " ,.": 0.318, "/:;\\|": 0.337, "f": 0.344, "-": 0.361, "()[]": 0.39,
    "t": 0.392, "r": 0.395, "!": 0.401, '"': 0.46, "*_`": 0.5, "s": 0.521, "z": 0.525, "?": 0.531, "c": 0.55,
    "L": 0.557, "F": 0.575, "k": 0.579, "vxy": 0.592, "T": 0.595, "P": 0.603, "Y": 0.611, "o": 0.612,
    "a": 0.613, "e": 0.615, "E": 0.632, "hnu": 0.634, "Sbdgpq": 0.635, "$0123456789{}": 0.636, "K": 0.656,
    "V": 0.684, "XZ": 0.685, "B": 0.686, "R": 0.695, "C": 0.698, "A": 0.709, "U": 0.732, "N": 0.748,
    "H": 0.752, "D": 0.77, "G": 0.775, "&": 0.78, "OQ": 0.787, "w": 0.818, "#+<=>^~\u2192": 0.838, "M": 0.863,
    "%": 0.95, "m": 0.974, "W": 0.989, "@": 1.0,
}
_EM = {char: width for chars, width in _WIDTHS.items() for char in chars}
_OTHER_EM = 1.0  # any other character: as wide as the widest above
SLACK = 1.03  # rendered widths came out up to 1.2 % wider than the sum of advances (hinting): room for that

Points = Sequence[tuple[float, float]]


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def text_width(text: str, size: float) -> float:
    """Width in px of ``text`` at font size ``size`` (runs of spaces count once, as SVG collapses them)."""
    return SLACK * size * sum(_EM.get(char, _OTHER_EM) for char in re.sub(r"\s+", " ", text.strip()))


@dataclass(frozen=True)
class Box:
    """A label's rectangle in viewBox px."""

    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: Box, gap: float = 0.0) -> bool:
        return (self.left < other.right + gap and other.left < self.right + gap
                and self.top < other.bottom + gap and other.top < self.bottom + gap)

    def inside(self, other: Box) -> bool:
        return (self.left >= other.left and self.right <= other.right
                and self.top >= other.top and self.bottom <= other.bottom)


VIEW = Box(0, 0, WIDTH, HEIGHT)
PLOT = Box(LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)


def text_box(x: float, y: float, text: str, size: float, anchor: str = "start", vertical: bool = False) -> Box:
    """The box of a text drawn at (x, y) (baseline) with ``text-anchor`` ``anchor``; ``vertical``: rotated
    -90 degrees about (x, y), as the y-axis title is."""
    width = text_width(text, size)
    shift = {"start": 0.0, "middle": width / 2, "end": width}[anchor]
    if vertical:
        return Box(x - ASCENT * size, y - width + shift, x + DESCENT * size, y + shift)
    return Box(x - shift, y - ASCENT * size, x - shift + width, y + DESCENT * size)


class _Labels:
    """Every text of one chart: fixed ones where they are asked, free ones where they do not overlap."""

    def __init__(self) -> None:
        self.boxes: list[Box] = []

    def fixed(self, x: float, y: float, text: str, css: str, anchor: str = "start") -> str:
        self.boxes.append(text_box(x, y, text, FONT_PX[css], anchor))
        return _text(x, y, text, css, anchor)

    def free(self, candidates: Sequence[tuple[float, float, str]], text: str, css: str,
             within: Box = PLOT) -> str:
        """The first candidate (x, y, anchor) whose box is inside ``within`` and clear of every label so
        far; "" when none is."""
        for x, y, anchor in candidates:
            box = text_box(x, y, text, FONT_PX[css], anchor)
            if box.inside(within) and not any(box.overlaps(other, GAP) for other in self.boxes):
                self.boxes.append(box)
                return _text(x, y, text, css, anchor)
        return ""


def _text(x: float, y: float, text: str, css: str, anchor: str) -> str:
    return (f'<text x="{round(x, 2)}" y="{round(y, 2)}" text-anchor="{anchor}" font-size="{FONT_PX[css]:g}" '
            f'class="{css}">{_t(text)}</text>')


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


def _log_ticks(low: float, high: float) -> list[float]:
    """Decades within [low, high], with 2 and 5 between them when the range spans at most two decades."""
    first, last = math.floor(math.log10(low) + 1e-9), math.ceil(math.log10(high) - 1e-9)
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    return [m * 10.0 ** d for d in range(first, last + 1) for m in steps if low - 1e-12 <= m * 10.0 ** d <= high + 1e-9]


def _fmt(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


class _Frame:
    """Maps data coordinates to the plot area and draws the axes; ``log``: the y axis is logarithmic
    (values at or below the low end sit on it)."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], log: bool = False) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.log = log
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 * 10 if log else self.y0 + 1.0
        self.labels = _Labels()

    def x(self, value: float) -> float:
        return round(LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT), 2)

    def y(self, value: float) -> float:
        if self.log:
            low, high = math.log10(self.y0), math.log10(self.y1)
            share = (math.log10(max(value, self.y0)) - low) / (high - low)
        else:
            share = (value - self.y0) / (self.y1 - self.y0)
        return round(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM), 2)

    def box(self) -> str:
        return (f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
                f'fill="#fff" stroke="#999"/>')

    def x_axis(self, x_label: str) -> list[str]:
        out = [self.labels.fixed(self.x(tick), HEIGHT - BOTTOM + 16, _fmt(tick), "tick", "middle")
               for tick in _ticks(self.x0, self.x1, 8)]
        out.append(self.labels.fixed((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 6, x_label, "axis", "middle"))
        return out

    def axes(self, x_label: str, y_label: str, y_format: str = "g") -> list[str]:
        out = [self.box()]
        ticks = _log_ticks(self.y0, self.y1) if self.log else _ticks(self.y0, self.y1)
        whole = all(abs(tick * 100 - round(tick * 100)) < 1e-6 for tick in ticks)  # 97.5 % is not "98%"
        for tick in ticks:
            y = self.y(tick)
            label = (f"{tick:.0%}" if whole else f"{tick:.1%}") if y_format == "%" else _fmt(tick)
            out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#eee"/>')
            out.append(self.labels.fixed(LEFT - 6, y + 4, label, "tick", "end"))
        out += self.x_axis(x_label)
        middle = (TOP + HEIGHT - BOTTOM) / 2
        self.labels.boxes.append(text_box(14, middle, y_label, FONT_PX["axis"], "middle", vertical=True))
        out.append(f'<text transform="translate(14 {middle}) rotate(-90)" text-anchor="middle" '
                   f'font-size="{FONT_PX["axis"]:g}" class="axis">{_t(y_label)}</text>')
        return out

    def hlines(self, hlines: Sequence[tuple[float, str]]) -> list[str]:
        """Dashed horizontal lines, each labelled above or below its line, at the right or the left end."""
        out = []
        for value, label in hlines:
            y = self.y(value)
            out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#888" '
                       f'stroke-dasharray="5 3"><title>{_t(label)}</title></line>')
            right, left = WIDTH - RIGHT - 4, LEFT + 4
            out.append(self.labels.free([(right, y - 3, "end"), (right, y + 11, "end"), (left, y - 3, "start"),
                                         (left, y + 11, "start")], label, "marker"))
        return out

    def markers(self, markers: Sequence[tuple[float, str]]) -> list[str]:
        """Dashed vertical lines, each labelled right of its line (left near the plot's right edge), in the
        first row where the label is clear of every other."""
        out = []
        step = math.ceil((ASCENT + DESCENT) * FONT_PX["marker"] + GAP)  # one label per row fits exactly
        rows = int((HEIGHT - BOTTOM - TOP - 4) // step)
        for at, label in markers:
            if not self.x0 <= at <= self.x1:
                continue
            x = self.x(at)
            out.append(f'<line x1="{x}" x2="{x}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#555" '
                       f'stroke-dasharray="4 3"><title>{_t(label)}</title></line>')
            candidates = [(x + dx, TOP + 11 + step * row, anchor) for row in range(rows)
                          for dx, anchor in ((3, "start"), (-3, "end"))]
            out.append(self.labels.free(candidates, label, "marker"))
        return out


def _svg(title: str, body: list[str]) -> str:
    # No xmlns: inline SVG in HTML5 needs none, and the page then names no URL at all.
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{_t(title)}"><title>{_t(title)}</title>' + "".join(b for b in body if b) + "</svg>")


def _fit(text: str, size: float, room: float) -> str:
    """``text``, cut with an ellipsis so it is at most ``room`` px wide."""
    if text_width(text, size) <= room:
        return text
    while text and text_width(text + "\u2026", size) > room:
        text = text[:-1]
    return text + "\u2026"


def _legend(labels: _Labels, names: Sequence[str], colors: Sequence[str],
            dashed: Collection[str] = ()) -> list[str]:
    out = []
    room = RIGHT - 30 - 2
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        y = TOP + 8 + 18 * i
        if name in dashed:  # a dashed series: a dashed swatch
            out.append(f'<line x1="{WIDTH - RIGHT + 12}" x2="{WIDTH - RIGHT + 24}" y1="{y - 3}" y2="{y - 3}" '
                       f'stroke="{color}" stroke-width="2" stroke-dasharray="{DASH}"><title>{_t(name)}</title></line>')
        else:
            out.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="12" height="10" fill="{color}">'
                       f"<title>{_t(name)}</title></rect>")
        out.append(labels.fixed(WIDTH - RIGHT + 30, y + 1, _fit(name, FONT_PX["legend"], room), "legend"))
    return out


def _range(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    return min(values) - pad, max(values) + pad


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    """Round 1-2-5 bounds around the positive ``values``: the low one strictly below the smallest (so a
    threshold line never sits on the axis), at least 0.001."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 0.01, 1.0
    steps = [m * 10.0 ** d for d in range(-3, 13) for m in (1, 2, 5)]
    low = max([s for s in steps if s < min(positive) * (1 - 1e-9)], default=steps[0])
    high = min([s for s in steps if s >= max(positive) * (1 - 1e-9)], default=steps[-1])
    return low, max(high, low * 10)


def line_chart(title: str, series: Mapping[str, Points], *, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None, y_format: str = "g", y_log: bool = False,
               markers: Sequence[tuple[float, str]] = (), hlines: Sequence[tuple[float, str]] = (),
               x_range: tuple[float, float] | None = None, colors: Mapping[str, str] | None = None,
               dashed: Collection[str] = (), tip_format: str | None = None, x_name: str = "hour") -> str:
    """One line per series (``name -> [(x, y)]``), vertical ``markers`` and labelled horizontal ``hlines``.
    ``colors``: a color per series name (else the palette in order); ``dashed``: series drawn dashed;
    ``tip_format`` (e.g. ``"{:.1%}"``): every point gets a dot whose tooltip reads
    "<series>, <x_name> <x>: <y>"."""
    xs = [x for points in series.values() for x, _ in points] + [at for at, _ in markers]
    ys = [y for points in series.values() for _, y in points] + [y for y, _ in hlines]
    frame = _Frame(x_range or _range(xs), y_range or (_log_range(ys) if y_log else _range(ys)), log=y_log)
    body = frame.axes(x_label, y_label, y_format)
    body += frame.hlines(hlines)
    body += frame.markers(markers)
    colors_in_order = [(colors or {}).get(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)]
    for (name, points), color in zip(series.items(), colors_in_order, strict=True):
        if not points:
            continue
        path = " ".join(f"{frame.x(x)},{frame.y(y)}" for x, y in points)
        dash = f' stroke-dasharray="{DASH}"' if name in dashed else ""
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        if tip_format is not None:
            body += [f'<circle cx="{frame.x(x)}" cy="{frame.y(y)}" r="2.5" fill="{color}"><title>'
                     f"{_t(name)}, {_t(x_name)} {x:,.1f}: {_t(tip_format.format(y))}</title></circle>"
                     for x, y in points]
        elif len(points) == 1:
            body.append(f'<circle cx="{frame.x(points[0][0])}" cy="{frame.y(points[0][1])}" r="3" fill="{color}"/>')
    body += _legend(frame.labels, list(series), colors_in_order, dashed)
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
    body += _legend(frame.labels, list(layers), colors)
    return _svg(title, body)


def events_strip(title: str, events: Sequence[tuple[float, str, str]], *, x_label: str,
                 x_range: tuple[float, float] | None = None) -> str:
    """One row per event kind (in order of first appearance), a dot per event at its time
    (``(t, kind, tooltip)``)."""
    kinds = list(dict.fromkeys(kind for _, kind, _ in events))
    frame = _Frame(x_range or _range([t for t, _, _ in events]), (0.0, float(max(len(kinds), 1))))
    body = [frame.box(), *frame.x_axis(x_label)]  # no y axis: rows are named in the legend area
    colors = {kind: PALETTE[i % len(PALETTE)] for i, kind in enumerate(kinds)}
    room = RIGHT - 8 - 2
    for i, kind in enumerate(kinds):
        y = frame.y(len(kinds) - i - 0.5)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#eee"/>')
        body.append(frame.labels.fixed(WIDTH - RIGHT + 8, y + 4, _fit(kind, FONT_PX["legend"], room), "legend"))
    for t, kind, tip in events:
        y = frame.y(len(kinds) - kinds.index(kind) - 0.5)
        body.append(f'<circle cx="{frame.x(t)}" cy="{y}" r="5" fill="{colors[kind]}" fill-opacity="0.8">'
                    f'<title>{_t(tip)}</title></circle>')
    return _svg(title, body)


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.found: list[tuple[dict[str, str], str]] = []
        self._open: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "text":
            self._open, self._text = {k: v or "" for k, v in attrs}, []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.handle_data(unescape(f"&#{name};"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "text" and self._open is not None:
            self.found.append((self._open, "".join(self._text)))
            self._open = None


def label_boxes(svg: str) -> list[tuple[str, Box]]:
    """(text, box) of every ``<text>`` in ``svg``, computed from its position, anchor and font size the way
    the charts place them (a ``rotate(-90)`` title included)."""
    parser = _TextParser()
    parser.feed(svg)
    parser.close()
    out = []
    for attrs, text in parser.found:
        size, anchor = float(attrs["font-size"]), attrs.get("text-anchor", "start")
        turned = re.fullmatch(r"translate\(([\d.]+) ([\d.]+)\) rotate\(-90\)", attrs.get("transform", ""))
        if turned:
            out.append((text, text_box(float(turned[1]), float(turned[2]), text, size, anchor, vertical=True)))
        else:
            out.append((text, text_box(float(attrs["x"]), float(attrs["y"]), text, size, anchor)))
    return out
