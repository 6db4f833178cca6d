"""Fixtures for the integration tests: a real PushServer on loopback, a treq client.

``serve(**config)`` starts a :class:`~pushpy.server.PushServer` with
:func:`~pushpy.web.site.build_site` on ``127.0.0.1`` (any free port) and
returns a :class:`Harness` holding its own ``HTTPConnectionPool``.  Tear-down
stops listening, stops the service and closes the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_twisted
from pushlet_client import RawResponse, Stream, raw_http
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from pushpy.config import Config
from pushpy.server import PushServer
from pushpy.web.site import build_site

#: Defaults of the test servers: a read timeout long enough that no ``hb`` slips between the
#: events a test expects (tests of heartbeats ask for 300 ms), and a quick lease sweeper.
FAST = {"queue_read_timeout_millis": 5_000, "session_check_millis": 100}


class Harness:
    """One running server and a client bound to it."""

    def __init__(self, config: Config) -> None:
        self.push = PushServer(config, reactor=reactor)
        self.push.startService()
        self.site = build_site(self.push)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.client = HTTPClient(self.agent)
        host = self.port.getHost()
        self.origin = f"http://127.0.0.1:{host.port}"
        self.url = f"{self.origin}/pushlet/pushlet.srv"
        self.streams: list[Stream] = []

    @property
    def sessions(self) -> dict[str, Any]:
        return self.push.dispatcher.sessions

    def get(self, params: dict[str, str] | list[tuple[str, str]] | None = None,
            *, headers: dict[str, list[str]] | None = None) -> Deferred:
        """GET the endpoint with form-encoded ``params``; a buffered treq response."""
        return self.client.get(self.url, params=params, headers=headers, timeout=5)

    def post(self, body: bytes | dict[str, str], *, query: str = "",
             content_type: str | None = None) -> Deferred:
        """POST ``body`` (bytes as given, a dict form-encoded) to the endpoint."""
        headers = {"Content-Type": [content_type]} if content_type else None
        url = self.url + (f"?{query}" if query else "")
        return self.client.post(url, data=body, headers=headers, timeout=5)

    def raw(self, query: bytes, *, method: bytes = b"GET",
            headers: dict[bytes, list[bytes]] | None = None) -> Deferred:
        """Request ``<endpoint>?<query>`` through the agent, the query as given (ASCII only)."""
        uri = self.url.encode() + (b"?" + query if query else b"")
        return self.agent.request(method, uri, Headers(headers or {}))

    async def raw_http(self, query: bytes, *, method: bytes = b"GET", body: bytes = b"",
                       headers: bytes = b"") -> RawResponse:
        """An HTTP/1.0 request written byte for byte (raw spaces, bad UTF-8 allowed)."""
        request = (method + b" /pushlet/pushlet.srv" + (b"?" + query if query else b"")
                   + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n" + headers)
        if body or method == b"POST":
            request += b"Content-Length: %d\r\n" % len(body)
        return await raw_http(self.port.getHost().port, request + b"\r\n" + body)

    async def open(self, params: dict[str, str] | list[tuple[str, str]] | None = None,
                   *, query: bytes | None = None,
                   headers: dict[bytes, list[bytes]] | None = None) -> Stream:
        """Start a (possibly endless) response and read it incrementally."""
        if query is None:
            query = urlencode(params or {}).encode()
        response = await self.raw(query, headers=headers)
        stream = Stream(response)
        self.streams.append(stream)
        return stream

    async def close(self) -> None:
        for stream in self.streams:
            stream.disconnect()
        await self.port.stopListening()
        if self.push.running:
            self.push.stopService()
        await self.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def serve():
    """A factory of running servers: ``serve(**config_overrides) -> Harness``."""
    harnesses: list[Harness] = []

    def start(**overrides: Any) -> Harness:
        harness = Harness(Config(**{**FAST, **overrides}))
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        await harness.close()


@pytest.fixture
def server(serve: Callable[..., Harness]) -> Harness:
    """A server with the test defaults (5 s read timeout, 100 ms lease checks)."""
    return serve()
