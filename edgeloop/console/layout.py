"""The console's page shell and small HTML helpers: one whole document per page, inline CSS, no script.

``page(title, body_html, operator, active)`` wraps a page body in the document (navigation: Fleet,
Releases, Loop, Reports; who is logged in; a logout form) and answers it with strict headers (no-store,
a CSP that allows nothing from anywhere but inline styles and same-origin/data images and forms).
Helpers: ``esc`` (escape any value for HTML text or attributes), ``csrf_field``, ``table``, ``badge``,
``confirm_form`` (an "are you sure?" summary with a POST button), ``error_page``. Leaves out who is
logged in (edgeloop.console.auth) and what pages say (the page modules).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from fastapi.responses import HTMLResponse

from edgeloop.console.operators import Operator

__all__ = ["HEADERS", "NAV", "badge", "confirm_form", "csrf_field", "error_page", "esc", "fmt_time", "page", "table"]

NAV = (("fleet", "Fleet", "/console/fleet"), ("releases", "Releases", "/console/releases"),
       ("loop", "Loop", "/console/loop"), ("reports", "Reports", "/console/reports"))
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

# Okabe-Ito based words: colour is never the only cue (the word is always shown).
_BADGES = {
    "ok": "good", "online": "good", "healthy": "good", "published": "good", "pass": "good", "passed": "good",
    "active": "good", "promoted": "good", "valid": "good",
    "degraded": "warn", "stale": "warn", "warning": "warn", "pending": "warn", "expiring": "warn", "halted": "warn",
    "error": "bad", "offline": "bad", "failed": "bad", "fail": "bad", "rejected": "bad", "revoked": "bad",
    "rolled back": "bad", "rollback": "bad", "expired": "bad",
    "never seen": "muted", "unknown": "muted", "none": "muted",
}

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#f6f7f9}
header{background:#1f2a37;color:#fff;display:flex;align-items:center;gap:1.2rem;padding:.5rem 1rem;flex-wrap:wrap}
header .brand{font-weight:700;letter-spacing:.02em}
header nav a{color:#cfd8e3;text-decoration:none;padding:.3rem .6rem;border-radius:4px}
header nav a.active,header nav a:hover{background:#374151;color:#fff}
header .who{margin-left:auto;display:flex;gap:.6rem;align-items:center;color:#cfd8e3}
header .who button{background:none;border:1px solid #6b7280;color:#fff;border-radius:4px;padding:.15rem .6rem}
main{padding:1rem 1.2rem;max-width:1500px}
h1{font-size:1.35rem;margin:.2rem 0 .8rem}
h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
a{color:#0b57a4}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e6ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5;position:sticky;top:0}
td:first-child a{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.good{background:#d7f0e6;color:#00603f}.badge.warn{background:#fdebc8;color:#7a4b00}
.badge.bad{background:#f9d9d0;color:#8f1d00}.badge.muted{background:#e5e7eb;color:#374151}
.badge.info{background:#dbeafe;color:#1e3a8a}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin-bottom:1rem}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:.6rem .9rem;min-width:11rem}
.card .big{font-size:1.3rem;font-weight:700}
.muted{color:#6b7280}.reason{color:#7a2e00}
form.filters{display:flex;gap:.5rem;flex-wrap:wrap;align-items:end;margin:.5rem 0 1rem}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#374151}
input,select,button{font:inherit;padding:.25rem .4rem}
.confirm{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:1rem;max-width:44rem}
.confirm button{background:#b42318;color:#fff;border:0;border-radius:4px;padding:.4rem 1rem;cursor:pointer}
.confirm.login button{background:#0b57a4}
.message{background:#fff;border-left:4px solid #b42318;padding:.8rem 1rem;max-width:48rem}
.message.ok{border-color:#00603f}
svg{background:#fff;border:1px solid #e3e6ea;border-radius:6px;max-width:100%;height:auto}
code{background:#eef1f5;padding:0 .25rem;border-radius:3px}
"""


_SPECIAL = re.compile(r"[&<>\"']")


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML text and quoted attributes (None: empty)."""
    if value is None:
        return ""
    text = str(value)
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


def fmt_time(value: datetime | str | None, with_date: bool = True) -> str:
    """A UTC time as ``2026-12-02 14:02:05 UTC`` (or ``14:02`` without the date); "" for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = moment
    text = value.isoformat(sep=" ")  # much faster than strftime, the same digits
    return f"{text[:19]} UTC" if with_date else text[11:16]


def csrf_field(operator: Operator) -> str:
    """The hidden form field every console POST form carries."""
    return f'<input type="hidden" name="csrf" value="{esc(operator.csrf)}">'


def badge(word: str | None, kind: str | None = None) -> str:
    """A status word as a coloured badge (the word itself is the information; colour only helps)."""
    text = "unknown" if word is None or word == "" else str(word)
    return f'<span class="badge {kind or _BADGES.get(text.lower(), "info")}">{esc(text)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (),
          escape: bool = False, empty: str = "nothing to show") -> str:
    """A table: ``rows`` are cells of HTML (escaped when ``escape``); ``numeric`` column indexes align right."""
    right = set(numeric)
    head = "".join(f'<th{" class=num" if i in right else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    parts = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    count = 0
    for row in rows:
        count += 1
        cells = (esc(c) if escape else c for c in row)
        parts.append("<tr>" + "".join(f'<td{" class=num" if i in right else ""}>{c}</td>'
                                      for i, c in enumerate(cells)) + "</tr>")
    if not count:
        parts.append(f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>')
    parts.append("</tbody></table>")
    return "".join(parts)


def confirm_form(operator: Operator, action: str, summary_html: str, button: str, cancel: str,
                 fields: Mapping[str, str] | None = None) -> str:
    """An "are you sure?" block: ``summary_html``, a POST form to ``action`` with the CSRF field, ``fields``
    as hidden inputs and a ``button``, and a cancel link back to ``cancel``."""
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in (fields or {}).items())
    return (f'<div class="confirm">{summary_html}<form method="post" action="{esc(action)}">{csrf_field(operator)}'
            f'{hidden}<button type="submit">{esc(button)}</button> <a href="{esc(cancel)}">Cancel</a></form></div>')


def _header(operator: Operator | None, active: str) -> str:
    links = "".join(f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
                    for key, label, href in NAV)
    who = ""
    if operator is not None:
        via = " (certificate)" if operator.via == "certificate" else ""
        logout = ("" if operator.via == "certificate" else
                  f'<form method="post" action="/console/logout">{csrf_field(operator)}'
                  f'<button type="submit">Log out</button></form>')
        who = f'<div class="who"><span>Logged in as <strong>{esc(operator.name)}</strong>{via}</span>{logout}</div>'
    return f'<header><span class="brand">edgeloop</span><nav>{links if operator else ""}</nav>{who}</header>'


def page(title: str, body_html: str, operator: Operator | None, active: str = "", status_code: int = 200,
         headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """The whole HTML document for one console page, with the console's security headers."""
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(title)} · edgeloop</title><style>{STYLE}</style></head>"
                f"<body>{_header(operator, active)}<main>{body_html}</main></body></html>")
    return HTMLResponse(document, status_code=status_code, headers={**HEADERS, **(headers or {})})


def error_page(status_code: int, title: str, message: str, operator: Operator | None,
               headers: Mapping[str, str] | None = None, detail_html: str = "") -> HTMLResponse:
    """A refusal or "not found" as a console page: a heading and one readable sentence."""
    body = f'<h1>{esc(title)}</h1><div class="message"><p>{esc(message)}</p>{detail_html}</div>'
    return page(title, body, operator, "", status_code, headers)
