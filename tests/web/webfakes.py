"""In-memory doubles for the Twisted layer: a fake reactor and real requests without sockets.

``open_request`` drives a real :class:`twisted.web.server.Request` over a
:class:`DummyChannel` through a :class:`~twisted.web.server.Site`, so headers,
``notifyFinish`` and producer registration behave as in production; the
channel records each body write so tests can count them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from pushpy.config import Config
from pushpy.server import PushServer

ENDPOINT = b"/pushlet/pushlet.srv"
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)="((?:[^"\\]|\\.)*)"')


class FakeReactor(MemoryReactorClock):
    """A memory reactor and clock whose ``callFromThread`` queues calls until :meth:`run_thread_calls`."""

    def __init__(self) -> None:
        super().__init__()
        self.thread_calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.thread_calls.append((f, args, kwargs))

    def run_thread_calls(self) -> None:
        calls, self.thread_calls = self.thread_calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


def make_server(rng: random.Random | None = None, **settings: Any) -> tuple[PushServer, FakeReactor]:
    """A :class:`PushServer` on a fresh :class:`FakeReactor` with ``settings`` as config."""
    reactor = FakeReactor()
    server = PushServer(Config(**settings), reactor=reactor, rng=rng or random.Random(0))
    return server, reactor


class RecordingChannel(DummyChannel):
    """A :class:`DummyChannel` that keeps the response headers and every body write."""

    def __init__(self, peer: IPv4Address | None = None) -> None:
        super().__init__(peer)
        self.header_block = b""
        self.writes: list[bytes] = []

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        before = self.transport.written.tell()
        super().writeHeaders(version, code, reason, headers)
        self.header_block = self.transport.written.getvalue()[before:]

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Exchange:
    """One request and what the server answered so far."""

    def __init__(self, request: Request, channel: RecordingChannel) -> None:
        self.request = request
        self.channel = channel

    @property
    def body(self) -> bytes:
        return b"".join(self.channel.writes)

    @property
    def writes(self) -> list[bytes]:
        return self.channel.writes

    @property
    def finished(self) -> bool:
        return bool(self.request.finished)

    @property
    def code(self) -> int:
        return self.request.code

    def header(self, name: bytes) -> list[bytes] | None:
        return self.request.responseHeaders.getRawHeaders(name)

    def events(self) -> list[dict[str, str]]:
        return parse_events(self.body)

    def names(self) -> list[str]:
        return [event["p_event"] for event in self.events()]

    def disconnect(self) -> None:
        """The client goes away (as ``HTTPChannel.connectionLost`` reports it)."""
        self.request.connectionLost(Failure(ConnectionLost()))

    @property
    def producer(self) -> Any:
        """The push producer registered with the transport (the stream channel)."""
        producers = self.channel.transport.producers
        return producers[-1][0] if producers else None


def open_request(server: PushServer, query: str, *, resource: Any = None, method: bytes = b"GET",
                 agent: bytes | None = None, peer: str = "192.168.1.1", body: bytes = b"") -> Exchange:
    """Send ``<method> <endpoint>?<query>`` (with ``body``) to ``server``'s Pushlet resource from ``peer``."""
    channel = RecordingChannel(IPv4Address("TCP", peer, 12344))
    channel.site = Site(resource if resource is not None else server.pushlet_resource(),
                        reactor=server.reactor)
    request = Request(channel)
    if agent is not None:
        request.requestHeaders.setRawHeaders(b"user-agent", [agent])
    request.gotLength(len(body))
    if body:
        request.handleContentChunk(body)
    request.requestReceived(method, ENDPOINT + b"?" + query.encode(), b"HTTP/1.0")
    return Exchange(request, channel)


def parse_events(body: bytes) -> list[dict[str, str]]:
    """The events of an ``xml`` or ``xml-strict`` body, fields in order."""
    text = body.decode("utf-8")
    return [dict(_PAIR.findall(element)) for element in re.findall(r"<event (.*?)/>", text, re.S)]


def session_id(exchange: Exchange) -> str:
    """The ``p_id`` of the first (ack) event of ``exchange``."""
    return exchange.events()[0]["p_id"]


def stream(server: PushServer, subject: str = "/news", fmt: str = "xml") -> Exchange:
    """A ``join-listen`` in stream mode subscribed to ``subject``."""
    return open_request(server, f"p_event=join-listen&p_format={fmt}&p_mode=stream&p_subject={subject}")


def pull_session(server: PushServer, subject: str = "/news", mode: str = "pull") -> str:
    """Join-listen in ``mode`` (xml-strict, the AJAX client's format); return the session id."""
    first = open_request(
        server, f"p_event=join-listen&p_format=xml-strict&p_mode={mode}&p_subject={subject}")
    assert first.finished
    return session_id(first)


def refresh(server: PushServer, sid: str) -> Exchange:
    """A ``refresh`` request of session ``sid``."""
    return open_request(server, f"p_event=refresh&p_id={sid}")


def document_events(body: bytes) -> list[dict[str, str]]:
    """The events of one complete ``xml-strict`` document; raises if it is not well-formed."""
    root = ElementTree.fromstring(body)
    assert root.tag == "pushlet"
    assert all(child.tag == "event" for child in root)
    return [dict(child.attrib) for child in root]
