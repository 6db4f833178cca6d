"""The ``native_server`` fixture: running pushpy servers on loopback (see :mod:`native_client`).

A test module loads it with ``pytest_plugins = ("native_fixtures",)``; this
module is not imported otherwise, so pytest rewrites its assertions.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from native_client import FAST, NativeHarness

from pushpy.config import Config


@pytest_twisted.async_yield_fixture
async def native_server():
    """A factory of running servers: ``native_server(**config_overrides) -> NativeHarness``."""
    harnesses: list[NativeHarness] = []

    def start(**overrides: Any) -> NativeHarness:
        harness = NativeHarness(Config(**{**FAST, **overrides}))
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        await harness.close()
