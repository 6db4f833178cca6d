# test-case-name: tests.client.test_client
"""The connections of the Python client: WebSocket, SSE, long-poll and plain TCP.

Each connection carries pushpy's own messages (``docs/protocol.md``) for one
:class:`~pushpy.client.client.Client`.  It reports to the client through
three calls: ``client._text(conn, text)`` (a JSON text of one message or an
array of them), ``client._answer(conn, answer)`` (a long-poll answer) and
``client._lost(conn, reason)`` (the connection failed or ended).  Client
messages go as frames or lines where the transport has them (WebSocket,
TCP); the HTTP transports post them to ``<root>send`` one request at a time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from pushpy.client.client import Client

Message = dict[str, Any]

#: Transports a client can be asked for; ``tcp`` is chosen by a ``tcp://`` URL.
TRANSPORTS = ("websocket", "sse", "longpoll", "tcp")
#: The longest line or frame the client accepts.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def query(params: dict[str, str | None]) -> str:
    """A URL query of the parameters that are set."""
    return urlencode({k: v for k, v in params.items() if v})


def client_endpoint(reactor: Any, url: str) -> Any:
    """A client endpoint for the host and port of ``url`` (TLS for ``https``/``wss``)."""
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    endpoint = HostnameEndpoint(reactor, host, port, timeout=10)
    if secure:
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    return endpoint


class Connection:
    """One attempt to connect, and the connection it becomes."""

    name = ""
    #: Whether the server streams (a quiet connection past the heartbeat is dead).
    streaming = True

    def __init__(self, client: Client) -> None:
        self.client = client
        self.opened = False
        self.ended = False
        #: The subjects carried by the connect request (a comma list).
        self.subjects = ""
        #: The last event id the connect request carried.
        self.resume_from: str | None = None
        self.heartbeat = 0.0
        self.timers: list[Any] = []

    def connect_params(self) -> dict[str, str | None]:
        """``subject``, ``session`` and ``last_event_id`` of this connect (remembered here)."""
        client = self.client
        self.subjects = ",".join(client.subjects)
        self.resume_from = client.last_event_id
        return {"subject": self.subjects, "session": client.session,
                "session_key": client.session_key if client.session else None,
                "last_event_id": client.last_event_id}

    def start(self) -> None:
        raise NotImplementedError

    def send(self, messages: list[Message]) -> None:
        """Send client messages (frames or lines); HTTP transports post them instead."""
        raise NotImplementedError

    @property
    def sends_frames(self) -> bool:
        return False

    def abort(self) -> None:
        """Stop at once, quietly."""


# -- WebSocket ----------------------------------------------------------------

class _WebSocketProtocol(WebSocketClientProtocol):
    conn: WebSocketConnection

    def onOpen(self) -> None:
        self.conn.protocol = self
        if self.conn.ended:
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.conn.client._text(self.conn, payload.decode("utf-8", "replace"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.conn.protocol = None
        self.conn.client._lost(self.conn, f"websocket closed ({code} {reason or ''})".rstrip())


class _WebSocketFactory(WebSocketClientFactory):
    protocol = _WebSocketProtocol
    conn: WebSocketConnection

    def buildProtocol(self, addr: Any) -> _WebSocketProtocol:
        protocol = super().buildProtocol(addr)
        protocol.conn = self.conn
        return protocol


class WebSocketConnection(Connection):
    """``<root>ws``: one JSON message (or an array) per text frame, both ways."""

    name = "websocket"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.protocol: _WebSocketProtocol | None = None
        self._connecting: Deferred | None = None

    @property
    def sends_frames(self) -> bool:
        return True

    def start(self) -> None:
        client = self.client
        parts = urlsplit(client.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = f"{scheme}://{parts.netloc}{parts.path}ws"
        params = query(self.connect_params())
        if params:
            url += "?" + params
        factory = _WebSocketFactory(url, reactor=client.reactor)
        factory.conn = self
        factory.setProtocolOptions(maxMessagePayloadSize=MAX_MESSAGE_BYTES,
                                   maxFramePayloadSize=MAX_MESSAGE_BYTES,
                                   closeHandshakeTimeout=2)
        self._connecting = client_endpoint(client.reactor, url).connect(factory)
        self._connecting.addErrback(self._failed)

    def _failed(self, reason: Failure) -> None:
        self.client._lost(self, f"cannot connect: {reason.getErrorMessage()}")

    def send(self, messages: list[Message]) -> None:
        if self.protocol is None:
            raise ConnectionError("not connected")
        for message in messages:
            self.protocol.sendMessage(json.dumps(message).encode("utf-8"), isBinary=False)

    def abort(self) -> None:
        if self.protocol is not None:
            self.protocol.dropConnection(abort=True)
        elif self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()


# -- TCP ----------------------------------------------------------------------

class _LineProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_MESSAGE_BYTES

    def __init__(self, conn: TCPConnection) -> None:
        self.conn = conn

    def connectionMade(self) -> None:
        self.conn.protocol = self
        hello = {"type": "connect", **{k: v for k, v in self.conn.connect_params().items() if v}}
        self.sendLine(json.dumps(hello).encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        if line.strip():
            self.conn.client._text(self.conn, line.decode("utf-8", "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.conn.client._lost(self.conn, "line too long")
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.conn.protocol = None
        self.conn.client._lost(self.conn, "connection closed")


class TCPConnection(Connection):
    """``tcp://host:port``: newline-delimited JSON, a ``connect`` message first."""

    name = "tcp"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.protocol: _LineProtocol | None = None
        self._connecting: Deferred | None = None

    @property
    def sends_frames(self) -> bool:
        return True

    def start(self) -> None:
        from twisted.internet.endpoints import HostnameEndpoint

        parts = urlsplit(self.client.url)
        endpoint = HostnameEndpoint(self.client.reactor, parts.hostname or "127.0.0.1",
                                    parts.port or 8081, timeout=10)
        self._connecting = endpoint.connect(Factory.forProtocol(lambda: _LineProtocol(self)))
        self._connecting.addErrback(
            lambda reason: self.client._lost(self, f"cannot connect: {reason.getErrorMessage()}"))

    def send(self, messages: list[Message]) -> None:
        if self.protocol is None:
            raise ConnectionError("not connected")
        self.protocol.transport.writeSequence(
            [json.dumps(message).encode("utf-8") + b"\n" for message in messages])

    def abort(self) -> None:
        if self.protocol is not None:
            self.protocol.transport.abortConnection()
        elif self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()


