"""Engine.IO v4 over Twisted: HTTP long-polling, WebSocket, the upgrade, pings.

An :class:`EngineSession` is one Engine.IO connection.  It starts on
long-polling (``GET`` holds until packets are due, ``POST`` carries the
client's packets) or directly on a WebSocket, and may upgrade: the client
opens a WebSocket with the session id, probes it (``2probe``/``3probe``),
the pending poll is answered with a ``noop``, and the client's ``5``
switches the session over.  The server pings every ``socketio.ping.interval.millis``
and closes a session whose pong does not come within ``socketio.ping.timeout.millis``
(one scheduler deadline per session).  What runs on top (Socket.IO) gets
``on_message(data)`` and ``on_close(reason)`` calls.

Writes are back-pressured: the layer above takes events from its session
queue only while :attr:`EngineSession.writable` (a poll is waiting, or the
WebSocket is not paused), and is woken when that changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from pushpy.web.http import client_address, no_cache, write_now
from pushpy.wire import engineio as E
from pushpy.wire.params import parse_query

if TYPE_CHECKING:
    from pushpy.server import PushServer

log = Logger()
#: Seconds a WebSocket probing an upgrade may take to send ``5`` (Socket.IO's ``upgradeTimeout``).
UPGRADE_TIMEOUT = 10.0
#: Seconds a closed polling session keeps its close packet for the client's next poll (which
#: normally follows the last answer at once; the listening port may be closed by then, but a
#: keep-alive connection still gets it).
FAREWELL_GRACE = 1.0
#: The ``close`` reason of a shutdown, and the WebSocket close code then sent (going away).
SHUTTING_DOWN = "server shutting down"
GOING_AWAY = 1001
#: The WebSocket close code of a message over ``socketio.max.http.buffer.size``.
TOO_BIG = 1009
TEXT_TYPE = b"text/plain; charset=UTF-8"
JSON_TYPE = b"application/json"


class Handler(Protocol):
    """The layer above one Engine.IO session (Socket.IO)."""

    def on_message(self, data: str | bytes) -> None: ...

    def on_writable(self) -> None: ...

    def on_alive(self) -> None: ...

    def on_close(self, reason: str) -> None: ...


def ws_frame(payload: bytes, binary: bool = False) -> bytes:
    """An unmasked (server to client) WebSocket frame: the same bytes for every client."""
    size = len(payload)
    head = bytes([0x82 if binary else 0x81])
    if size < 126:
        head += bytes([size])
    elif size < 65536:
        head += bytes([126]) + size.to_bytes(2, "big")
    else:
        head += bytes([127]) + size.to_bytes(8, "big")
    return head + payload


def frames(packets: list[str | bytes]) -> bytes:
    """Engine.IO packets as WebSocket frames."""
    return b"".join(ws_frame(p, True) if isinstance(p, bytes) else ws_frame(p.encode("utf-8"))
                    for p in packets)


@implementer(IPushProducer)
class EngineSession:
    """One Engine.IO connection and its current transport."""

    __slots__ = ("address", "awaiting_pong", "buffer", "closed", "deadline", "engine", "handler",
                 "paused", "poll", "probe", "queued_deadline", "request_info", "sid", "upgraded",
                 "ws")

    def __init__(self, engine: EngineServer, sid: str, request_info: dict[str, Any]) -> None:
        self.engine = engine
        self.sid = sid
        self.request_info = request_info
        self.address: str = request_info.get("address", "")
        self.buffer: list[str | bytes] = []
        self.poll: Request | None = None
        self.ws: EngineWebSocket | None = None
        self.probe: EngineWebSocket | None = None
        self.upgraded = False
        self.paused = False
        self.closed = False
        self.awaiting_pong = False
        self.handler: Handler | None = None
        self.deadline: float | None = None
        self.queued_deadline: float | None = None

    # -- sending -------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether packets sent now leave at once (the layer above may take more events)."""
        if self.closed:
            return False
        if self.ws is not None:
            return not self.paused
        return self.poll is not None and self.probe is None

    def send(self, packets: list[str | bytes], framed: bytes | None = None) -> None:
        """Send Engine.IO packets (``framed``: the same as WebSocket frames, if already made)."""
        if self.closed:
            return
        if self.ws is not None:
            self.ws.write_raw(framed if framed is not None else frames(packets))
            return
        self.buffer.extend(packets)
        if self.poll is not None:
            self.engine.server.scheduler.soon(self)

    def flush(self) -> None:
        """Answer the waiting poll with what is buffered (scheduler callback)."""
        if self.poll is not None and self.buffer and not self.closed:
            self._answer_poll(self.buffer)
            self.buffer = []

    def _answer_poll(self, packets: list[str | bytes]) -> None:
        request, self.poll = self.poll, None
        if request is None:
            return
        body = E.encode_payload(packets).encode("utf-8")
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        request.write(body)
        request.finish()

    # -- receiving -----------------------------------------------------------

    def receive(self, kind: str, data: str | bytes | None, via: EngineWebSocket | None) -> None:
        """One packet from the client (``via``: the WebSocket it came on, if any)."""
        if self.closed:
            return
        if via is not None and via is self.probe:
            self._probe_packet(kind, data)
            return
        if kind == E.MESSAGE:
            if self.handler is not None and data is not None:
                self.handler.on_message(data)
        elif kind == E.PONG:
            self.awaiting_pong = False
            self._arm(self.engine.ping_interval)
            if self.handler is not None:
                self.handler.on_alive()
        elif kind == E.CLOSE:
            self.close("transport close")
        elif kind in (E.NOOP, E.PING):
            pass
        else:
            self.close("parse error")

    def _probe_packet(self, kind: str, data: str | bytes | None) -> None:
        probe = self.probe
        assert probe is not None
        if kind == E.PING and data == "probe":
            probe.write_raw(ws_frame(b"3probe"))
            if self.poll is not None:
                self._answer_poll([*self.buffer, E.NOOP])
                self.buffer = []
        elif kind == E.UPGRADE:
            self.probe = None
            if probe.upgrade_timer is not None and probe.upgrade_timer.active():
                probe.upgrade_timer.cancel()
            probe.upgrade_timer = None
            if self.poll is not None:
                self._answer_poll([E.NOOP])
            self.ws = probe
            self.upgraded = True
            probe.take_producer(self)
            buffered, self.buffer = self.buffer, []
            if buffered:
                probe.write_raw(frames(buffered))
            if self.handler is not None:
                self.handler.on_writable()
        else:
            self.probe = None
            probe.dropConnection(abort=True)

    # -- polling -------------------------------------------------------------

    def hold(self, request: Request) -> int | bytes:
        """A ``GET`` of the polling transport: answer now, or when packets are due."""
        if self.poll is not None:
            self.close("transport error")  # overlapping polls: the client is confused
            return error_answer(request, E.BAD_REQUEST)
        request.responseHeaders.setRawHeaders(b"Content-Type", [TEXT_TYPE])
        no_cache(request)
        self.poll = request
        request.notifyFinish().addErrback(self._poll_lost, request)
        if self.buffer or self.probe is not None:
            packets = self.buffer or [E.NOOP]
            self.buffer = []
            self._answer_poll(packets)
        elif self.handler is not None:
            self.handler.on_writable()
        return NOT_DONE_YET

    def _poll_lost(self, reason: Failure, request: Request) -> None:
        if self.poll is request:
            self.poll = None
            if self.probe is None:
                self.close("transport error")

    # -- producer (WebSocket back-pressure) ---------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.handler is not None and not self.closed:
            self.handler.on_writable()

    def stopProducing(self) -> None:
        self.paused = True

    # -- pings and closing ---------------------------------------------------

    def _arm(self, seconds: float) -> None:
        scheduler = self.engine.server.scheduler
        scheduler.set(self, scheduler.clock.seconds() + seconds)

    def fire(self, now: float) -> None:
        """The ping timer: send a ping, or close when the last one got no pong."""
        if self.closed:
            return
        if self.awaiting_pong:
            self.close("ping timeout")
            return
        self.awaiting_pong = True
        self.send([E.PING], ws_frame(b"2") if self.ws is not None else None)
        self._arm(self.engine.ping_timeout)

    def close(self, reason: str, *, notify_client: bool = False) -> None:
        """End the session: forget it, end its transports, tell the layer above."""
        if self.closed:
            return
        if notify_client:
            self.send([E.CLOSE], ws_frame(b"1") if self.ws is not None else None)
            self.flush()
        self.closed = True
        self.engine.sessions.pop(self.sid, None)
        self.engine.server.scheduler.set(self, None)
        poll, self.poll = self.poll, None
        if notify_client and poll is None and self.ws is None and self.buffer:
            # No poll waits: the client's next one gets the close packet (Engine.IO's shouldClose).
            self.engine.farewell(self.sid, self.buffer)
        if poll is not None and not poll.finished:
            packets = [*self.buffer, E.CLOSE] if reason != "transport error" else [E.CLOSE]
            body = E.encode_payload(packets).encode("utf-8")
            poll.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
            poll.write(body)
            poll.finish()
        self.buffer = []
        for ws in (self.ws, self.probe):
            if ws is not None:
                ws.session = None
                ws.release_producer(self)
                if reason == SHUTTING_DOWN:
                    ws.sendCloseFrame(code=GOING_AWAY, reasonUtf8=reason.encode(), isReply=False)
                else:
                    ws.sendClose()
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.on_close(reason)


