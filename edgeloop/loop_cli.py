"""``edgeloop loop ...``: the closed loop's decision log and a monitor pass on demand (a Typer sub-app).

``loop status`` prints the newest decisions of the loop log (params.yaml ``loop.log``): the monitor's,
every retrain's (monitor, manual, deployment) with its outcome, the promote flow's and manual channel
moves. The table shows the fired ones (those that acted) unless ``--all``, says in a footer how many
quiet ones it hid and what the newest of them said, and fits the terminal (edgeloop.cli_tables): each
decision's observed numbers are flattened under its summary (``checks.soak=2/6 no``, an interval as
``0.978 [0.975, 0.981] n=703``). ``--json`` prints every selected decision, quiet ones included, as a
JSON list on stdout alone (a script filters on ``fired``). An unknown ``--source`` is refused in one line
naming the valid ones. ``loop monitor --once`` runs the Prefect
``monitor`` flow now (on the server in PREFECT_API_URL, else a temporary local one) and prints its
decision per trigger. Imports Prefect only inside ``monitor`` so ``edgeloop --help`` stays fast.
Leaves out the schedule (the ``loop-monitor`` deployment, ``edgeloop serve``) and the rules (``flows.loop``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from edge.contracts.errors import UserError
from edgeloop.cli_common import RootOption, sub_app
from edgeloop.cli_tables import Col, Fitted, fit_table, show
from flows.loop.retrains import ACTIONS, SOURCES

loop_app = sub_app("The closed loop: its decision log and the monitor (when to retrain).")


def _out() -> Console:
    return Console(highlight=False)  # made per command: the width follows $COLUMNS at call time


err = Console(stderr=True)
LOG_SOURCES = (*SOURCES, "promote")  # who appends to the loop log
_HIDDEN = ("last_training", "last_training_source", "completed")  # in --json; too long or too obvious for the table
_ZERO_HIDDEN = ("cooldown_left_s", "overrode_hold_s")  # shown only when something holds
_STATE_STYLE = {"fired": "bold red", "quiet": "green", "unknown": "yellow"}


def _log_path(root: Path) -> Path:
    from edge.contracts.layout import Paths
    from flows.params import load_params

    paths = Paths.at(root)
    return paths.resolve(load_params(paths.params).loop.log)


_ISO_MOMENT = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(\+00:00|Z)?$")


def _number(value: Any) -> str:
    """Floats to 4 significant digits, UTC moments as ``2026-12-02 16:16:34``, the rest as they are."""
    if isinstance(value, float):
        return f"{value:.4g}"
    moment = _ISO_MOMENT.match(str(value))
    return f"{moment[1]} {moment[2]}" if moment else str(value)


def _flat(key: str, value: Any) -> list[str]:
    """``key=value`` items for one observed value, nested ones flattened with dotted keys."""
    if value is None:
        return []
    if isinstance(value, dict):
        if {"value", "low", "high"} <= value.keys():  # an estimate with its interval
            if value["value"] is None:
                return [f"{key}=- (n={value.get('rows', 0)})"]
            return [f"{key}={float(value['value']):.3f} [{float(value['low'] or 0):.3f}, "
                    f"{float(value['high'] or 0):.3f}] n={value.get('rows', 0)}"]
        if {"observed", "required", "passed"} <= value.keys():  # a check against what it needs
            observed = "-" if value["observed"] is None else _number(value["observed"])
            return [f"{key}={observed}/{_number(value['required'])} {'ok' if value['passed'] else 'no'}"]
        checks = all(isinstance(v, dict) and {"observed", "required", "passed"} <= v.keys() for v in value.values())
        return [item for sub, inner in value.items()  # checks: their own names say enough
                for item in _flat(sub if checks else f"{key}.{sub}", inner)]
    if isinstance(value, list):
        if not value:
            return []
        if all(not isinstance(v, dict | list) for v in value):
            return [f"{key}={','.join(_number(v) for v in value)}"]
        return [f"{key}=[{len(value)} items]"]
    return [f"{key}={_number(value)}"]


def observed_text(entry: dict[str, Any]) -> str:
    """The decision's observed numbers, flattened and readable: ``a=1, b.c=0.5, ...``."""
    observed = entry.get("observed") or {}
    parts: list[str] = []
    for key, value in observed.items():
        if key in _HIDDEN or (key in _ZERO_HIDDEN and not value):
            continue
        parts.extend(_flat(key, value))
    return ", ".join(parts)


def _at(entry: dict[str, Any]) -> str:
    return str(entry.get("at", ""))[:19].replace("T", " ")


