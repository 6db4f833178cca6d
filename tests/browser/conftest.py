"""Fixtures of the browser tests: a pushpy server subprocess and headless Chromium.

The server runs in a subprocess (``serve.py``) so the Twisted reactor that
pytest-twisted owns in this process is not involved; Playwright's sync API
drives Debian's Chromium (``apt-get install chromium``; browsers are never
downloaded).  One browser serves a whole module, one context each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import SERVER_SETTINGS, Page, Server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A pushpy server with the test hooks, and a buffering proxy in front of it."""
    running = Server("--proxy", *SERVER_SETTINGS)
    yield running
    running.stop()


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
