"""The terminal-table rule (edgeloop.cli_tables): fits the width, never cuts an id, says what it hid.

Pure rendering through a real rich Console into a string (no terminal needed). Covers: ids of 40-64
characters stay whole on 80 columns; wrapping columns wrap instead of being cut; the least important
columns go first and the footer names them; a layout where even the essential columns cannot sit side by
side falls back to one block per row; ``wide`` keeps every column; markup-looking text stays literal.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from edgeloop.cli_tables import Col, fit_table, hidden_note, show

LONG_ID = "press-line-7-station-0042-" + "x" * 14  # 40 characters
COLS = (Col("device", whole=True), Col("channel", whole=True), Col("status", whole=True, drop=1),
        Col("health", drop=2, min_width=20), Col("model", whole=True, drop=3), Col("certificate", drop=4))


def rendered(fitted, width: int = 80, wide: bool = False) -> list[str]:
    buffer = io.StringIO()
    show(Console(file=buffer, width=width, color_system=None), fitted, wide)
    return buffer.getvalue().splitlines()


def row(device: str, health: str = "degraded: accuracy 0.778 below floor 0.8 since 2026-12-02 14:02") -> list[str]:
    return [device, "canary-eu-west", "online", health, "17", "2027-03-02 (89 d left)"]


def test_long_ids_stay_whole_and_every_line_fits_80_columns() -> None:
    fitted = fit_table(COLS, [row(LONG_ID), row("p2", "ok")], 80, title="fleet")
    lines = rendered(fitted)
    assert all(len(line) <= 80 for line in lines), lines
    assert any(LONG_ID in line for line in lines) and "…" not in "".join(lines[:-1])
    assert not fitted.stacked and fitted.hidden  # something had to go at 80 columns
    assert lines[-1] == hidden_note(fitted) and all(name in lines[-1] for name in fitted.hidden)
    assert "--wide or --json" in lines[-1]


def test_columns_go_least_important_first_and_wrap_before_being_dropped() -> None:
    fitted = fit_table(COLS, [row(LONG_ID[:18])], 80)
    kept = [c.name for c in COLS if c.name not in fitted.hidden]
    assert kept[:3] == ["device", "channel", "status"] and "health" in kept  # the health wraps, it is not dropped
    assert fitted.hidden == ("certificate",)
    words = " ".join(rendered(fitted)).replace("│", " ").split()
    assert all(word in words for word in row("")[3].split())  # wrapped over several lines, every word whole


def test_nothing_hidden_when_it_fits_and_wide_keeps_everything() -> None:
    roomy = fit_table(COLS, [row(LONG_ID)], 200)
    assert roomy.hidden == () and hidden_note(roomy) is None
    wide = fit_table(COLS, [row(LONG_ID)], 80, wide=True)
    lines = rendered(wide, width=80, wide=True)
    assert wide.hidden == () and any(len(line) > 80 for line in lines)
    assert any(LONG_ID in line and "2027-03-02 (89 d left)" in line for line in lines)  # one line per row


def test_rows_become_blocks_when_even_the_ids_cannot_sit_side_by_side() -> None:
    longest = "a" * 64  # the longest device id the hub accepts
    channel = "c" * 32  # the longest channel
    fitted = fit_table(COLS, [[longest, channel, "online", "ok", "3", "token only"]], 80)
    lines = rendered(fitted)
    assert fitted.stacked and fitted.hidden == ()
    assert lines[0] == longest and f"  channel: {channel}" in lines and "  certificate: token only" in lines
    assert all(len(line) <= 80 for line in lines)


def test_cells_are_literal_text_and_styles_survive() -> None:
    fitted = fit_table((Col("device", whole=True), Col("note")), [["[bold]x[/]", Text("fine", style="green")]], 80)
    assert "[bold]x[/]" in "\n".join(rendered(fitted))
    empty = fit_table(COLS, [], 80, title="fleet (0 devices)")
    assert not empty.stacked and any("device" in line for line in rendered(empty))


def test_a_wrapping_column_with_an_id_on_its_first_line_keeps_it_whole() -> None:
    cell = Text.assemble(LONG_ID, ("\nsilent, last heard 4.0 min ago; last said ok at 2026-11-27 02:00 UTC", "dim"))
    fitted = fit_table((Col("what", whole=True), Col("who and why", min_width=len(LONG_ID))), [["offline", cell]], 60)
    lines = rendered(fitted, width=60)
    assert not fitted.stacked and any(LONG_ID in line for line in lines) and all(len(line) <= 60 for line in lines)
    assert fit_table((Col("what", whole=True), Col("who", min_width=len(LONG_ID))), [["offline", cell]], 40).stacked
