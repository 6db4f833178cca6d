"""Streaming transports of pushpy's own protocol: SSE, XHR streaming, hidden iframe.

The three differ only in framing (:mod:`pushpy.wire.native`): one response
stays open; it starts with padding and an ``open`` message, then carries
events as they come, a heartbeat after each quiet read timeout, and ends with
``reconnect`` after ``stream.max.bytes`` so browser memory stays bounded (the
client reconnects with its last event id and loses nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pushpy.core.sessions import EndReason, Session
from pushpy.errors import ClientError
from pushpy.web.authz import refusal, request_credentials, respond, then
from pushpy.web.http import client_address, error_page, no_cache, request_params, streaming, write_now
from pushpy.web.native import NativeProtocol, announce
from pushpy.web.pushlet_channels import StreamChannel
from pushpy.wire.native import (
    Framing,
    LineFraming,
    ScriptFraming,
    SSEFraming,
    script_callback,
    session_closed,
)

if TYPE_CHECKING:
    from pushpy.server import PushServer


class NativeStreamChannel(StreamChannel):
    """One open streaming response of a native session."""

    __slots__ = ("framing", "written")

    def __init__(self, server: PushServer, request: Request, session: Session,
                 framing: Framing) -> None:
        super().__init__(server, request, session, None)  # type: ignore[arg-type]
        self.framing = framing
        self.written = 0

    def open(self, position: str, now: float) -> None:
        """Write the padding and the ``open`` message, then deliver."""
        framing = self.framing
        heartbeat = self.server.config.queue_read_timeout_millis / 1000.0
        hello = framing.message({"type": "open", "session": self.session.id,
                                 "position": position, "heartbeat": heartbeat,
                                 **announce(self.session)}, position)
        self.request.write(framing.preamble + hello)
        self._rearm(now)
        self.request.registerProducer(self, True)
        self._watch()

    def flush(self) -> None:
        if self.done or self.paused:
            return
        now = self.server.clock.seconds()
        items = self.session.take(now)
        if not items:
            return
        events = [event for event, _ in items]
        for event in reversed(events):
            if event.offset is not None:
                self.session.position = event.position
                break
        request = self.request
        if request.chunked and request.startedWriting and request.channel and request.method != b"HEAD":
            # The common case: the events' framed chunk is the same for every connection.
            data = self.framing.events_chunk(events)
            write_now(request.channel, data)
        else:
            event_bytes = self.framing.event
            data = b"".join([event_bytes(event) for event in events])
            self.send(data)
        self.written += len(data)
        self._rearm(now)
        if self.written >= self.server.config.stream_max_bytes:
            self.send(self.framing.message({"type": "reconnect"}))
            self._close()

    def fire(self, now: float) -> None:
        if self.done:
            return
        if self.session.queue and not self.paused:
            self.flush()
            return
        self.session.last_active = self.session.last_alive = now
        self.send(self.framing.heartbeat)
        self._rearm(now)

    def end(self, reason: EndReason) -> None:
        if self.done:
            return
        if reason.aborts:
            self.send(self.framing.message(session_closed(self.session, reason)))
        self._close()


class NativeStreamResource(Resource):
    """A streaming endpoint; ``framing(request, params)`` picks the framing."""

    isLeaf = True
    log = Logger()

    def __init__(self, server: PushServer, framing: Callable[[Request, dict], Framing],
                 transport: str = "") -> None:
        super().__init__()
        self.push = server
        self.protocol = NativeProtocol(server)
        self.framing = framing
        self.transport = transport

    def render_GET(self, request: Request) -> bytes | int:
        server = self.push
        config = server.config
        now = server.clock.seconds()

        def refuse(error: BaseException) -> bytes:
            e = refusal(error, 400)
            return error_page(request, e.status or 400, e.reason)

        try:
            params = request_params(request, limit=config.limit_params,
                                    max_bytes=config.limit_request_bytes)
            framing = self.framing(request, params)
            header = request.getHeader(b"last-event-id")
            agent = request.getHeader(b"user-agent")
            connected = self.protocol.connect(
                params, last_event_id=header.decode("latin-1") if header else None,
                address=client_address(request),
                user_agent=agent.decode("latin-1").lower() if agent else "unknown", now=now,
                credentials=request_credentials(request, params, self.transport))
        except ClientError as e:
            return refuse(e)

        def start(found: tuple[Session, str]) -> int:
            session, position = found
            no_cache(request)
            streaming(request)
            request.responseHeaders.setRawHeaders(b"Content-Type", [framing.content_type])
            NativeStreamChannel(server, request, session, framing).open(position, server.clock.seconds())
            return NOT_DONE_YET

        return respond(request, then(connected, start), refuse)


def sse_resource(server: PushServer) -> NativeStreamResource:
    """``GET .../sse``: Server-Sent Events."""
    framing = SSEFraming(server.config.sse_retry_millis)
    return NativeStreamResource(server, lambda request, params: framing, "sse")


def xhr_resource(server: PushServer) -> NativeStreamResource:
    """``GET .../xhr``: XHR streaming, one JSON message per line."""
    framing = LineFraming()
    return NativeStreamResource(server, lambda request, params: framing, "xhr")


def iframe_resource(server: PushServer) -> NativeStreamResource:
    """``GET .../iframe?callback=parent.f``: hidden-iframe script streaming."""
    default = ScriptFraming()
    framings: dict[str, ScriptFraming] = {}

    def pick(request: Request, params: dict) -> Framing:
        name = script_callback(params.get("callback"))
        if name == default.callback:
            return default
        if name not in framings and len(framings) < 64:
            framings[name] = ScriptFraming(name)
        return framings.get(name) or ScriptFraming(name)

    return NativeStreamResource(server, pick, "iframe")
