"""Fixtures of the Socket.IO tests: the real clients and a server subprocess.

``serve.py`` runs the test application in its own process (the clients here
are not Twisted's).  The npm package ``socket.io-client`` is installed into
``tests/socketio/js/node_modules`` by ``npm ci`` (from ``package-lock.json``)
the first time a session needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sio_support import SioServer, ensure_js


@pytest.fixture(scope="session")
def socketio_js() -> Path:
    """``tests/socketio/js`` with ``node_modules`` installed (``npm ci`` when missing)."""
    return ensure_js()


def _server(*settings: str) -> Iterator[SioServer]:
    running = SioServer(*settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sio_server(socketio_js: Path) -> Iterator[SioServer]:
    """The test application with default settings (both transports, no recovery)."""
    yield from _server()


@pytest.fixture(scope="module")
def polling_server(socketio_js: Path) -> Iterator[SioServer]:
    """The test application with WebSocket turned off (``socketio.transports=polling``)."""
    yield from _server("socketio.transports=polling")


@pytest.fixture(scope="module")
def recovery_server(socketio_js: Path) -> Iterator[SioServer]:
    """The test application with connection state recovery."""
    yield from _server("socketio.recovery=true")
