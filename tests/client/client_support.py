"""Helpers of the client tests: real pushpy servers on loopback, waiting without blind sleeps.

The ``pushpy_server(**config)`` fixture (``conftest.py``) starts a :class:`~pushpy.server.PushServer` with
:func:`~pushpy.web.site.build_site` on ``127.0.0.1`` (a free port) and returns
a :class:`Running` server.  Tear-down stops everything the tests started, clients included.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import ProcessProtocol

from pushpy.client import Client
from pushpy.config import Config
from pushpy.server import PushServer
from pushpy.web.site import build_site

FAST = {"queue_read_timeout_millis": 1_000, "session_check_millis": 100}


def sleep(seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def eventually(check: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``check()`` is true, polling the reactor."""
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await sleep(step)
        waited += step


class Running:
    """A server listening on loopback, and the clients made for it."""

    def __init__(self, config: Config, port: int = 0) -> None:
        self.config = config
        self.push = PushServer(config, reactor=reactor)
        self.push.startService()
        self.site = build_site(self.push)
        self.port = reactor.listenTCP(port, self.site, interface="127.0.0.1")
        self.number = self.port.getHost().port
        self.url = f"http://127.0.0.1:{self.number}/pushlet/"
        self.clients: list[Client] = []

    def client(self, **options: Any) -> Client:
        options.setdefault("reconnect_delay", 0.05)
        options.setdefault("max_reconnect_delay", 0.2)
        client = Client(options.pop("url", self.url), reactor=reactor, **options)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await maybeDeferred(self.port.stopListening)
        if self.push.running:
            await maybeDeferred(self.push.stopService)


# -- the command line -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment of a ``python -m pushpy`` subprocess: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class CLIProcess(ProcessProtocol):
    """``python -m pushpy ARGS`` running, its output collected."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred = Deferred()
        self.code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.code = reason.value.exitCode
        self.ended.callback(self)

    @property
    def lines(self) -> list[str]:
        return self.out.decode().splitlines()


def spawn_cli(*args: str) -> CLIProcess:
    """Start ``python -m pushpy ARGS`` (on this reactor: the test's server keeps serving)."""
    process = CLIProcess()
    reactor.spawnProcess(process, sys.executable, [sys.executable, "-m", "pushpy", *args],
                         env=cli_env(), path=str(ROOT))
    return process


async def run_cli(*args: str, timeout: float = 20.0) -> CLIProcess:
    """Run ``python -m pushpy ARGS`` to its end."""
    process = spawn_cli(*args)
    await process.ended.addTimeout(timeout, reactor)
    return process
