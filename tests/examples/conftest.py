"""Fixtures of the example tests: example apps in subprocesses, pages in headless Chromium.

A test module starts its app once with ``start_example`` and opens pages, each
in its own browser context (its own cookies and storage: another user)::

    @pytest.fixture(scope="module")
    def app(start_example):
        return start_example("feeds", "--speed", "10")     # README command + extra args

    def test_two_clients(app, open_page):
        a = open_page(app.url("/feeds/?watch=/stocks"))
        b = open_page(app.url("/feeds/"), permissions=["notifications"])
        tab = a.context.new_page()                           # a second tab of the same context
        wait_for(a, "() => window.feeds.updates > 2")

- ``start_example(name, *extra, ready_path="/")`` (module scope): an
  :class:`~example_support.ExampleApp` started with the command of
  ``examples/<name>/README.md`` on a free port, stopped after the module.
- ``open_page(url, *, init_script=None, **context_options)``: a Playwright
  ``Page`` at ``url`` in a new context (``context_options`` go to
  ``browser.new_context``, e.g. ``permissions``).  Pages raising uncaught
  JavaScript errors fail the test at teardown.
- ``browser`` (module scope): Debian's Chromium (``/usr/bin/chromium``, never downloaded).
- ``wait_for(page, js, arg=None, timeout=15000)`` in :mod:`example_support`:
  poll a condition instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from example_support import ExampleApp


@pytest.fixture(scope="module")
def start_example() -> Iterator[Callable[..., ExampleApp]]:
    """A factory of running example apps, all stopped after the module."""
    apps: list[ExampleApp] = []

    def start(name: str, *extra: str, ready_path: str = "/") -> ExampleApp:
        app = ExampleApp(name, *extra, ready_path=ready_path)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A factory of pages, each in a new browser context; uncaught page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(url: str, *, init_script: str | None = None, **context_options: Any) -> Any:
        context = browser.new_context(**context_options)
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}")))
        page = context.new_page()
        page.goto(url)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"
