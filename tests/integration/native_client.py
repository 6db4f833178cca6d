"""Clients for pushpy's own transports over real loopback connections.

A :class:`NativeHarness` starts a :class:`~pushpy.server.PushServer` with
:func:`~pushpy.web.site.build_site` on ``127.0.0.1`` and holds: treq on its
own ``HTTPConnectionPool(persistent=False)`` for the HTTP transports,
autobahn's WebSocket client for ``/ws``, and a raw HTTP/1.0 client whose
reading can be paused (a slow consumer).  Streams are
parsed incrementally (:class:`Parser`) so a test can wait, on the reactor and
never sleeping blindly, until a condition on the received messages holds.

The ``native_server`` fixture lives in :mod:`native_fixtures`; a test module
loads it with ``pytest_plugins = ("native_fixtures",)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import treq
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from server_support import WaitTimeout, sleep
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from pushpy.config import Config
from pushpy.server import PushServer
from pushpy.web.site import build_site

#: Short timings used unless a test asks for others.
FAST = {"queue_read_timeout_millis": 300, "session_check_millis": 100}

Message = dict[str, Any]


# -- parsing ------------------------------------------------------------------

_SCRIPT = re.compile(rb"<script>([A-Za-z_$][\w$.]*)\((.*?)\);</script>\n", re.S)


class Parser:
    """Incremental parser of one streaming body: ``sse``, ``xhr`` or ``iframe`` framing (``raw``: none).

    ``messages`` are the JSON messages in order; for SSE ``blocks`` also keeps
    every block (``{"id", "data", "comments", "retry"}``), heartbeats included,
    and ``ids`` maps a message's index to its ``id:`` line.
    """

    def __init__(self, kind: str, callback: str = "parent.pushpy_message") -> None:
        self.kind = kind
        self.callback = callback.encode()
        self.raw = bytearray()
        self._rest = b""
        self.messages: list[Message] = []
        self.blocks: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.callbacks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.raw += data
        buffer = self._rest + data
        getattr(self, "_" + self.kind)(buffer)

    def _sse(self, buffer: bytes) -> None:
        *blocks, self._rest = buffer.split(b"\n\n")
        for block in blocks:
            parsed: dict[str, Any] = {"id": None, "data": None, "comments": [], "retry": None,
                                      "event": None}
            for line in block.decode("utf-8").split("\n"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    parsed["comments"].append(value)
                elif name == "data":
                    parsed["data"] = value if parsed["data"] is None else parsed["data"] + "\n" + value
                elif name in ("id", "retry", "event"):
                    parsed[name] = value
                else:
                    raise AssertionError(f"unexpected SSE line {line!r}")
            self.blocks.append(parsed)
            if parsed["event"] == "hb":
                assert parsed["comments"] == ["hb"] and json.loads(parsed["data"]) == {"type": "hb"}
                self.heartbeats += 1
            elif parsed["data"] is not None:
                message = json.loads(parsed["data"])
                message["_sse_id"] = parsed["id"]
                self.messages.append(message)
            elif "hb" in parsed["comments"]:
                self.heartbeats += 1

    def _xhr(self, buffer: bytes) -> None:
        *lines, self._rest = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._add(json.loads(line.decode("utf-8")))

    def _raw(self, buffer: bytes) -> None:
        """Not a native stream (a Pushlet one): keep the bytes only."""

    def _iframe(self, buffer: bytes) -> None:
        end = 0
        for match in _SCRIPT.finditer(buffer):
            self.callbacks.append(match.group(1))
            self._add(json.loads(match.group(2).decode("utf-8")))
            end = match.end()
        self._rest = buffer[end:]

    def _add(self, message: Message) -> None:
        if message.get("type") == "hb":
            self.heartbeats += 1
        else:
            self.messages.append(message)


def events(messages: list[Message]) -> list[Message]:
    """The ``event`` messages of ``messages``."""
    return [m for m in messages if m.get("type") == "event"]


def texts(messages: list[Message]) -> list[str]:
    """The ``text`` field of every event in ``messages``."""
    return [m["fields"].get("text") for m in events(messages)]


def of_type(messages: list[Message], kind: str) -> list[Message]:
    return [m for m in messages if m.get("type") == kind]


# -- waiting ------------------------------------------------------------------

class _Waitable:
    """Something that receives data and lets a test wait for a condition on it."""

    finished = False

    def _init_waiters(self) -> None:
        self._waiters: list[tuple[Callable[[Any], bool], Deferred]] = []

    def _check(self) -> None:
        for waiter in list(self._waiters):
            condition, d = waiter
            if condition(self) or self.finished:
                self._waiters.remove(waiter)
                d.callback(None)

    async def wait(self, condition: Callable[[Any], bool], timeout: float = 2.0) -> Any:
        """Wait until ``condition(self)`` holds; fail after ``timeout`` or if it ends first."""
        if not (condition(self) or self.finished):
            d: Deferred = Deferred()
            waiter = (condition, d)
            self._waiters.append(waiter)

            def expire() -> None:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    d.callback(None)

            call = reactor.callLater(timeout, expire)
            try:
                await d
            finally:
                if call.active():
                    call.cancel()
        if not condition(self):
            raise WaitTimeout(f"not met within {timeout}s (finished={self.finished}); "
                              f"got {self.describe()}")
        return self

    async def until(self, count: int, kind: str = "event", timeout: float = 2.0) -> list[Message]:
        """Wait for at least ``count`` messages of type ``kind``; return all messages."""
        await self.wait(lambda s: len(of_type(s.messages, kind)) >= count, timeout)
        return self.messages

    def describe(self) -> str:
        return repr(self.messages)[-2000:]


class Feed(Protocol, _Waitable):
    """The body of one native streaming response (treq/Agent), parsed as it arrives."""

    def __init__(self, kind: str, response: Any, callback: str = "parent.pushpy_message") -> None:
        self._init_waiters()
        self.response = response
        self.code: int = response.code
        self.headers = response.headers
        self.parser = Parser(kind, callback)
        self.reason: Failure | None = None
        response.deliverBody(self)

    @property
    def messages(self) -> list[Message]:
        return self.parser.messages

    @property
    def raw(self) -> bytes:
        return bytes(self.parser.raw)

    def header(self, name: str) -> list[str]:
        return list(self.headers.getRawHeaders(name, []))

    def dataReceived(self, data: bytes) -> None:
        self.parser.feed(data)
        self._check()

    def connectionLost(self, reason: Failure) -> None:
        self.finished = True
        self.reason = reason
        self._check()

    async def end(self, timeout: float = 2.0) -> Feed:
        """Wait until the server ends the body."""
        return await self.wait(lambda s: s.finished, timeout)

    def disconnect(self) -> None:
        """Walk away: close the connection mid-stream."""
        if not self.finished and self.transport is not None:
            self.transport.stopProducing()


class RawFeed(Protocol, _Waitable):
    """A native stream read over a raw HTTP/1.0 connection whose reading can be paused.

    HTTP/1.0 keeps the body unchunked; :meth:`pause` stops reading from the
    socket, so the server's writes pile up as for a slow consumer.
    """

    def __init__(self, kind: str, request: bytes) -> None:
        self._init_waiters()
        self.request = request
        self.parser = Parser(kind)
        self.head = b""
        self._head_done = False
        self.opened: Deferred = Deferred()

    @property
    def messages(self) -> list[Message]:
        return self.parser.messages

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if not self._head_done:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            self.head, _, data = self.head.partition(b"\r\n\r\n")
            self._head_done = True
        self.parser.feed(data)
        self._check()

    def connectionLost(self, reason: Failure) -> None:
        self.finished = True
        self._check()

    def pause(self) -> None:
        """Stop reading from the socket (the server's writes pile up)."""
        self.transport.pauseProducing()

    def resume(self) -> None:
        self.transport.resumeProducing()

    def disconnect(self) -> None:
        if not self.finished:
            self.transport.abortConnection()


# -- WebSocket ----------------------------------------------------------------

class WSClient(WebSocketClientProtocol, _Waitable):
    """An autobahn WebSocket client recording every text frame and the messages in them."""

    def __init__(self) -> None:
        super().__init__()
        self._init_waiters()
        self.frames: list[str] = []
        self.messages: list[Message] = []
        self.heartbeats = 0
        self.close_code: int | None = None

    def onOpen(self) -> None:
        opened = self.factory.opened
        if not opened.called:
            opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        text = payload.decode("utf-8")
        self.frames.append(text)
        value = json.loads(text)
        for message in value if isinstance(value, list) else [value]:
            if message.get("type") == "hb":
                self.heartbeats += 1
            else:
                self.messages.append(message)
        self._check()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.finished = True
        self.close_code = code
        opened = self.factory.opened
        if not opened.called:
            opened.errback(ConnectionError(f"WebSocket closed before open: {code} {reason}"))
        self._check()

    def send(self, message: Message | list[Message]) -> None:
        """Send one JSON text frame."""
        self.sendMessage(json.dumps(message).encode("utf-8"), isBinary=False)

    def send_raw(self, payload: bytes) -> None:
        self.sendMessage(payload, isBinary=False)

    def disconnect(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if not self.finished and self.transport is not None:
            self.transport.abortConnection()


class _WSFactory(WebSocketClientFactory):
    protocol = WSClient

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.opened: Deferred = Deferred()

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.opened.called:
            self.opened.errback(reason)


# -- the server ---------------------------------------------------------------

class NativeHarness:
    """One running server and clients bound to it."""

    def __init__(self, config: Config) -> None:
        self.push = PushServer(config, reactor=reactor)
        self.push.startService()
        self.site = build_site(self.push)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.client = treq.client.HTTPClient(self.agent)
        self.host_port = self.port.getHost().port
        self.origin = f"http://127.0.0.1:{self.host_port}"
        self._clients: list[Any] = []
        #: Session keys told in long-poll answers (streams' ``open`` messages are read by :meth:`key_of`).
        self._keys: dict[str, str] = {}

    @property
    def sessions(self) -> dict[str, Any]:
        return self.push.dispatcher.sessions

    @property
    def epoch(self) -> str:
        return self.push.backplane.epoch

    def key_of(self, session: str) -> str | None:
        """The ``session_key`` the server told this harness's clients for ``session`` (its creator)."""
        if session in self._keys:
            return self._keys[session]
        for client in self._clients:
            for message in getattr(client, "messages", ()):
                if message.get("type") == "open" and message.get("session") == session \
                        and message.get("session_key"):
                    self._keys[session] = message["session_key"]
                    return message["session_key"]
        return None

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        """The URL of ``path``; a ``session`` goes with its key unless ``session_key`` is given (or None)."""
        params = dict(params or {})
        if params.get("session") and "session_key" not in params:
            params["session_key"] = self.key_of(params["session"])
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.origin}/pushlet/{path}" + (f"?{query}" if query else "")

    def publish(self, subject: str, text: str, **fields: str) -> str:
        """Publish ``text`` on ``subject`` from the server; the event's id."""
        return self.push.publish(subject, {"text": text, **fields}).position

    async def stream(self, kind: str, *, headers: dict[str, str] | None = None,
                     callback: str | None = None, **params: str) -> Feed:
        """Open ``GET /pushlet/<kind>`` (``sse``, ``xhr``, ``iframe``) and read it incrementally."""
        if callback is not None:
            params["callback"] = callback
        raw_headers = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
        response = await self.agent.request(b"GET", self.url(kind, params).encode(), raw_headers)
        feed = Feed(kind, response, callback or "parent.pushpy_message")
        self._clients.append(feed)
        return feed

    async def opened(self, kind: str, **kwargs: Any) -> Feed:
        """:meth:`stream`, after its ``open`` message arrived."""
        feed = await self.stream(kind, **kwargs)
        assert feed.code == 200, (feed.code, feed.raw)
        await feed.until(1, "open")
        return feed

    async def raw_stream(self, kind: str, **params: str) -> RawFeed:
        """Open a native stream over a raw HTTP/1.0 connection (pausable reading)."""
        path = self.url(kind, params)[len(self.origin):]
        request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
        feed = RawFeed(kind, request)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.host_port, timeout=5)
        await connectProtocol(endpoint, feed)
        self._clients.append(feed)
        await feed.until(1, "open")
        return feed

    async def get_json(self, path: str, timeout: float = 5.0, **params: str) -> tuple[int, Any]:
        """``GET /pushlet/<path>``: the status and the decoded JSON (or text) body."""
        response = await self.client.get(self.url(path, params), timeout=timeout)
        body = await treq.content(response)
        try:
            answer = json.loads(body)
        except ValueError:
            return response.code, body.decode("utf-8", "replace")
        if isinstance(answer, dict) and answer.get("session_key") and answer.get("session"):
            self._keys[answer["session"]] = answer["session_key"]
        return response.code, answer

    async def send(self, session: str | None, body: Any, *, raw: bool = False,
                   **params: str) -> tuple[int, Any]:
        """``POST /pushlet/send?session=ID`` with ``body`` (JSON-encoded unless ``raw``)."""
        data = body if raw else json.dumps(body).encode("utf-8")
        response = await self.client.post(self.url("send", {"session": session, **params}), data=data,
                                          headers={"Content-Type": ["application/json"]},
                                          timeout=5)
        content = await treq.content(response)
        try:
            return response.code, json.loads(content)
        except ValueError:
            return response.code, content.decode("utf-8", "replace")

    async def pushlet(self, **params: str) -> bytes:
        """A Pushlet-protocol ``GET pushlet.srv`` request; the body."""
        response = await self.client.get(self.url("pushlet.srv", params), timeout=5)
        body = await treq.content(response)
        assert response.code == 200, (response.code, body)
        return body

    async def pushlet_stream(self, **params: str) -> Feed:
        """A Pushlet-protocol stream (``p_format=xml``) read incrementally; parse with :func:`xml_events`."""
        response = await self.agent.request(b"GET", self.url("pushlet.srv", params).encode())
        feed = Feed("raw", response)
        self._clients.append(feed)
        return feed

    async def ws_raw(self, **params: str) -> WSClient:
        """A WebSocket connection to ``/pushlet/ws`` once the handshake is done."""
        url = self.url("ws", params).replace("http://", "ws://", 1)
        factory = _WSFactory(url)
        connectWS(factory)
        client: WSClient = await factory.opened
        self._clients.append(client)
        return client

    async def ws(self, **params: str) -> WSClient:
        """:meth:`ws_raw`, after the ``open`` message arrived."""
        client = await self.ws_raw(**params)
        await client.until(1, "open")
        return client

    async def close(self) -> None:
        for client in self._clients:
            client.disconnect()
        await self.port.stopListening()
        if self.push.running:
            await maybeDeferred(self.push.stopService)
        await self.pool.closeCachedConnections()
        await sleep(0)


_XML_EVENT = re.compile(r"<event ((?:[\w.-]+=\"(?:[^\"\\]|\\.)*\" )*)/>")
_XML_ATTR = re.compile(r"([\w.-]+)=\"((?:[^\"\\]|\\.)*)\" ")


def xml_events(body: bytes) -> list[dict[str, str]]:
    """The events of a Pushlet ``xml`` body (Java client escaping: backslash before a quote)."""
    out = []
    for match in _XML_EVENT.finditer(body.decode("utf-8")):
        out.append({k: re.sub(r"\\(.)", r"\1", v) for k, v in _XML_ATTR.findall(match.group(1))})
    return out