def error_answer(request: Request, error: dict[str, Any], status: int = 400) -> bytes:
    """Make ``request`` one of Engine.IO's error answers; its body."""
    request.setResponseCode(status)
    request.pushpy_error = error["message"]
    body = E.error_body(error)
    request.responseHeaders.setRawHeaders(b"Content-Type", [JSON_TYPE])
    request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
    return body


class EngineServer:
    """The Engine.IO sessions of one server and their settings."""

    def __init__(self, server: PushServer, on_open: Callable[[EngineSession], Handler]) -> None:
        config = server.config
        self.server = server
        self.on_open = on_open
        self.sessions: dict[str, EngineSession] = {}
        self.ping_interval = config.socketio_ping_interval_millis / 1000.0
        self.ping_timeout = config.socketio_ping_timeout_millis / 1000.0
        self.max_payload = config.socketio_max_http_buffer_size
        self.transports = tuple(t for t in config.socketio_transports if t in ("polling", "websocket"))
        #: Closed polling sessions whose close packet waits for their next poll.
        self.farewells: dict[str, Farewell] = {}
        #: Relays polls of other nodes' sessions (Redis backplane only: :mod:`pushpy.web.eiorelay`).
        self.relay: Any = None
        if getattr(server.backplane, "direct_handlers", None) is not None:
            from pushpy.web.eiorelay import EngineRelay

            self.relay = EngineRelay(self, server.backplane)

    def open(self, request_info: dict[str, Any], ws: EngineWebSocket | None) -> EngineSession | None:
        """A new session (on ``ws``, or on polling); ``None`` when there are too many."""
        if len(self.sessions) >= self.server.config.sessionmanager_maxsessions:
            return None
        sid = secrets.token_urlsafe(15) + (self.relay.suffix if self.relay is not None else "")
        session = self.sessions[sid] = EngineSession(self, sid, request_info)
        upgrades = ["websocket"] if ws is None and "websocket" in self.transports else []
        handshake = E.open_packet(sid, upgrades, int(self.ping_interval * 1000),
                                  int(self.ping_timeout * 1000), self.max_payload)
        session.buffer.append(handshake)
        if ws is not None:
            session.ws = ws
            ws.session = session
            ws.take_producer(session)
            ws.write_raw(ws_frame(handshake.encode("utf-8")))
            session.buffer = []
        session._arm(self.ping_interval)
        session.handler = self.on_open(session)
        return session

    def farewell(self, sid: str, packets: list[str | bytes]) -> None:
        """Keep ``packets`` (ending with the close packet) for the next poll of a closed session."""
        farewell = self.farewells[sid] = Farewell(self, sid, packets)
        farewell.expiry = self.server.clock.callLater(min(self.ping_timeout, FAREWELL_GRACE),
                                                      farewell.abortConnection)

    def open_transports(self) -> dict[Any, bool]:
        """The connections of every session, ``{transport: is_http}`` (see :mod:`pushpy.shutdown`)."""
        found: dict[Any, bool] = {}
        for session in self.sessions.values():
            poll = session.poll
            transport = getattr(getattr(poll, "channel", None), "transport", None)
            if transport is not None:
                found[transport] = True
            for ws in (session.ws, session.probe):
                if ws is not None and ws.transport is not None:
                    found[ws.transport] = False
        return found

    def shutdown(self) -> dict[Any, bool]:
        """Close every session, telling its client; what still has to reach a client, to drain."""
        for session in list(self.sessions.values()):
            session.close(SHUTTING_DOWN, notify_client=True)
        return {farewell: False for farewell in self.farewells.values()}


