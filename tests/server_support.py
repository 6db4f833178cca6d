"""Real pushpy servers on loopback for the tests, and waiting without blind sleeps.

The ``pushpy_server(port=0, **config)`` fixture (``tests/conftest.py``) starts a
:class:`~pushpy.server.PushServer` with :func:`~pushpy.web.site.build_site` on
``127.0.0.1`` and returns a :class:`Running` server; tear-down stops everything
the test started, clients included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from pushpy.client import Client
from pushpy.config import Config
from pushpy.server import PushServer
from pushpy.web.site import build_site

FAST = {"queue_read_timeout_millis": 1_000, "session_check_millis": 100}


class WaitTimeout(AssertionError):
    """A condition did not hold in time."""


def sleep(seconds: float) -> Deferred:
    """A Deferred that fires after ``seconds`` on the reactor."""
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def eventually(check: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``check()`` is true, polling the reactor every ``step`` seconds."""
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise WaitTimeout(f"condition not met within {timeout}s")
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
        self.extra_ports: list[Any] = []
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.http = HTTPClient(self.agent)

    async def get(self, path: str) -> tuple[int, Any, bytes]:
        """``GET <root><path>``: status, headers and body."""
        response = await self.http.get(self.url + path, timeout=5)
        return response.code, response.headers, await response.content()

    async def stats(self) -> dict[str, Any]:
        """The JSON of ``<root>stats``."""
        code, _, body = await self.get("stats")
        assert code == 200, body
        return json.loads(body)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``<root>metrics``: ``{(name, sorted labels): value}``."""
        from prometheus_client.parser import text_string_to_metric_families

        code, _, body = await self.get("metrics")
        assert code == 200, body
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples}

    def client(self, **options: Any) -> Client:
        options.setdefault("reconnect_delay", 0.05)
        options.setdefault("max_reconnect_delay", 0.2)
        client = Client(options.pop("url", self.url), reactor=reactor, **options)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for port in self.extra_ports:
            await maybeDeferred(port.stopListening)
        await maybeDeferred(self.port.stopListening)
        if self.push.running:
            await maybeDeferred(self.push.stopService)
        await self.pool.closeCachedConnections()
