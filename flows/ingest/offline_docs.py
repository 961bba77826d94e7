"""Make Great Expectations Data Docs safe to open on a closed network.

GX 1.x renders Data Docs that load jQuery, Bootstrap, Vega and fonts from public CDNs and a logo from a
vendor bucket: opening them would call out, and offline they lose their layout. This rewrites every
page in place: tags that load anything from ``http(s)://`` are removed, a small inline stylesheet
keeps the tables readable, a banner says what was removed, and the index gets a plain list of every
page (GX lists them with JavaScript). Plain links (``<a href>``) stay: they
load nothing until clicked. Leaves out: the interactive parts (sortable tables, Vega charts), which do
not work offline.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from edge.atomic import write_text_atomic

_REMOTE = r"""["']https?://[^"']*["']"""
_REMOTE_TAGS = [
    re.compile(rf"<script\b[^>]*\bsrc={_REMOTE}[^>]*>\s*</script>", re.IGNORECASE),
    re.compile(rf"<link\b[^>]*\bhref={_REMOTE}[^>]*/?>", re.IGNORECASE),
    re.compile(rf"<img\b[^>]*\bsrc={_REMOTE}[^>]*/?>", re.IGNORECASE),
]
_REMOTE_CSS_IMPORT = re.compile(r"@import\s+url\(\s*['\"]?https?://[^)]*\)\s*;?", re.IGNORECASE)
_REMOTE_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.IGNORECASE)
MARKER = "<!-- edgeloop: offline -->"
_STYLE = MARKER + """
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ccc; padding: .25rem .5rem; }
.edgeloop-offline { background: #fff6d5; border: 1px solid #e0c060; padding: .5rem; margin-bottom: 1rem; }
</style>
"""
_BANNER = (
    '<div class="edgeloop-offline">Offline copy: scripts and styles that Great Expectations loads from '
    "the internet were removed, so tables are static and charts are not drawn.</div>"
)


def make_offline(html: str) -> str:
    """The page without remote loads; idempotent."""
    if MARKER in html:
        return html
    for pattern in _REMOTE_TAGS:
        html = pattern.sub("", html)
    html = _REMOTE_CSS_IMPORT.sub("", html)
    html = _REMOTE_CSS_URL.sub("none", html)
    html = re.sub(r"</head>", _STYLE + "</head>", html, count=1, flags=re.IGNORECASE)
    return re.sub(r"(<body\b[^>]*>)", r"\1" + _BANNER, html, count=1, flags=re.IGNORECASE)


def remote_loads(html: str) -> list[str]:
    """Every tag in ``html`` that would load something from the network (empty when offline-safe)."""
    patterns = [*_REMOTE_TAGS, _REMOTE_CSS_IMPORT, _REMOTE_CSS_URL]
    return [m.group(0) for pattern in patterns for m in pattern.finditer(html)]


def page_list(folder: Path) -> str:
    """Plain links to every page of the site: the GX index lists them only through JavaScript."""
    items = []
    for page in sorted(folder.rglob("*.html")):
        relative = page.relative_to(folder).as_posix()
        if relative != "index.html":
            items.append(f'<li><a href="{escape(relative)}">{escape(relative.removesuffix(".html"))}</a></li>')
    return f'<div class="edgeloop-offline"><b>Every page</b><ul>{"".join(items)}</ul></div>'


def make_site_offline(folder: Path) -> int:
    """Rewrite every HTML page under ``folder``; returns how many pages were changed."""
    changed = 0
    for page in sorted(folder.rglob("*.html")):
        original = page.read_text(encoding="utf-8")
        offline = make_offline(original)
        if page.parent == folder and page.name == "index.html" and offline != original:
            offline = offline.replace(_BANNER, _BANNER + page_list(folder), 1)
        if offline != original:
            write_text_atomic(page, offline)
            changed += 1
    return changed