class Farewell:
    """The close packet of a polling session that had no poll waiting when it closed.

    The client's next ``GET`` takes it; until then, shutdown counts it as an
    open connection (``disconnected``); it is dropped after :data:`FAREWELL_GRACE`.
    """

    def __init__(self, engine: EngineServer, sid: str, packets: list[str | bytes]) -> None:
        self.engine = engine
        self.sid = sid
        self.packets = packets
        self.disconnected = False
        self.expiry: Any = None

    def answer(self, request: Request) -> bytes:
        """The close packet, as the answer of the session's next poll."""
        self.abortConnection()
        body = E.encode_payload(self.packets).encode("utf-8")
        request.responseHeaders.setRawHeaders(b"Content-Type", [TEXT_TYPE])
        no_cache(request)
        return body

    def loseConnection(self) -> None:
        pass  # it goes once the client polled

    def abortConnection(self) -> None:
        self.disconnected = True
        self.engine.farewells.pop(self.sid, None)
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()


def request_info(request: Request, params: dict[str, str], transport: str) -> dict[str, Any]:
    """What the layer above may want to know about the handshake request."""
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers.setdefault(name.decode("latin-1").lower(), values[0].decode("latin-1"))
    return {"params": params, "headers": headers, "address": client_address(request),
            "query": request.uri.partition(b"?")[2].decode("latin-1"), "transport": transport}


