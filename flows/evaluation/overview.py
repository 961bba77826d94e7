"""One offline HTML page that says, at a glance, what the gate decided and why.

``data/candidate/index.html``: the verdict, every gate rule (threshold, observed, pass/fail), candidate
vs champion quality and per-feature drift as bars, what ingest curated and quarantined (with each
reason, read from ``storage.quarantine``: a folder or a bucket), and links to the Evidently reports and
the Data Docs. A report is linked only when its file exists beside the page being written
(``candidate_report_links``); otherwise the page names it as not built, with why and the commands that
build it, so no link is broken. Links are relative, so the page works opened from its folder and when the
hub's console serves the project's ``data/`` folder (``data/candidate/index.html`` under
``/console/reports/candidate/``). Inline CSS only: no script, no font, no CDN, so it opens on a closed
network. Leaves out: the numbers' computation (evaluate, gate) and charts that need JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.contracts.errors import UserError
from edge.contracts.release_layout import MANIFEST_FILE
from flows.evaluation.decision import holdout_label, metric_label
from flows.storage import StoragePath, read_bytes

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

MAX_QUARANTINE_ROWS = 200
EVALUATE_REPORTS = {"drift.html": "Evidently: data drift", "candidate_quality.html": "Evidently: candidate quality",
                    "champion_quality.html": "Evidently: champion quality"}
DATA_DOCS = "../reports/ingest/data_docs/index.html"  # from data/candidate/: data/reports/ingest/...


@dataclass(frozen=True)
class ReportLink:
    """A report the overview may link: ``href`` relative to the page ("/"-separated); ``build`` says what
    builds it, shown instead of the link when the file does not exist."""

    label: str
    href: str
    build: str


def _relative(href: str) -> bool:
    return bool(href) and not href.startswith(("/", "\\")) and ":" not in href.split("/", 1)[0]


def existing_links(page_dir: Path, wanted: Sequence[ReportLink]) -> tuple[dict[str, str], list[ReportLink]]:
    """(label -> href of each report whose file exists under ``page_dir``, the ones that do not).
    An absolute or scheme href is a mistake in the caller: ValueError."""
    links: dict[str, str] = {}
    missing: list[ReportLink] = []
    for link in wanted:
        if not _relative(link.href):
            raise ValueError(f"report links must be relative to the page: {link.href!r}")
        if (page_dir / link.href).is_file():
            links[link.label] = link.href
        else:
            missing.append(link)
    return links, missing


def candidate_report_links(params: Params, paths: Paths, page_dir: Path,
                           passed: bool) -> tuple[dict[str, str], list[ReportLink]]:
    """The candidate page's report links, as ``existing_links`` of ``page_dir`` (the folder the page is
    written in: the candidate folder or its staging sibling). A passed candidate links its own copies of
    the Evidently reports; a blocked one has none and links ``data/reports/evaluate``. Champion quality is
    listed only when evaluate wrote it (there is no champion before the first release)."""
    root = f" --root {paths.root}" if paths.root != Path.cwd() else ""
    rerun_gate = f"then `edgeloop stage gate{root}` writes this page again"
    reports = "reports" if passed else "../reports/evaluate"
    evaluate = f"run `edgeloop stage evaluate{root}`, {rerun_gate}"
    wanted = [ReportLink(label, f"{reports}/{name}", evaluate) for name, label in EVALUATE_REPORTS.items()
              if name != "champion_quality.html" or (paths.reports / "evaluate" / name).is_file()]
    docs_off = "" if params.ingest.data_docs else (
        "this project turns Data Docs off (ingest.data_docs: false in params.yaml); set it to true, then ")
    wanted.append(ReportLink("Great Expectations Data Docs (ingest)", DATA_DOCS,
                             f"{docs_off}run `edgeloop stage ingest{root}`, {rerun_gate}"))
    wanted.append(ReportLink("decision.json", "decision.json", "written by the gate with this page"))
    if passed:
        wanted.append(ReportLink(MANIFEST_FILE, MANIFEST_FILE, "written by the gate for a passed candidate"))
    return existing_links(page_dir, wanted)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 64rem; color: #1d2330; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { border-bottom: 1px solid #e4e6ea; padding: .35rem .5rem; text-align: left; vertical-align: top; }
.badge { display: inline-block; padding: .2rem .7rem; border-radius: 1rem; color: #fff; font-weight: 600; }
.pass { background: #1b873f; } .fail { background: #c62828; }
.bar { background: #e8ebf0; height: .9rem; width: 16rem; position: relative; }
.bar span { position: absolute; left: 0; top: 0; bottom: 0; background: #3c6ecf; }
.bar.drifted span { background: #d9822b; }
.muted { color: #66708a; } code { font-size: .85rem; }
"""


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else escape(str(value))


