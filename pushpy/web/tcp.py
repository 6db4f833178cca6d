# test-case-name: tests.ops.test_tcp
"""A plain TCP transport of pushpy's own protocol, for programs that do not speak HTTP.

Newline-delimited JSON (UTF-8), the messages of the WebSocket transport
(``docs/protocol.md``) one per line, both ways.  The client's first line is a
``connect`` message carrying what a WebSocket URL would carry::

    > {"type": "connect", "subject": "/a,/b", "last_event_id": "e:12", "session": "..."}
    < {"type": "open", "session": "...", "position": "e:12", "heartbeat": 20.0}
    < {"type": "event", "subject": "/a", "id": "e:13", "fields": {...}}
    > {"type": "publish", "subject": "/a", "fields": {"text": "hi"}, "ref": 1}
    < {"type": "ack", "ref": 1, "op": "publish", "id": "e:14"}

Every field of ``connect`` but ``type`` is a connect parameter (``token``
included); a first line of another type connects with none, then counts as
a message.  A client that sends nothing for one read timeout is closed.

The connection is a :class:`~pushpy.web.websocket.PushpyWebSocket` reading
and writing lines instead of frames: connecting, authorizing, handling
messages and delivering (its :class:`~pushpy.web.websocket.WebSocketChannel`)
are the WebSocket transport's own code, so sessions, limits, heartbeats and
authorization are the WebSocket's by construction.
Listen with ``twistd pushpy --tcp tcp:8081:interface=127.0.0.1``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from autobahn.websocket.types import ConnectionRequest
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from pushpy.core.events import Event
from pushpy.web.http import send_now
from pushpy.web.websocket import PushpyWebSocket, websocket_resource
from pushpy.wire.native import LineFraming, dumps

if TYPE_CHECKING:
    from pushpy.server import PushServer

_DECODER = json.JSONDecoder()
#: An event's line is the XHR streaming transport's (and shares its cache on the event).
_LINES = LineFraming()


class NativeLineProtocol(PushpyWebSocket):
    """One TCP connection speaking pushpy's protocol as JSON lines.

    A :class:`~pushpy.web.websocket.PushpyWebSocket` whose bytes are lines
    instead of WebSocket frames: only the byte level (reading lines,
    writing lines, closing) is its own; connecting, authorizing, handling
    messages and delivering are the WebSocket's.
    """

    #: The transport's name in stats and metrics.
    transport_name = "tcp"
    log = Logger()

    def __init__(self, server: PushServer, ws_factory: Any) -> None:
        super().__init__()
        #: The WebSocket transport's factory: its handlers read their settings there.
        self.factory = ws_factory
        self.push = server
        self.max_line = server.config.limit_request_bytes
        self.params = {}
        self.http_headers = {}
        self.state = self.STATE_CONNECTING
        self._buffer = b""
        self._connected_session = False
        self._idle: Any = None

    def connectionMade(self) -> None:
        timeout = self.push.config.queue_read_timeout_millis / 1000.0
        self._idle = self.push.clock.callLater(timeout, self._silent)

    def _silent(self) -> None:
        self._idle = None
        self.send_text(dumps({"type": "close", "reason": "no connect message"}))
        self.close_with(1008, "no connect message")

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if self.state == self.STATE_CLOSED or self.transport is None:
                return
            if len(line) > self.max_line:
                self._too_long()
                return
            self.line_received(line.strip())
        if len(self._buffer) > self.max_line:
            self._too_long()

    def line_received(self, line: bytes) -> None:
        """One line from the client: the ``connect`` message first, then client messages."""
        if not line:
            return
        if self._connected_session:
            self.onMessage(line, False)
            return
        self._cancel_idle()
        self._connected_session = True
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "connect":
            self._connect({k: str(v) for k, v in message.items()
                           if k != "type" and isinstance(v, str | int | float) and not isinstance(v, bool)})
        else:
            self._connect({})
            if self.state == self.STATE_OPEN:
                self.onMessage(line, False)

    def _connect(self, params: dict[str, str]) -> None:
        peer = self.transport.getPeer()
        self.http_headers = {"user-agent": str(params.pop("user_agent", "") or "pushpy-tcp")}
        request = ConnectionRequest(
            peer=f"tcp:{getattr(peer, 'host', '')}:{getattr(peer, 'port', '')}",
            headers=dict(self.http_headers), host="", path="/tcp",
            params={key: [value] for key, value in params.items()},
            version=13, origin=None, protocols=[], extensions=[])
        try:
            self.onConnect(request)
        except Exception as e:  # the handshake refused (autobahn's ConnectionDeny)
            reason = str(getattr(e, "reason", "") or e) or "refused"
            self.send_text(dumps({"type": "close", "reason": reason}))
            self.close_with(1008, reason)
            return
        self.state = self.STATE_OPEN
        self.onOpen()

    def _too_long(self) -> None:
        self._buffer = b""
        reason = f"message too large (at most {self.max_line} bytes)"
        self.send_text(dumps({"type": "close", "reason": reason}))
        self.close_with(1009, reason)

    def _cancel_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_idle()
        self.state = self.STATE_CLOSED
        self.onClose(False, 1006, None)

    # -- the byte level the WebSocket code writes through ------------------------

    def send_text(self, text: str) -> None:
        """Write ``text`` (one message, or an array of messages) as one line per message."""
        if self.transport is None or self.state == self.STATE_CLOSED:
            return
        if text[:1] == "[":
            self.transport.write("".join(m + "\n" for m in _split_array(text)).encode("utf-8"))
        else:
            self.transport.write(text.encode("utf-8") + b"\n")

    def send_events(self, events: list[Event]) -> None:
        """Write each event's line (built once per event)."""
        if self.transport is None or self.state == self.STATE_CLOSED:
            return
        line = _LINES.event
        data = line(events[0]) if len(events) == 1 else b"".join([line(event) for event in events])
        if not send_now(self.transport, data):
            self.transport.write(data)

    def send_heartbeat(self) -> None:
        self.send_text('{"type":"hb"}')

    def close_with(self, code: int, reason: str) -> None:
        """Close once the lines written so far are sent (a ``close`` message is one of them)."""
        if self.transport is not None and self.state != self.STATE_CLOSED:
            self.state = self.STATE_CLOSING
            self.transport.loseConnection()


def _split_array(text: str) -> list[str]:
    """The texts of the elements of a JSON array, as they are written (no re-encoding)."""
    out = []
    i = 1
    end = len(text) - 1
    while i < end:
        while text[i] in " ,\n\t\r":
            i += 1
        if i >= end:
            break
        _, stop = _DECODER.raw_decode(text, i)
        out.append(text[i:stop])
        i = stop
    return out


class NativeLineFactory(Factory):
    """Builds :class:`NativeLineProtocol` connections for one server."""

    def __init__(self, server: PushServer) -> None:
        self.push = server
        self.ws_factory = websocket_resource(server)._factory

    def buildProtocol(self, addr: Any) -> NativeLineProtocol:
        return NativeLineProtocol(self.push, self.ws_factory)


def tcp_factory(server: PushServer) -> NativeLineFactory:
    """The factory to listen with (``strports.service(description, tcp_factory(server))``)."""
    return NativeLineFactory(server)
