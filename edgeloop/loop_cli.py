"""``edgeloop loop ...``: the closed loop's decision log and a monitor pass on demand (a Typer sub-app).

``loop status`` prints the newest decisions of the loop log (params.yaml ``loop.log``) as a rich table
or, with ``--json``, as a JSON list: the monitor's, every retrain's (monitor, manual, deployment) with
its outcome, the promote flow's and manual channel moves. ``loop monitor --once`` runs the Prefect
``monitor`` flow now (on the server in PREFECT_API_URL, else a temporary local one) and prints its
decision per trigger. Imports Prefect only inside ``monitor`` so ``edgeloop --help`` stays fast.
Leaves out the schedule (the ``loop-monitor`` deployment, ``edgeloop serve``) and the rules (``flows.loop``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge.contracts.errors import UserError
from edgeloop.cli_common import RootOption, sub_app
from flows.loop.retrains import ACTIONS, SOURCES

loop_app = sub_app("The closed loop: its decision log and the monitor (when to retrain).")


def _out() -> Console:
    return Console()  # made per command: the width follows $COLUMNS at call time


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


def _observed(entry: dict[str, Any]) -> str:
    observed = entry.get("observed") or {}
    parts = []
    for key, value in observed.items():
        if value is None or key in _HIDDEN or (key in _ZERO_HIDDEN and not value):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)


def decisions_table(entries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("at (UTC)", "source", "kind", "fired", "summary", "observed"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        fired = "[bold red]yes[/]" if entry.get("fired") else "no"
        at = str(entry.get("at", ""))[:19].replace("T", " ")
        table.add_row(at, str(entry.get("source", "")), str(entry.get("kind", "")), fired,
                      str(entry.get("summary", "")), _observed(entry))
    return table


@loop_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as a JSON list.")] = False,
    last: Annotated[int, typer.Option("--last", help="Show only the newest N decisions.", min=1)] = 20,
    source: Annotated[
        str | None, typer.Option(help=f"Only decisions of this source: {', '.join(LOG_SOURCES)}.")
    ] = None,
    root: RootOption = Path("."),
) -> None:
    """Show the loop's decisions (monitor passes, retrains of every source and their outcomes, promotions,
    rollbacks), newest last."""
    from flows.loop.log import read_decisions

    if source is not None and source not in LOG_SOURCES:
        raise UserError(f"--source {source!r} is not one of: {', '.join(LOG_SOURCES)}")
    path = _log_path(root)
    entries = read_decisions(path, source=source)[-last:]
    out = _out()
    if as_json:
        out.print_json(json.dumps(entries, default=str))
        return
    if not entries:
        out.print(f"no decisions yet in {path}")
        return
    out.print(decisions_table(entries, f"loop decisions ({len(entries)} newest, {path})"))


def triggers_table(decision: dict[str, Any]) -> Table:
    table = Table(title=f"monitor: {decision['summary']}")
    for column in ("trigger", "state", "observed", "threshold", "detail"):
        table.add_column(column, overflow="fold")
    for t in decision["triggers"]:
        style = _STATE_STYLE.get(t["state"], "")
        value = t["value"]
        shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
        table.add_row(t["name"], f"[{style}]{t['state']}[/]", shown, str(t["threshold"]), t["detail"])
    return table


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
    out.print(triggers_table(result["decision"]))
    outcome = result.get("outcome")
    if outcome is not None:
        verdict = "passed" if outcome["passed"] else "blocked" if outcome["passed"] is False else outcome["state"]
        release = f"; release {outcome['release']} on {outcome['channel']}" if outcome.get("release") else ""
        out.print(f"retrain: gate {verdict}{release}")