# -- HTTP: SSE and long-poll ----------------------------------------------------

class _SSEBody(Protocol):
    """The body of an SSE response: ``data:`` lines of each block are one message."""

    def __init__(self, conn: SSEConnection) -> None:
        self.conn = conn
        self._rest = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = (self._rest + data).replace(b"\r\n", b"\n")
        *blocks, self._rest = buffer.split(b"\n\n")
        if len(self._rest) > MAX_MESSAGE_BYTES:
            self.conn.client._lost(self.conn, "message too long")
            self.transport.stopProducing()
            return
        for block in blocks:
            data_lines = [line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:]
                          for line in block.split(b"\n") if line.startswith(b"data:")]
            if data_lines:
                self.conn.client._text(self.conn, b"\n".join(data_lines).decode("utf-8", "replace"))
            if self.conn.ended:
                return

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.conn.body = None
        self.conn.client._lost(self.conn, "stream ended")


class _HTTPConnection(Connection):
    """Shared by SSE and long-poll: client messages through ``POST <root>send``."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._requests: list[Deferred] = []

    def _get(self, url: str, **kwargs: Any) -> Deferred:
        d = self.client.http.get(url, **kwargs)
        self._requests.append(d)
        d.addBoth(self._forget, d)
        return d

    def _forget(self, result: Any, d: Deferred) -> Any:
        if d in self._requests:
            self._requests.remove(d)
        return result

    def send(self, messages: list[Message]) -> None:
        self.client._post(messages)

    def abort(self) -> None:
        for d in list(self._requests):
            if not d.called:
                d.cancel()


class SSEConnection(_HTTPConnection):
    """``<root>sse``: Server-Sent Events."""

    name = "sse"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.body: _SSEBody | None = None

    def start(self) -> None:
        params = self.connect_params()
        url = self.client.url + "sse" + ("?" + query(params) if query(params) else "")
        d = self._get(url, headers={"Accept": ["text/event-stream"]}, unbuffered=True)
        d.addCallbacks(self._response, self._failed)

    def _response(self, response: Any) -> None:
        if response.code != 200:
            self.client._lost(self, f"HTTP status {response.code}")
            response.deliverBody(Protocol())
            return
        if self.ended:
            response.deliverBody(Protocol())
            return
        self.body = _SSEBody(self)
        response.deliverBody(self.body)

    def _failed(self, reason: Failure) -> None:
        self.client._lost(self, f"request failed: {reason.getErrorMessage()}")

    def abort(self) -> None:
        super().abort()
        body = self.body
        if body is not None and body.transport is not None:
            self.body = None
            body.transport.stopProducing()


class LongPollConnection(_HTTPConnection):
    """``<root>poll`` once (it answers at once), then ``<root>longpoll`` in a loop."""

    name = "longpoll"
    streaming = False

    def start(self) -> None:
        self._request(first=True)

    def _request(self, first: bool = False) -> None:
        if self.ended:
            return
        client = self.client
        params = self.connect_params() if first else {
            "subject": self.subjects, "session": client.session, "session_key": client.session_key,
            "last_event_id": client.last_event_id}
        url = client.url + ("poll" if first else "longpoll") + "?" + query(params)
        d = self._get(url, timeout=client.request_timeout)
        d.addCallback(self._response)
        d.addCallbacks(self._answer, self._failed)

    def _response(self, response: Any) -> Deferred:
        if response.code != 200:
            response.deliverBody(Protocol())
            raise ConnectionError(f"HTTP status {response.code}")
        return response.json()

    def _answer(self, answer: Any) -> None:
        if self.ended:
            return
        self.client._answer(self, answer)
        if not self.ended:
            self._request()

    def _failed(self, reason: Failure) -> None:
        self.client._lost(self, f"request failed: {reason.getErrorMessage()}")


CONNECTIONS: dict[str, type[Connection]] = {
    "websocket": WebSocketConnection,
    "sse": SSEConnection,
    "longpoll": LongPollConnection,
    "tcp": TCPConnection,
}
