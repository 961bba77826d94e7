"""``edgeloop ingest [--retry-quarantined]``: run the ingest stage and say, in a few lines, what it did.

Plain ``edgeloop ingest`` is ``edgeloop stage ingest`` with a readable summary: new batches curated and
quarantined (with their reasons), batches skipped as already done, and the totals the gate reads. With
``--retry-quarantined`` the batches still in quarantine are judged again against the current params.yaml
first (``flows.stages.ingest``): fixed ones are curated once, the rest stay with their new reason.
``--json`` prints the stage's summary instead. Leaves out the ingest logic itself and the later stages.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from edgeloop.cli_common import RootOption

out = Console()
SHOWN_REASONS = 5
RETRY = "edgeloop ingest --retry-quarantined"


def summary_lines(summary: dict[str, Any], retried: bool) -> list[str]:
    """The human summary of an ingest run (plain text, one fact a line)."""
    lines = [
        f"new batches: {summary['new_curated']} curated ({summary['new_rows']} rows, "
        f"{summary['new_duplicates_dropped']} repeated events dropped), {summary['new_quarantined']} quarantined; "
        f"{summary['skipped_already_done']} skipped (already done)"
    ]
    if retried:
        lines.append(
            f"retried from quarantine: {summary['retried']} batches, {summary['retried_curated']} now curated "
            f"({summary['retried_rows']} rows), "
            f"{summary['retried_still_quarantined']} still quarantined"
            + (f", {summary['retry_impossible']} not retriable (outside a device folder, or no raw copy)"
               if summary["retry_impossible"] else "")
        )
    from flows.ingest.quarantine import reason_kind

    reasons = Counter(reason_kind(entry["reason"]) for entry in summary["quarantined_batches"])
    for reason, count in reasons.most_common(SHOWN_REASONS):
        lines.append(f"  {count} x {reason}")
    if len(reasons) > SHOWN_REASONS:
        lines.append(f"  ... {len(reasons) - SHOWN_REASONS} more reasons (see {summary['metrics_file']} and the "
                     "quarantine's .reason.txt files)")
    lines.append(
        f"totals: {summary['curated']} batches curated ({summary['rows']} rows), {summary['quarantined']} in "
        f"quarantine (share {summary['quarantined_share']:.3g}; the gate allows gate.max_quarantined_share)"
    )
    if summary["quarantined"] and not (retried and not summary["retried_curated"] and summary["retried"]):
        lines.append(f"batches in quarantine are not checked again by themselves: after fixing params.yaml, run "
                     f"`{RETRY}`")
    if summary.get("data_docs"):
        lines.append(f"Data Docs: {summary['data_docs']}")
    return lines


def ingest(
    retry_quarantined: Annotated[
        bool,
        typer.Option("--retry-quarantined",
                     help="First judge every batch still in quarantine again against the current params.yaml "
                          "(after you fixed it): fixed ones are curated, exactly once; the others stay with the "
                          "new reason. Every attempt is recorded beside the entry (<batch>.retries.json)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stage's summary as JSON.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Ingest new batches from the landing zones (what `edgeloop stage ingest` runs), with a short summary."""
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.stages import ingest as stage

    paths = Paths.at(root)
    params = load_params(paths.params)
    summary = stage.main(params, paths, retry_quarantined=retry_quarantined)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    for line in summary_lines(summary, retry_quarantined):
        out.print(escape(line), soft_wrap=True)
