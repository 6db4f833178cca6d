"""Fixtures of the browser tests: a pushpy server subprocess and headless Chromium.

The server runs in a subprocess (``serve.py``) so the Twisted reactor that
pytest-twisted owns in this process is not involved; Playwright's sync API
drives Debian's Chromium (``apt-get install chromium``; browsers are never
downloaded).  One browser serves a whole module, one context each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, SERVER_SETTINGS, Page, Server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: pushpy.js in headless Chromium (needs /usr/bin/chromium)")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A pushpy server with the test hooks, and a buffering proxy in front of it."""
    running = Server("--proxy", *SERVER_SETTINGS)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system's package, for the whole module."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception:
        playwright.stop()
        raise
    yield launched
    launched.close()
    playwright.stop()


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Any]:
    """A factory of test pages, each in its own browser context: ``open_page(init_script=None, url=None)``."""
    contexts = []

    def make(init_script: str | None = None, url: str | None = None) -> Page:
        context = browser.new_context()
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        return Page(context.new_page(), url or server.page_url)

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Any) -> Page:
    """One test page on the module's server."""
    return open_page()