class EngineResource(Resource):
    """``.../socket.io/``: both transports of Engine.IO v4."""

    isLeaf = True

    def __init__(self, engine: EngineServer) -> None:
        super().__init__()
        self.engine = engine
        factory = WebSocketServerFactory()
        factory.protocol = EngineWebSocket
        factory.engine = engine
        size = engine.max_payload
        factory.setProtocolOptions(maxMessagePayloadSize=size, maxFramePayloadSize=size)
        self.websocket = WebSocketResource(factory)
        if engine.relay is not None:
            engine.relay.resource = self

    def render(self, request: Request) -> bytes | int:
        engine = self.engine
        config = engine.server.config
        try:
            params = parse_query(request.uri.partition(b"?")[2], limit=config.limit_params)
        except Exception:
            return error_answer(request, E.BAD_REQUEST)
        if params.get("EIO") != "4":
            return error_answer(request, E.UNSUPPORTED_VERSION)
        transport = params.get("transport")
        if transport not in engine.transports:
            return error_answer(request, E.UNKNOWN_TRANSPORT)
        sid = params.get("sid")
        session = engine.sessions.get(sid) if sid else None
        if sid and session is None and request.method == b"GET" and sid in engine.farewells:
            return engine.farewells[sid].answer(request)
        if sid and session is None:
            relay = engine.relay
            owner = relay.owner_of(sid) if relay is not None else None
            if owner is not None and transport == "polling" and request.method in (b"GET", b"POST"):
                return relay.forward(request, owner, sid, engine.max_payload)
            return error_answer(request, E.UNKNOWN_SID)
        if transport == "websocket":
            upgrade = (request.getHeader(b"upgrade") or b"").lower()
            if request.method != b"GET" or upgrade != b"websocket":
                return error_answer(request, E.BAD_REQUEST)
            if session is not None and (session.upgraded or session.probe is not None):
                return error_answer(request, E.BAD_REQUEST)
            request.engine_params = params  # read by EngineWebSocket.onConnect
            request.engine_info = request_info(request, params, "websocket")
            return self.websocket.render(request)
        if session is None:
            if request.method != b"GET":
                return error_answer(request, E.BAD_HANDSHAKE_METHOD)
            session = engine.open(request_info(request, params, "polling"), None)
            if session is None:
                return error_answer(request, {"code": 3, "message": "Too many sessions"}, 503)
            return session.hold(request)
        if session.upgraded:
            return error_answer(request, E.BAD_REQUEST)
        if request.method == b"GET":
            return session.hold(request)
        if request.method == b"POST":
            return self._post(request, session)
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            return b""
        return error_answer(request, E.BAD_REQUEST)

    def _post(self, request: Request, session: EngineSession) -> bytes:
        content = request.content
        content.seek(0, 2)
        if content.tell() > self.engine.max_payload or getattr(request, "oversized", False):
            session.close("transport error")
            request.setResponseCode(413)
            return b""
        content.seek(0)
        try:
            packets = E.decode_payload(content.read().decode("utf-8"))
        except (UnicodeDecodeError, E.PacketError):
            session.close("parse error")
            return error_answer(request, E.BAD_REQUEST)
        for kind, data in packets:
            session.receive(kind, data, None)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/html"])
        return b"ok"


