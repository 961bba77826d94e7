"""Data Docs rewritten for a closed network: nothing loads from the internet, links stay."""

from __future__ import annotations

from flows.ingest.offline_docs import make_offline, make_site_offline, remote_loads

PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.example/bootstrap.min.css">
<script src="https://code.example/jquery.min.js"></script>
<style>.logo { background: url('https://bucket.example/logo.png'); }</style>
<script src="static/local.js"></script>
</head><body><img src="https://bucket.example/logo.png" alt="logo">
<a href="https://docs.example/help">help</a><table><tr><td>7</td></tr></table></body></html>"""


def test_remote_loads_are_removed_and_links_kept():
    assert len(remote_loads(PAGE)) == 4
    offline = make_offline(PAGE)
    assert remote_loads(offline) == []
    assert 'href="https://docs.example/help"' in offline  # a link loads nothing until clicked
    assert 'src="static/local.js"' in offline and "<td>7</td>" in offline
    assert "Offline copy" in offline
    assert make_offline(offline) == offline  # idempotent


def test_a_whole_site_is_rewritten(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "sub" / "page.html").write_text(PAGE)
    (tmp_path / "plain.html").write_text("<html><head></head><body>ok</body></html>")
    assert make_site_offline(tmp_path) == 3
    assert make_site_offline(tmp_path) == 0
    assert not any(remote_loads(p.read_text()) for p in tmp_path.rglob("*.html"))
    index = (tmp_path / "index.html").read_text()
    assert 'href="sub/page.html"' in index and 'href="plain.html"' in index  # listed without JavaScript
    assert "Every page" not in (tmp_path / "sub" / "page.html").read_text()
