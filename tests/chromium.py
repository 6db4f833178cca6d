"""Debian's headless Chromium for every browser test (never a downloaded browser).

``apt-get install chromium`` provides ``/usr/bin/chromium`` (``PUSHPY_CHROMIUM`` overrides it); the
``browser`` fixture of ``tests/conftest.py`` launches it once per test module through Playwright.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

CHROMIUM = os.environ.get("PUSHPY_CHROMIUM", "/usr/bin/chromium")
#: Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def launched_chromium(**options: Any) -> Iterator[Any]:
    """Yield a launched Playwright ``Browser`` of :data:`CHROMIUM`; close it afterwards."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, **options)
    except Exception:
        playwright.stop()
        raise
    try:
        yield launched
    finally:
        launched.close()
        playwright.stop()
