"""Long-poll and interval poll of pushpy's own protocol, answering JSON.

Each request carries ``subject``, ``last_event_id`` and, after the first,
``session``.  A long-poll waits up to the read timeout for events; a poll
answers at once.  The answer is ``{"session": ..., "position": ...,
"messages": [...]}``; the client asks again with the new position, so nothing
is lost between requests, even when the next one reaches a server that never
saw the session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pushpy import protocol as P
from pushpy.core.sessions import Delivery, EndReason, Session
from pushpy.errors import ClientError
from pushpy.web.authz import (
    check_binding,
    check_session_key,
    is_bound,
    refusal,
    request_credentials,
    respond,
    then,
)
from pushpy.web.http import client_address, error_page, no_cache, request_params
from pushpy.web.native import NativeProtocol, announce
from pushpy.web.pushlet_channels import _Channel
from pushpy.wire.native import dumps, event_json, session_closed
from pushpy.wire.params import parse_query

if TYPE_CHECKING:
    from pushpy.server import PushServer

JSON_TYPE = b"application/json; charset=utf-8"
log = Logger()


class LongPollChannel(_Channel):
    """One pending long-poll (or an immediate poll) response."""

    __slots__ = ("position",)

    def __init__(self, server: PushServer, request: Request, session: Session,
                 position: str) -> None:
        super().__init__(server, request, session, None)  # type: ignore[arg-type]
        self.position = position

    def start(self, now: float, *, wait: bool) -> None:
        if self.session.queue or not wait:
            self._respond(self.session.take(now), now)
            return
        self.session.last_active = self.session.last_alive = now
        self.server.scheduler.set(self, now + self.server.config.queue_read_timeout_millis / 1000.0)
        self._watch()

    def wake(self) -> None:
        if not self.done:
            self.server.scheduler.soon(self)

    def flush(self) -> None:
        if not self.done and self.session.queue:
            self._respond(self.session.take(self.server.clock.seconds()), 0.0)

    def fire(self, now: float) -> None:
        if not self.done:
            self._respond(self.session.take(now), now)

    def end(self, reason: EndReason) -> None:
        if not self.done:
            extra = [dumps(session_closed(self.session, reason))] if reason.aborts else []
            self._write(self._body([], extra))

    def _respond(self, items: list[Delivery], now: float) -> None:
        for event, _ in reversed(items):
            if event.offset is not None:
                self.position = event.position or self.position
                break
        self.session.position = self.position
        self._write(self._body(items, []))

    def _body(self, items: list[Delivery], extra: list[str]) -> bytes:
        messages = [event_json(event) for event, _ in items] + extra
        head = dumps({"session": self.session.id, "position": self.position,
                      **announce(self.session)})
        return (head[:-1] + ',"messages":[' + ",".join(messages) + "]}").encode()

    def _write(self, body: bytes) -> None:
        if self.done:
            return
        request = self.request
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        request.write(body)
        self._close()


class LongPollResource(Resource):
    """``GET .../longpoll`` (waits) or ``GET .../poll`` (answers at once)."""

    isLeaf = True

    def __init__(self, server: PushServer, *, wait: bool) -> None:
        super().__init__()
        self.push = server
        self.protocol = NativeProtocol(server)
        self.wait = wait

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
            agent = request.getHeader(b"user-agent")
            connected = self.protocol.connect(
                params, last_event_id=None, address=client_address(request),
                user_agent=agent.decode("latin-1").lower() if agent else "unknown", now=now,
                credentials=request_credentials(request, params,
                                                "longpoll" if self.wait else "poll"))
        except ClientError as e:
            return refuse(e)

        def start(found: tuple[Session, str]) -> int:
            session, position = found
            no_cache(request)
            request.responseHeaders.setRawHeaders(b"Content-Type", [JSON_TYPE])
            LongPollChannel(server, request, session, position).start(server.clock.seconds(),
                                                                      wait=self.wait)
            return NOT_DONE_YET

        return respond(request, then(connected, start), refuse)


class SendResource(Resource):
    """``POST .../send?session=ID``: client messages for the HTTP transports.

    The body is one JSON message or an array of them, whatever its
    ``Content-Type`` (pushpy.js's ``leave`` beacon on page close is
    ``text/plain``); the answer is the array of replies (``ack``/``nack``),
    in order.
    """

    isLeaf = True
    allowedMethods = (b"POST",)

    def __init__(self, server: PushServer) -> None:
        super().__init__()
        self.push = server
        self.protocol = NativeProtocol(server)

    def render_HEAD(self, request: Request) -> bytes:
        raise UnsupportedMethod(self.allowedMethods)  # Resource's would call a missing render_GET

    def render_POST(self, request: Request) -> bytes | int:
        server = self.push
        try:
            params = parse_query(request.uri.partition(b"?")[2], limit=server.config.limit_params)
        except ClientError as e:
            return error_page(request, e.status or 400, e.reason)
        session_id = params.get("session")
        session = server.dispatcher.find(session_id)
        shared = server.shared_sessions
        if session is None and session_id and shared is not None:
            # Another node's session (no sticky sessions): continue it here, same id and key,
            # once the request passed the checks against its record (403 otherwise).
            credentials = request_credentials(request, params, "send")
            copied = shared.continued_native(session_id, credentials, params.get("session_key"))
            served = then(copied, lambda copy: self._serve(request, params, copy))

            def refuse(error: BaseException) -> bytes:
                if isinstance(error, ClientError):
                    return error_page(request, error.status or 400, error.reason)
                log.error("POST send of a session from its record failed: {error!r}", error=error)
                return error_page(request, 500, "internal error")

            return respond(request, served, refuse)
        return self._serve(request, params, session)

    def _serve(self, request: Request, params: Mapping[str, str], session: Session | None) -> bytes | int:
        server = self.push
        config = server.config
        try:
            if session is None or session.format != P.FORMAT_JSON:
                raise ClientError(f"Invalid or expired session: {params.get('session', '')[:64]}", 404)
            if is_bound(session):
                check_binding(server, session, lambda: request_credentials(request, params, "send"))
            check_session_key(session, params.get("session_key"))
            request.content.seek(0, 2)
            if request.content.tell() > config.limit_request_bytes:
                raise ClientError("Request too large", 413)
            request.content.seek(0)
            try:
                payload = json.loads(request.content.read().decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise ClientError("body is not valid UTF-8 JSON", 400) from None
        except ClientError as e:
            return error_page(request, e.status or 400, e.reason)
        messages: list[Any] = payload if isinstance(payload, list) else [payload]
        if len(messages) > config.limit_params:
            return error_page(request, 400, f"too many messages (at most {config.limit_params})")


        async def reply_all() -> bytes:
            replies = []
            for message in messages:
                if not isinstance(message, dict):
                    replies.append({"type": "nack", "reason": "message must be a JSON object"})
                    continue
                reply = self.protocol.handle(session, message, server.clock.seconds())
                replies.append(await reply if isinstance(reply, Deferred) else reply)
            no_cache(request)
            request.responseHeaders.setRawHeaders(b"Content-Type", [JSON_TYPE])
            return ("[" + ",".join(dumps(reply) for reply in replies) + "]").encode()

        return respond(request, ensureDeferred(reply_all()),
                       lambda e: error_page(request, 500, "internal error"))
