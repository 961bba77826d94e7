"""Console routes: the project's reports served from the hub (candidate overview, Evidently, GX Data Docs).

``GET /console/reports`` lists the report files; ``GET /console/reports/<folder>/<path>`` serves one, where
``<folder>`` is ``candidate`` (data/candidate: the gate's overview page, its decision, manifest and its
copies of the Evidently reports), ``reports`` (data/reports: Evidently and Data Docs) or ``plots``. The
URL layout mirrors data/, so the overview's relative links (``../reports/ingest/data_docs/index.html``)
work. Only files inside those folders, after resolving symlinks, with a known report type; anything else
is 404. A missing report answers a console page naming it and the command that builds it. Pages with
scripts (Evidently, Data Docs) are served sandboxed (no same-origin access, no network, no forms) so a
report can never act on the console; script-free pages (the overview) get the console's strict policy.
Leaves out building reports (flows.evaluation, ingest) and the overview's links (flows.evaluation.overview).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Depends, Request
from fastapi.responses import FileResponse, Response

from edge.contracts.layout import Paths
from edge.contracts.release_layout import MANIFEST_FILE
from edgeloop.console.auth import Operator, console_router, operator
from edgeloop.console.layout import CSP, HEADERS, error_page, esc, fmt_time, page, table

__all__ = ["REPORT_FOLDERS", "report_file", "router"]

router = console_router()

TYPES = {".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".json": "application/json",
         ".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".png": "image/png",
         ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
         ".map": "application/json"}
SANDBOXED_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
                 "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
                 "connect-src 'none'; form-action 'none'; frame-ancestors 'self'; base-uri 'none'")
LISTED = 300  # files at most on the list page
INGEST = "run `edgeloop stage ingest` (with ingest.data_docs: true in params.yaml)"
EVALUATE = "run `edgeloop stage evaluate`, then `edgeloop stage gate`"


def REPORT_FOLDERS(paths: Paths) -> dict[str, Path]:  # noqa: N802 - reads like the constant it is per project
    """URL folder -> project folder of the reports the console serves."""
    return {"candidate": paths.candidate, "reports": paths.reports, "plots": paths.plots}


@dataclass(frozen=True)
class Missing:
    what: str
    command: str


def _missing(relative: str) -> Missing:
    """Which report ``relative`` (folder/path) is and the command that builds it."""
    if "data_docs" in relative:
        return Missing("the Great Expectations Data Docs of ingest", INGEST)
    if relative.startswith("candidate/reports/") or relative.startswith("reports/evaluate/"):
        return Missing(f"the Evidently report {Path(relative).name}", EVALUATE)
    if relative.startswith("candidate/"):
        return Missing("the candidate overview (written by the gate)", "run `edgeloop stage gate` (or "
                       "`edgeloop retrain` for the whole pipeline)")
    if relative.startswith("plots/"):
        return Missing(f"the plot {Path(relative).name}", "run `edgeloop retrain`")
    return Missing(f"the report {relative}", "run `edgeloop retrain` (the pipeline writes every report)")


def report_file(paths: Paths, relative: str) -> Path | None:
    """The file ``relative`` names inside a report folder (symlinks resolved, still inside), else None."""
    folder, _, rest = relative.partition("/")
    roots = REPORT_FOLDERS(paths)
    if folder not in roots or not rest or "\\" in rest or "\x00" in rest:
        return None
    try:
        base = roots[folder].resolve()
        target = (base / rest).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or not target.is_file() or target.suffix.lower() not in TYPES:
        return None
    return target


def _paths(request: Request) -> Paths:
    return Paths.at(request.app.state.settings.root)


def _listing(paths: Paths) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for name, folder in REPORT_FOLDERS(paths).items():
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(folder).as_posix()
            if file.suffix.lower() not in (".html", ".md", ".json", ".png", ".svg") or not file.is_file():
                continue
            if "data_docs" in relative and not relative.endswith("data_docs/index.html"):
                continue  # Data Docs: its index page links the rest
            if name == "candidate" and file.suffix == ".json" and file.name not in ("decision.json", MANIFEST_FILE):
                continue
            found.append((f"{name}/{relative}", file))
            if len(found) >= LISTED:
                return found
    return found


_TITLES = {"candidate/index.html": "Candidate overview (the gate's verdict)",
           "candidate/decision.json": "Gate decision", "candidate/manifest.json": "Release manifest",
           "candidate/decision.md": "Gate decision (text)"}


def _title(relative: str) -> str:
    if relative in _TITLES:
        return _TITLES[relative]
    if relative.endswith("data_docs/index.html"):
        return "Great Expectations Data Docs"
    if relative.endswith(".html"):
        return "Evidently: " + Path(relative).stem.replace("_", " ")
    return Path(relative).name


@router.get("/console/reports")
def reports_page(request: Request, who: Operator = Depends(operator)) -> Response:  # noqa: B008
    """Every report the project has, newest pipeline run's files."""
    paths = _paths(request)
    files = _listing(paths)
    rows = [(f'<a href="/console/reports/{esc(rel)}">{esc(_title(rel))}</a>', f"<code>{esc(rel)}</code>",
             esc(fmt_time(_mtime(f))), f"{f.stat().st_size / 1024:,.1f} KiB") for rel, f in files]
    overview = "candidate/index.html"
    hint = "" if any(rel == overview for rel, _ in files) else (
        '<p class="message">No candidate overview yet: <code>edgeloop retrain</code> (or <code>edgeloop stage '
        "gate</code>) writes it.</p>")
    body = (f"<h1>Reports</h1>{hint}<p class=muted>From <code>{esc(paths.data)}</code>: the candidate folder, "
            f"the reports folder and plots.</p>"
            + table(["Report", "File", "Written", "Size"], rows, numeric=(3,), empty="no reports yet"))
    return page("Reports", body, who, "reports")


def _mtime(file: Path) -> datetime:
    return datetime.fromtimestamp(file.stat().st_mtime, UTC)


@router.get("/console/reports/{relative:path}")
def report(relative: str, request: Request, who: Operator = Depends(operator)) -> Response:  # noqa: B008
    """One report file (behind login); a missing one: a page naming it and the command that builds it."""
    paths = _paths(request)
    target = report_file(paths, relative)
    if target is None:
        missing = _missing(relative)
        detail = (f"<p>To build it, {esc(missing.command)} in the project folder, then reload this page.</p>"
                  f'<p><a href="/console/reports">All reports</a></p>')
        return error_page(404, "Report not found", f"{missing.what[:1].upper()}{missing.what[1:]} "
                          f"({relative[:200]}) does not exist in this project.", who, detail_html=detail)
    kind = TYPES[target.suffix.lower()]
    headers = dict(HEADERS)
    if kind.startswith("text/html"):
        has_script = b"<script" in target.read_bytes().lower()
        headers["Content-Security-Policy"] = SANDBOXED_CSP if has_script else CSP
    else:
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return FileResponse(target, media_type=kind, headers=headers)