class EngineWebSocket(WebSocketServerProtocol):
    """The WebSocket transport of one Engine.IO session (new, or probing an upgrade)."""

    session: EngineSession | None = None
    info: dict[str, Any]
    wanted: str | None = None
    upgrade_timer: Any = None
    #: Whether incoming bytes are dropped unread (after a message over the limit).
    discarding = False

    def onConnect(self, request: Any) -> None:
        params = {k: v[0] for k, v in request.params.items() if v}
        self.wanted = params.get("sid")
        self.info = {"params": params, "headers": dict(request.headers),
                     "address": getattr(self.transport.getPeer(), "host", ""),
                     "query": request.path, "transport": "websocket"}

    def onOpen(self) -> None:
        engine: EngineServer = self.factory.engine
        if self.wanted:
            session = engine.sessions.get(self.wanted)
            if session is None or session.upgraded or session.probe is not None:
                self.sendClose()
                return
            session.probe = self
            self.session = session
            # Socket.IO's upgradeTimeout: a probe that does not finish is dropped (rare: one timer).
            clock = engine.server.clock
            self.upgrade_timer = clock.callLater(UPGRADE_TIMEOUT, self._upgrade_timed_out)
            return
        if engine.open(self.info, self) is None:
            self.sendClose()

    def _upgrade_timed_out(self) -> None:
        self.upgrade_timer = None
        session = self.session
        if session is not None and session.probe is self:
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            return
        try:
            kind, data = E.decode_packet(payload if isBinary else payload.decode("utf-8"))
        except E.PacketError:
            if session.probe is self:
                session.probe = None
                self.session = None
                self.sendClose()
            else:
                session.close("parse error")
            return
        session.receive(kind, data, self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.upgrade_timer is not None and self.upgrade_timer.active():
            self.upgrade_timer.cancel()
        self.upgrade_timer = None
        session, self.session = self.session, None
        if session is None:
            return
        if session.probe is self:
            session.probe = None  # the upgrade failed: stay on polling
            if session.poll is not None and session.handler is not None:
                session.handler.on_writable()
            return
        if session.ws is self:
            self.release_producer(session)
            session.close("transport close")

    def _max_message_size_exceeded(self, msg_size: int, max_msg_size: int, reason: str) -> None:
        """A message over the limit: a clean close 1009, the rest of the message unread.

        Autobahn would drop the TCP connection at once, and closing a socket
        with unread bytes makes a reset that can reach the client before the
        close frame does.  Here the close frame is written, what else arrives is
        discarded, and the connection is closed once the client closes it or
        the closing handshake times out.
        """
        self.discarding = True
        self.data = b""
        self.sendCloseFrame(code=TOO_BIG, reasonUtf8=b"message too big", isReply=False)

    def _dataReceived(self, data: bytes) -> None:
        if not self.discarding:
            super()._dataReceived(data)

    def write_raw(self, data: bytes) -> None:
        """Write ready frames (sent at once when nothing is buffered)."""
        if self.state != self.STATE_OPEN:
            return
        if self.send_queue:
            self.sendData(data)
        else:
            write_now(self, data)

    def write(self, data: bytes) -> None:
        self.sendData(data)

    def take_producer(self, session: EngineSession) -> None:
        transport = self.transport
        if transport is None:
            return
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # the HTTP channel that handed the socket over
        transport.registerProducer(session, True)

    def release_producer(self, session: EngineSession) -> None:
        transport = self.transport
        if transport is not None and getattr(transport, "producer", None) is session:
            transport.unregisterProducer()


__all__ = ["EngineResource", "EngineServer", "EngineSession", "EngineWebSocket", "Farewell", "error_answer",
           "ws_frame"]
