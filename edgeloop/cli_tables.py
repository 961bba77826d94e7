"""Terminal tables that fit the terminal's width and never cut an id (the rule every listing command uses).

``fit_table(columns, rows, width)`` lays rows out for a terminal ``width`` columns wide:

- a ``whole`` column (ids, versions, channels, times) is never wrapped nor cut: it is as wide as its widest
  cell (a header wider than that wraps on its words);
- other columns wrap their cells on words (a word longer than the column folds) and shrink to half their
  natural width (or the column's ``min_width``), so a cell wraps onto about two lines, before anything is
  dropped;
- when the columns still do not fit, the least important ones (highest ``drop`` rank; rank 0 is never
  dropped) go first, and the result names them so the command can print ``hidden_note``;
- when even the rank-0 columns cannot fit side by side (a 64-character device id and a 32-character
  channel on 80 columns), each row becomes a block: its first cell alone on a line, then ``name: value``
  lines, indented. Nothing is dropped in that layout.

Cells are plain strings (never parsed as rich markup: a device id with brackets stays literal) or rich
``Text`` for a styled cell. ``wide=True`` keeps every column at its natural width (``--wide``, for a
pager or a file). ``show(console, fitted)`` prints it with its footer (the hidden columns) on that console. Leaves out
sorting or filtering rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["Cell", "Col", "Fitted", "fit_table", "hidden_note", "show"]

Cell = str | Text
_WRAP_MIN = 8  # narrowest a wrapping column gets before columns are dropped
_WORD_MAX = 16  # a wrapping column is at least as wide as its longest word up to this (longer words fold)
_HIDDEN_HINT = "more columns: --wide or --json"


@dataclass(frozen=True)
class Col:
    name: str
    whole: bool = False  # an id, version, channel or time: never wrapped, never cut
    drop: int = 0  # 0: always shown; higher: dropped earlier when the terminal is narrow
    min_width: int = 0  # a wrapping column's narrowest (default: half its natural width); e.g. an id's length
    justify: str = "left"


@dataclass(frozen=True)
class Fitted:
    renderable: RenderableType
    hidden: tuple[str, ...]  # the columns left out, in table order
    stacked: bool  # rows shown as blocks because even the essential columns do not fit side by side


def _text(cell: Cell) -> Text:
    return cell.copy() if isinstance(cell, Text) else Text(str(cell))


def _natural(texts: Sequence[Text]) -> int:
    return max((line.cell_len for t in texts for line in t.split("\n")), default=0)


def _longest_word(texts: Sequence[Text]) -> int:
    return max((len(word) for t in texts for word in t.plain.split()), default=0)


def _overhead(count: int, compact: bool = False) -> int:
    """Characters a rich table adds around ``count`` columns: edges (not when compact), separators, one space
    of padding each side of a separator."""
    return 3 * max(count - 1, 0) if compact else 3 * count + 1


def _widths(cols: Sequence[Col], cells: Sequence[Sequence[Text]], width: int,
            compact: bool) -> tuple[list[int], list[int]] | None:
    """(minimum, natural) width per column, or None when even the minimums do not fit ``width``."""
    minimum, natural = [], []
    for col, column_cells in zip(cols, cells, strict=True):
        header = Text(col.name)
        content = _natural(column_cells)
        nat = max(content, header.cell_len)
        header_word = _longest_word([header])
        word = min(_longest_word(column_cells), _WORD_MAX)  # a date or a number wraps whole, a hash folds
        floor = col.min_width or -(-nat // 2)  # unless told otherwise: a cell wraps onto about two lines at most
        minimum.append(max(content, header_word) if col.whole else min(nat, max(_WRAP_MIN, header_word, word, floor)))
        natural.append(nat)
    if sum(minimum) + _overhead(len(cols), compact) > width:
        return None
    return minimum, natural


def _grow(minimum: list[int], natural: list[int], room: int) -> list[int]:
    """Share ``room`` extra characters among the columns below their natural width, in proportion to what
    each lacks (a long reason gets more than a short number), never past the natural width."""
    lacking = [n - m for m, n in zip(minimum, natural, strict=True)]
    total = sum(lacking)
    if total <= room:
        return list(natural)
    shares = [room * lack / total for lack in lacking]
    widths = [m + int(share) for m, share in zip(minimum, shares, strict=True)]
    left = room - sum(int(share) for share in shares)
    for i in sorted(range(len(widths)), key=lambda i: int(shares[i]) - shares[i])[:left]:  # largest remainders
        widths[i] += 1
    return widths


def _table(cols: Sequence[Col], cells: Sequence[Sequence[Text]], widths: Sequence[int] | None,
           title: str | None, compact: bool) -> Table:
    if compact:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    else:
        table = Table(title=title, title_justify="left")
    for i, col in enumerate(cols):
        if widths is None:
            table.add_column(col.name, no_wrap=True, justify=col.justify)  # type: ignore[arg-type]
        else:
            table.add_column(col.name, width=widths[i], no_wrap=col.whole, overflow="fold",
                             justify=col.justify)  # type: ignore[arg-type]
    for row in zip(*cells, strict=True):
        table.add_row(*row)
    return table


def _stacked(cols: Sequence[Col], rows: Sequence[Sequence[Text]], title: str | None) -> Group:
    parts: list[RenderableType] = [Text(title, style="italic")] if title else []
    for row in rows:
        parts.append(Text.assemble(row[0], style="bold"))
        for col, cell in zip(cols[1:], row[1:], strict=True):
            if cell.plain:
                parts.append(Text.assemble("  ", (f"{col.name}: ", "dim"), cell))
    return Group(*parts)


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, title: str | None = None,
              wide: bool = False, compact: bool = False) -> Fitted:
    """The rows laid out for a terminal ``width`` wide (see the module docstring for the rule); ``compact``:
    no outer border, a rule under the header (for several small tables on one screen)."""
    texts = [[_text(c) for c in row] for row in rows]
    for row in texts:
        if len(row) != len(cols):
            raise ValueError(f"a row has {len(row)} cells for {len(cols)} columns")
    if wide:
        return Fitted(_table(cols, [list(c) for c in zip(*texts, strict=True)] or [[] for _ in cols], None, title,
                             compact),
                      (), False)
    kept = list(range(len(cols)))
    order = sorted((i for i, c in enumerate(cols) if c.drop > 0), key=lambda i: (-cols[i].drop, -i))
    while True:
        chosen = [cols[i] for i in kept]
        columns = [[row[i] for row in texts] for i in kept]
        fits = _widths(chosen, columns, width, compact)
        if fits is not None:
            minimum, natural = fits
            room = width - sum(minimum) - _overhead(len(chosen), compact)
            table = _table(chosen, columns, _grow(minimum, natural, room), title, compact)
            return Fitted(table, tuple(c.name for i, c in enumerate(cols) if i not in kept), False)
        if not order:
            break
        kept.remove(order.pop(0))  # the least important column left (the rightmost among equals) goes first
    return Fitted(_stacked(cols, texts, title), (), True)


def hidden_note(fitted: Fitted) -> str | None:
    """The footer line naming the hidden columns (None when nothing was hidden)."""
    if not fitted.hidden:
        return None
    return f"… {_HIDDEN_HINT} (hidden here: {', '.join(fitted.hidden)})"


def show(console: Console, fitted: Fitted, wide: bool = False) -> None:
    """Print ``fitted`` and, when columns were hidden, the footer naming them; ``wide``: at the table's
    natural width even when that is wider than the terminal."""
    if wide:
        natural = Measurement.get(console, console.options.update(width=100_000), fitted.renderable).maximum
        console = Console(file=console.file, width=max(console.width, natural), highlight=False,
                          no_color=console.no_color, force_terminal=console.is_terminal)
    console.print(fitted.renderable)
    note = hidden_note(fitted)
    if note:
        console.print(note, style="dim", markup=False, highlight=False)