def _bar(fraction: float, css: str = "") -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar {css}"><span style="width:{width:.1f}%"></span></div>'


def _rules(decision: dict[str, Any]) -> str:
    rows = []
    for rule in decision.get("rules", []):
        ok = rule.get("passed")
        verdict = f'<span class="badge {"pass" if ok else "fail"}">{"pass" if ok else "FAIL"}</span>'
        rows.append(
            f"<tr><td><b>{escape(str(rule.get('name')))}</b></td><td>{_num(rule.get('threshold'))}</td>"
            f"<td>{_num(rule.get('observed'))}</td><td>{verdict}</td>"
            f"<td class='muted'>{escape(str(rule.get('detail') or ''))}</td></tr>"
        )
    head = "<tr><th>rule</th><th>threshold</th><th>observed</th><th>result</th><th>detail</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _quality(evaluate: dict[str, Any]) -> str:
    candidate = evaluate.get("candidate") or {}
    champion = evaluate.get("champion") or {}
    rows = []
    for metric in ("accuracy", "balanced_accuracy", "f1_macro"):
        for who, values in (("candidate", candidate), ("champion", champion)):
            value = values.get(metric)
            if isinstance(value, int | float):
                rows.append(f"<tr><td>{metric}</td><td>{who}</td><td>{_num(float(value))}</td><td>{_bar(value)}</td></tr>")
    if not rows:
        return "<p class='muted'>No quality metrics (evaluate did not run).</p>"
    note = "" if champion else f"<p class='muted'>{escape(str(evaluate.get('champion_note') or 'No champion.'))}</p>"
    table = f"<table><tr><th>metric</th><th>model</th><th>value</th><th></th></tr>{''.join(rows)}</table>{note}"
    return _weighting_note(candidate, champion) + table


def _holdout(decision: dict[str, Any]) -> str:
    """Which split strategy chose the holdout, and the classes it lacks (the candidate is not judged on them)."""
    split = decision.get("split") or {}
    missing = split.get("holdout_missing_classes") or []
    lacks = f" It has no rows of classes {', '.join(map(str, missing))}." if missing else ""
    return f"<p class='muted'>Holdout: {escape(holdout_label(split))}.{escape(lacks)}</p>"


def _weighting_note(candidate: dict[str, Any], champion: dict[str, Any]) -> str:
    """For weighted metrics: what the weights are, and the unweighted values the Evidently reports show."""
    if not candidate.get("weighted_by"):
        return ""
    raw = []
    for who, side in (("candidate", candidate), ("champion", champion)):
        values = side.get("unweighted") or {}
        shown = ", ".join(f"{m} {_num(values.get(m))}" for m in ("accuracy", "balanced_accuracy", "f1_macro"))
        if values:
            raw.append(f"{who}: {shown}")
    return (
        f"<p>Weighted by 1/inclusion probability over {_num(candidate.get('rows'))} holdout rows: edge runners "
        "upload every mistake but only a sample of the rest, so the weights undo that filter. Unweighted "
        f"(the Evidently reports' view): {escape('; '.join(raw))}.</p>"
    )


def _drift(evaluate: dict[str, Any]) -> str:
    drift = evaluate.get("drift") or {}
    scores = drift.get("per_feature") or {}
    drifted = set(drift.get("drifted") or [])
    if not scores:
        return "<p class='muted'>No drift scores.</p>"
    top = max([abs(float(v)) for v in scores.values()] + [1e-12])
    rows = [
        f"<tr><td>{escape(name)}</td><td>{_num(float(score))}</td><td>{'drifted' if name in drifted else ''}</td>"
        f"<td>{_bar(abs(float(score)) / top, 'drifted' if name in drifted else '')}</td></tr>"
        for name, score in scores.items()
    ]
    method = escape(f"{drift.get('method', '')} (threshold {drift.get('threshold', '')})")
    head = "<tr><th>feature</th><th>score</th><th></th><th></th></tr>"
    share = _num(drift.get("share"))
    return f"<p class='muted'>Method: {method}. Share drifted: {share}.</p><table>{head}{''.join(rows)}</table>"