def decisions_table(entries: list[dict[str, Any]], title: str, width: int, with_fired: bool = True,
                    wide: bool = False) -> Fitted:
    """The decisions as a table ``width`` wide: when (date over time), who over what, whether it fired, and
    the summary with the observed numbers beneath it."""
    cols = [Col("at (UTC)", whole=True), Col("source kind", whole=True)]
    if with_fired:
        cols.append(Col("fired", whole=True, drop=1))
    cols.append(Col("decision and what it observed", min_width=30))
    rows: list[list[str | Text]] = []
    for entry in entries:
        decision = Text(str(entry.get("summary", "")))
        observed = observed_text(entry)
        if observed:
            decision.append("\n" + observed, style="dim")
        row: list[str | Text] = [_at(entry).replace(" ", "\n"),
                                 f"{entry.get('source', '')}\n{entry.get('kind', '')}"]
        if with_fired:
            row.append(Text("yes", style="bold red") if entry.get("fired") else "no")
        rows.append([*row, decision])
    return fit_table(cols, rows, width, title=title, wide=wide)


@loop_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions, quiet ones too, as JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Quiet decisions too (by default only fired ones).")] = False,
    last: Annotated[int, typer.Option("--last", help="Show only the newest N decisions.", min=1)] = 20,
    source: Annotated[
        str | None, typer.Option(help=f"Only decisions of this source: {', '.join(LOG_SOURCES)}.")
    ] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the table gets.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Show the loop's fired decisions (retrains of every source and their outcomes, promotions, rollbacks,
    monitor passes that fired), newest last; --all adds the quiet ones."""
    from flows.loop.log import read_decisions

    if source is not None and source not in LOG_SOURCES:
        raise UserError(f"--source {source!r} is not one of: {', '.join(LOG_SOURCES)}")
    path = _log_path(root)
    entries = read_decisions(path, source=source)
    if as_json:
        print(json.dumps(entries[-last:], default=str, indent=2))
        return
    out = _out()
    of_source = f" from source {source}" if source else ""
    if not entries:
        out.print(f"no decisions{of_source} yet in {path}", markup=False)
        return
    shown = entries if show_all else [e for e in entries if e.get("fired")]
    quiet = [e for e in entries if not e.get("fired")]
    shown = shown[-last:]
    if shown:
        which = "decisions" if show_all else "fired decisions"
        show(out, decisions_table(shown, f"loop {which}{of_source} ({len(shown)} newest)", out.width,
                                  with_fired=show_all, wide=wide), wide)
    else:
        out.print(f"no fired decisions{of_source} yet", markup=False)
    if quiet and not show_all:
        newest = quiet[-1]
        out.print(f"{len(quiet)} quiet decision{'s' if len(quiet) != 1 else ''} hidden (--all shows them); the "
                  f"newest, at {_at(newest)}: {newest.get('summary', '')}", markup=False, style="dim")
    out.print(f"log: {path}", markup=False, style="dim")


def triggers_table(decision: dict[str, Any], width: int) -> Fitted:
    cols = (Col("trigger", whole=True), Col("state", whole=True), Col("observed", drop=1),
            Col("threshold", drop=2), Col("detail", min_width=24))
    rows: list[list[str | Text]] = []
    for t in decision["triggers"]:
        value = t["value"]
        shown = "-" if value is None else _number(value)
        rows.append([t["name"], Text(t["state"], style=_STATE_STYLE.get(t["state"], "")), shown,
                     str(t["threshold"]), t["detail"]])
    return fit_table(cols, rows, width, title=f"monitor: {decision['summary']}")


@loop_app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="Run one monitor pass now (required).")] = False,
    hub_url: Annotated[
        str | None, typer.Option(help="Hub base URL (default: $EDGELOOP_HUB_URL, else params.yaml hub.host:port).")
    ] = None,
    action: Annotated[
        str, typer.Option(help="What a fired decision does: retrain (run the retrain flow) or none (record only).")
    ] = "retrain",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Run the monitor flow once: observe fleet and landing zone, decide, log, retrain when a trigger fires."""
    if not once:
        raise UserError("add --once to run one monitor pass now; the schedule is the loop-monitor deployment "
                        "(edgeloop serve); to retrain now whatever the triggers say: edgeloop retrain")
    if action not in ACTIONS:
        raise UserError(f"--action {action!r} is not one of: {', '.join(ACTIONS)}")
    _log_path(root)  # fail fast on a bad params.yaml, before Prefect starts
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before prefect is imported
    from flows.orchestration.monitor import monitor as monitor_flow

    where = os.environ.get("PREFECT_API_URL") or "a temporary local Prefect server"
    err.print(f"monitor flow on {where}")
    result = monitor_flow(root=str(Path(root).resolve()), hub_url=hub_url, action=action)
    out = _out()
    show(out, triggers_table(result["decision"], out.width))
    outcome = result.get("outcome")
    if outcome is not None:
        verdict = "passed" if outcome["passed"] else "blocked" if outcome["passed"] is False else outcome["state"]
        release = f"; release {outcome['release']} on {outcome['channel']}" if outcome.get("release") else ""
        out.print(f"retrain: gate {verdict}{release}")
