"""WebSocket transport of pushpy's own protocol, on autobahn.

One text frame carries one JSON message, or a JSON array of the messages
flushed in one reactor turn.  The client sends ``subscribe`` (with an optional
``last_event_id`` to resume), ``unsubscribe``, ``publish`` and ``hb``
messages; subjects and a last event id may also be given in the URL query.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from pushpy.auth import Credentials
from pushpy.core.events import Event
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import ClientError
from pushpy.web.authz import refusal, settle
from pushpy.web.http import send_now
from pushpy.web.native import ANNOUNCE, NativeProtocol, announce
from pushpy.web.origins import OriginPolicy
from pushpy.web.pushlet_channels import ProducingChannel
from pushpy.wire.native import (
    dumps,
    event_json,
    event_ws_frame,
    parse_message,
    session_closed,
    ws_text_frame,
)

if TYPE_CHECKING:
    from pushpy.server import PushServer


#: The heartbeat message's frame.
HEARTBEAT = ws_text_frame(b'{"type":"hb"}')


class BatchFrames:
    """The frame of the last batch of events framed.

    A batch (the events flushed to one connection in one turn, sent as one
    JSON array) is usually the same for every connection flushed in that
    turn, so it is encoded once and the next connections reuse it.
    """

    __slots__ = ("events", "last")

    def __init__(self) -> None:
        self.events: tuple[Event, ...] = ()
        self.last = b""

    def frame(self, events: tuple[Event, ...]) -> bytes:
        if events != self.events:  # Event has no __eq__: compared by identity
            text = "[" + ",".join([event_json(event) for event in events]) + "]"
            self.last = ws_text_frame(text.encode("utf-8"))
            self.events = events
        return self.last


@implementer(IPushProducer)
class WebSocketChannel(ProducingChannel):
    """The data channel of one WebSocket connection."""

    __slots__ = ("connection", "deadline", "done", "paused", "queued_deadline", "server",
                 "session")

    def __init__(self, server: PushServer, connection: PushpyWebSocket, session: Session) -> None:
        self.server = server
        self.connection = connection
        self.session = session
        self.done = False
        self.paused = False
        self.deadline: float | None = None
        self.queued_deadline: float | None = None

    def start(self, position: str, now: float) -> None:
        self.connection.send_text(dumps({
            "type": "open", "session": self.session.id, "position": position,
            "heartbeat": self.server.config.queue_read_timeout_millis / 1000.0,
            **announce(self.session)}))
        self._rearm(now)
        self.session.attach(self)

    def wake(self) -> None:
        if not self.done and not self.paused:
            self.server.scheduler.soon(self)

    def flush(self) -> None:
        if self.done or self.paused:
            return
        now = self.server.clock.seconds()
        items = self.session.take(now)
        if not items:
            return
        for event, _ in reversed(items):
            if event.offset is not None:
                self.session.position = event.position
                break
        self.connection.send_events([event for event, _ in items])
        self._rearm(now)

    def fire(self, now: float) -> None:
        if self.done:
            return
        if self.session.queue and not self.paused:
            self.flush()
            return
        self.session.last_active = self.session.last_alive = now
        self.connection.send_heartbeat()
        self._rearm(now)

    def end(self, reason: EndReason) -> None:
        if self.done:
            return
        message = session_closed(self.session, reason)
        self.connection.send_text(dumps(message))
        self.close()
        self.connection.close_with(1001 if reason is EndReason.SHUTDOWN else 1000, message["reason"])

    def close(self) -> None:
        """The connection is gone: stop writing, forget the channel."""
        if self.done:
            return
        self.done = True
        self.server.scheduler.set(self, None)
        self.session.detach(self)
        if self.session.state is not SessionState.ENDED:
            self.session.last_active = self.server.clock.seconds()



class PushpyWebSocket(WebSocketServerProtocol):
    """Translates WebSocket frames into :class:`NativeProtocol` calls.

    The handshake checks the page's ``Origin`` (403 if the origin policy
    refuses it); the session is made (and authorized) when the connection
    opens, and a refusal closes it with code 1008 and the reason.  Replies
    to client messages keep the messages' order even when the authorizer
    makes one wait.
    """

    log = Logger()
    channel: WebSocketChannel | None = None
    params: dict[str, str] | None = None
    last_event_id: str | None = None
    credentials: Credentials | None = None
    #: Messages that arrived while the session was being authorized.
    early: list[bytes] | None = None
    #: The last reply still waiting on the authorizer (later replies wait for it).
    replying: Deferred | None = None
    #: The session being authorized, while the authorizer thinks.
    connecting: Deferred | None = None

    #: What the opening handshake left on the connection (read nowhere once it is open).
    HANDSHAKE_ATTRS = ("http_request_data", "http_response_data", "http_headers", "http_status_line",
                       "http_request_params", "http_request_uri", "http_request_path",
                       "http_request_host", "websocket_origin", "websocket_protocols",
                       "websocket_extensions", "_wskey", "params", "credentials", "last_event_id")
    http_request_data = http_response_data = http_headers = http_status_line = None
    http_request_params = http_request_uri = http_request_path = http_request_host = None
    websocket_origin = websocket_protocols = websocket_extensions = _wskey = None

    @property
    def send_queue(self) -> deque:
        """autobahn's queue of chopped or synchronous sends, made when autobahn first looks at it."""
        queue = self.__dict__.get("_send_queue")
        if queue is None:
            queue = self.__dict__["_send_queue"] = deque()
        return queue

    @send_queue.setter
    def send_queue(self, queue: deque) -> None:
        self.__dict__["_send_queue"] = queue

    def compact(self) -> None:
        """Shrink an open connection to what it still uses (an idle one costs mostly this object).

        autobahn copies every protocol option of its factory onto each
        connection and keeps the handshake's request and response: drop the
        handshake, the options equal to the class's (see
        :func:`websocket_resource`), an empty send queue, then pack the
        attributes into a dict of their new size.
        """
        attrs = self.__dict__
        for name in self.HANDSHAKE_ATTRS:
            attrs.pop(name, None)
        cls = type(self)
        for name, value in list(attrs.items()):
            if getattr(cls, name, _MISSING) is value:
                del attrs[name]
        if not attrs.get("_send_queue", True):
            del attrs["_send_queue"]
        self.__dict__ = dict(attrs)

    def onConnect(self, request: Any) -> None:
        origin = request.headers.get("origin")
        if self.factory.origins.check(origin, request.headers.get("host")) is None:
            raise ConnectionDeny(403, f"origin not allowed: {str(origin)[:100]} (origins.allowed)")
        self.params = {k: v[0] for k, v in request.params.items() if v}
        self.last_event_id = request.headers.get("last-event-id")
        self.credentials = Credentials(
            params=self.params, headers=dict(request.headers),
            cookies=_cookies(request.headers.get("cookie")),
            address=getattr(self.transport.getPeer(), "host", ""), transport="ws")

    def onOpen(self) -> None:
        server: PushServer = self.factory.push
        credentials = self.credentials or Credentials()
        try:
            connected = self.factory.native.connect(
                self.params, last_event_id=self.last_event_id, address=credentials.address,
                user_agent=(self.http_headers.get("user-agent") or "unknown").lower(),
                now=server.clock.seconds(), credentials=credentials)
            done, found = settle(connected)
        except ClientError as e:
            self._refused(e)
            return
        if done:
            self._opened(found)
            return
        self.early = []
        self.connecting = found
        found.addCallbacks(self._opened, lambda f: self._refused(f.value)).addErrback(
            lambda f: self.log.failure("opening a WebSocket session failed", f))

    def _refused(self, error: BaseException) -> None:
        self.early = None
        if self.state == self.STATE_CLOSED:
            return
        reason = refusal(error, 403).reason
        self.send_text(dumps({"type": "close", "reason": reason}))
        self.close_with(1008, reason)

    def _opened(self, found: tuple[Session, str]) -> None:
        session, position = found
        server: PushServer = self.factory.push
        early, self.early = self.early, None
        if self.state == self.STATE_CLOSED:
            # Gone while connecting (the authorizer thought, or Redis answered a resume): a session
            # made for this connection is nobody's; a continued one lives on (its lease runs).
            if ANNOUNCE in session.data:
                server.dispatcher.end(session, EndReason.LEAVE)
            return
        self.channel = WebSocketChannel(server, self, session)
        transport = self.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # the HTTP channel that handed the socket over
        transport.registerProducer(self.channel, True)
        self.channel.start(position, server.clock.seconds())
        self.compact()
        for payload in early or ():
            self.onMessage(payload, False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.early is not None:
            if len(self.early) < 64:
                self.early.append(payload)
            return
        channel = self.channel
        if channel is None or channel.done:
            return
        server: PushServer = self.factory.push
        try:
            message = parse_message(payload, max_bytes=server.config.limit_request_bytes)
        except ClientError as e:
            self._reply({"type": "nack", "reason": e.reason})
            return
        self._reply(self.factory.native.handle(channel.session, message, server.clock.seconds()))

    def _reply(self, reply: Any) -> None:
        """Send ``reply`` (maybe a Deferred) after every earlier reply."""
        if self.replying is None and not isinstance(reply, Deferred):
            self.send_text(dumps(reply))
            return
        before = self.replying
        d: Deferred = Deferred()
        self.replying = d

        def send(value: Any) -> None:
            if self.state != self.STATE_CLOSED:
                self.send_text(dumps(value))
            if self.replying is d:
                self.replying = None
            d.callback(None)

        def after(_: object) -> None:
            if isinstance(reply, Deferred):
                def failed(reason: Any) -> None:
                    self.log.failure("a WebSocket reply failed", reason)
                    send({"type": "nack", "reason": "internal error"})

                reply.addCallbacks(send, failed)
            else:
                send(reply)

        if before is None:
            after(None)
        else:
            before.addCallback(after)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.connecting is not None and not self.connecting.called:
            self.connecting.cancel()  # the authorizer's answer is no longer awaited
        if self.channel is not None:
            self.channel.close()
            transport = self.transport
            if transport is not None and getattr(transport, "producer", None) is self.channel:
                transport.unregisterProducer()

    def send_text(self, text: str) -> None:
        """Send one text frame (nothing once the closing handshake started, e.g. after a ``leave``)."""
        if self.state != self.STATE_OPEN:
            return
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def send_events(self, events: list[Event]) -> None:
        """Send events taken from the queue in one frame (a JSON array when several)."""
        if len(events) == 1:
            self.send_frame(event_ws_frame(events[0]))
        else:
            self.send_frame(self.factory.batches.frame(tuple(events)))

    def send_heartbeat(self) -> None:
        self.send_frame(HEARTBEAT)

    def send_frame(self, frame: bytes) -> None:
        """Send a text frame built by :func:`~pushpy.wire.native.ws_text_frame`.

        The same frame bytes go to every connection: written straight to the
        socket, not through autobahn's per-frame path, while the connection
        is open and plain (no extension, nothing queued by autobahn).
        """
        if (self.state == self.STATE_OPEN and self._perMessageCompress is None
                and not self.__dict__.get("_send_queue")):
            if not send_now(self.transport, frame):
                self.transport.write(frame)
            return
        self.sendMessage(_payload(frame), isBinary=False)

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake with any RFC 6455 code.

        ``sendClose`` refuses codes other than 1000 and 3000-4999 from
        applications; 1001 (going away) and 1008 (policy) are what we mean.
        """
        self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


_MISSING = object()

#: Connection state autobahn sets on every connection, with the value it keeps on an idle open one:
#: class attributes of the protocol, so :meth:`PushpyWebSocket.compact` drops the copies.
_IDLE_STATE = {
    "wasClean": False, "wasNotCleanReason": None, "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False, "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False, "wasServerConnectionDropTimeout": False,
    "wasServingFlashSocketPolicyFile": False, "closedByMe": False, "failedByMe": False,
    "droppedByMe": False, "localCloseCode": None, "localCloseReason": None, "remoteCloseCode": None,
    "remoteCloseReason": None, "openHandshakeTimeoutCall": None, "closeHandshakeTimeoutCall": None,
    "autoPingPending": None, "autoPingPendingCall": None, "autoPingTimeoutCall": None,
    "autoPingPendingSent": None, "autoPingPendingSeq": None, "trackedTimings": None,
    "websocket_protocol_in_use": None, "_perMessageCompress": None, "inside_message": False,
    "current_frame": None, "triggered": False, "data": b"", "connected": 1,
}


def _payload(frame: bytes) -> bytes:
    """The payload of a frame built by :func:`~pushpy.wire.native.ws_text_frame`."""
    size = frame[1]
    return frame[2 + (size == 126) * 2 + (size == 127) * 8:]


def _cookies(header: str | None) -> dict[str, str]:
    """The cookies of a ``Cookie`` header."""
    out: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip()
    return out


def websocket_resource(server: PushServer) -> WebSocketResource:
    """``.../ws``: the WebSocket endpoint, mounted in the same site."""
    factory = WebSocketServerFactory()
    factory.push = server
    factory.native = NativeProtocol(server)
    factory.origins = OriginPolicy(server.config.origins_allowed)
    factory.batches = BatchFrames()
    factory.setProtocolOptions(maxMessagePayloadSize=server.config.limit_request_bytes,
                               maxFramePayloadSize=server.config.limit_request_bytes)
    # This factory's options as class attributes: an open connection drops its copies (compact()).
    options = {name: getattr(factory, name) for name in PushpyWebSocket.CONFIG_ATTRS}
    # A function option (perMessageCompressionAccept) stays a plain function, not a method.
    options = {name: staticmethod(v) if callable(v) else v for name, v in options.items()}
    factory.protocol = type("PushpyWebSocket", (PushpyWebSocket,), {**_IDLE_STATE, **options})
    return WebSocketResource(factory)


__all__ = ["PushpyWebSocket", "WebSocketChannel", "websocket_resource"]