def _ingest(ingest: dict[str, Any], quarantined: list[tuple[str, str]]) -> str:
    summary = (
        f"<p>{_num(ingest.get('curated'))} batches curated ({_num(ingest.get('rows'))} rows, "
        f"{_num(ingest.get('duplicates_dropped'))} duplicate events dropped); "
        f"{_num(ingest.get('quarantined'))} quarantined.</p>"
    )
    if not quarantined:
        return summary
    rows = [f"<tr><td><code>{escape(name)}</code></td><td>{escape(reason)}</td></tr>" for name, reason in quarantined]
    more = "" if len(quarantined) < MAX_QUARANTINE_ROWS else "<p class='muted'>(first batches only)</p>"
    return f"{summary}<table><tr><th>batch</th><th>reason</th></tr>{''.join(rows)}</table>{more}"


def _commands(text: str) -> str:
    """``text`` escaped, with `backquoted` commands as <code>."""
    parts = escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def quarantine_reasons(folder: StoragePath) -> list[tuple[str, str]]:
    """(device/batch, one-line reason) of quarantined batches, first ``MAX_QUARANTINE_ROWS`` by name: the
    finished entries ingest counts (``flows.ingest.ledger``), in a folder or a bucket prefix."""
    from flows.ingest.ledger import iter_quarantined

    entries = iter_quarantined(folder)  # type: ignore[arg-type]  # it walks a UPath with the same calls
    return [(f"{device}/{batch}", read_bytes(path).decode("utf-8", errors="replace").strip())
            for device, batch, path in islice(entries, MAX_QUARANTINE_ROWS)]


def project_quarantine_reasons(params: Params, paths: Paths) -> list[tuple[str, str]]:
    """``quarantine_reasons`` of ``storage.quarantine``; one row saying why when it cannot be read (the
    page is written all the same)."""
    from flows.ingest.quarantine import quarantine_root

    try:
        return quarantine_reasons(quarantine_root(params, paths))
    except (OSError, UserError) as exc:
        return [(params.storage.quarantine, f"cannot be listed: {exc}")]


def render_overview(
    decision: dict[str, Any],
    ingest: dict[str, Any],
    evaluate: dict[str, Any],
    quarantined: list[tuple[str, str]],
    links: dict[str, str],
    missing: Sequence[ReportLink] = (),
) -> str:
    """The whole page; ``links`` maps a label to a path relative to the page (existing files:
    ``existing_links``), ``missing`` are the reports not built, named with what builds them."""
    passed = bool(decision.get("passed"))
    badge = '<span class="badge pass">PASSED</span>' if passed else '<span class="badge fail">BLOCKED</span>'
    reasons = "".join(f"<li>{escape(r)}</li>" for r in decision.get("reasons", []))
    metric = metric_label(str(decision.get("metric", "")), evaluate.get("candidate"))
    link_items = "".join(f'<li><a href="{escape(href)}">{escape(label)}</a></li>' for label, href in links.items())
    link_items += "".join(f'<li>{escape(m.label)}: <span class="muted">not built; {_commands(m.build)}</span></li>'
                          for m in missing)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeloop candidate {escape(str(decision.get('version')))}</title>
<style>{_CSS}</style></head><body>
<h1>Candidate <code>{escape(str(decision.get('version')))}</code> {badge}</h1>
<p class="muted">Decided {escape(str(decision.get('created', '')))} on {escape(metric)}.</p>
{f'<ul>{reasons}</ul>' if reasons else ''}
<h2>Gate rules</h2>{_rules(decision)}
<h2>Quality on the holdout</h2>{_holdout(decision)}{_quality(evaluate)}
<h2>Drift: training window vs newest ground truth</h2>{_drift(evaluate)}
<h2>Ingest</h2>{_ingest(ingest, quarantined)}
<h2>Reports</h2><ul>{link_items}</ul>
</body></html>
"""
