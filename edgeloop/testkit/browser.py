"""A real browser for console tests: Playwright driving Debian's Chromium (no browser download).

``chromium_executable()`` finds ``/usr/bin/chromium`` (or ``chromium`` on PATH), else None: tests skip with
``NO_CHROMIUM``. ``browser_page(base_url)`` (a pytest-free context manager) launches it headless with
``executable_path`` (and ``--no-sandbox`` when running as root, where Chromium's sandbox cannot start),
opens a page and records every request whose host is not the hub's in ``foreign_requests`` (tests assert
it stays empty). ``screenshot(page, name)`` saves a full-page PNG under ``EDGELOOP_SCREENSHOTS`` (default
``build/console-screenshots/`` in the repository; git-ignored) and returns its path. Leaves out anything
about what pages show (the tests) and installing Chromium (``apt-get install chromium``; .ci/run does).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeloop.testkit.project import REPO

__all__ = ["NO_CHROMIUM", "BrowserSession", "browser_page", "chromium_executable", "screenshot", "screenshots_dir"]

NO_CHROMIUM = "no Chromium: apt-get install chromium"
SCREENSHOTS_ENV = "EDGELOOP_SCREENSHOTS"


def chromium_executable() -> str | None:
    """Debian's Chromium, or one on PATH; None when there is none."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def screenshots_dir() -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or REPO / "build" / "console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG of ``page`` named ``name`` (letters, digits, - and _ kept) in screenshots_dir()."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "page"
    path = screenshots_dir() / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class BrowserSession:
    page: Any  # playwright.sync_api.Page
    context: Any  # playwright.sync_api.BrowserContext
    base_url: str
    foreign_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        """Open ``path`` on the hub; the navigation's response."""
        return self.page.goto(self.base_url + path)


@contextmanager
def browser_page(base_url: str, executable: str | None = None) -> Iterator[BrowserSession]:
    """Headless Chromium with one page, recording requests that leave the hub's host."""
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_executable()
    if executable is None:
        raise RuntimeError(NO_CHROMIUM)
    hub_host = urlsplit(base_url).netloc
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900}, ignore_https_errors=True)
            page = context.new_page()
            session = BrowserSession(page, context, base_url.rstrip("/"))

            def note(request: Any) -> None:
                session.requests.append(request.url)
                parts = urlsplit(request.url)
                if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != hub_host:
                    session.foreign_requests.append(request.url)

            context.on("request", note)
            yield session
        finally:
            browser.close()
