"""Fixtures shared by every test folder; the helpers live in :mod:`server_support`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from chromium import launched_chromium
from hypothesis import settings
from server_support import FAST, Running

from pushpy.config import Config

# No per-example time limit: on a shared, loaded machine a slow example is not a failure.
settings.register_profile("pushpy", deadline=None)
settings.load_profile("pushpy")


@pytest_twisted.async_yield_fixture
async def pushpy_server():
    """A factory of running servers: ``pushpy_server(port=0, **config_overrides) -> Running``."""
    running: list[Running] = []

    def start(port: int = 0, **overrides: Any) -> Running:
        server = Running(Config(**{**FAST, **overrides}), port)
        running.append(server)
        return server

    yield start
    for server in running:
        await server.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: a test in headless Chromium (needs /usr/bin/chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system's package, for the whole module."""
    yield from launched_chromium()
