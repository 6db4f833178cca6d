"""The Pushlet protocol endpoint: an ``IResource`` (spec 2 to 8, 14).

Mount it anywhere (``root.putChild(b"pushlet.srv", server.pushlet_resource())``);
the default site puts it at ``/pushlet/pushlet.srv``.  Every answer but the
three request errors of spec 2.3 (and refused limits) is HTTP 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pushpy import protocol as P
from pushpy.auth import Credentials, Identity
from pushpy.core.events import Event, Route
from pushpy.core.limits import check_event, check_publish_rate
from pushpy.core.sessions import EndReason, Session
from pushpy.errors import ClientError
from pushpy.presence import stamp_user
from pushpy.web.authz import (
    adopt,
    ask,
    authorize_join,
    check_binding,
    is_bound,
    refusal,
    request_credentials,
    respond,
    then,
)
from pushpy.web.http import client_address, error_page, no_cache, request_params, streaming
from pushpy.web.pushlet_channels import RefreshChannel, StreamChannel, refresh_url
from pushpy.wire.escape import valid_name
from pushpy.wire.pushlet import CODECS, PushletCodec

if TYPE_CHECKING:
    from pushpy.server import PushServer

Params = dict[str, str]
Handler = Callable[[Request, Session, Params, float], bytes | int]


class PushletResource(Resource):
    """Serves the Pushlet 2.0.4 protocol for one :class:`~pushpy.server.PushServer`."""

    isLeaf = True
    log = Logger()

    def __init__(self, server: PushServer) -> None:
        super().__init__()
        self.push = server
        self.handlers: dict[str, Handler] = {
            P.JOIN: self._join_ack,
            P.JOIN_LISTEN: self._listen,
            P.LISTEN: self._listen,
            P.REFRESH: self._refresh,
            P.SUBSCRIBE: self._subscribe,
            P.UNSUBSCRIBE: self._unsubscribe,
            P.PUBLISH: self._publish,
            P.HEARTBEAT: self._heartbeat,
            P.LEAVE: self._leave,
        }

    def render_GET(self, request: Request) -> bytes | int:
        return self._handle(request)

    render_POST = render_GET

    def _handle(self, request: Request) -> bytes | int:
        server = self.push
        config = server.config
        now = server.clock.seconds()
        session = None
        try:
            params = request_params(request, limit=config.limit_params,
                                    max_bytes=config.limit_request_bytes)
            name = params.get(P.P_EVENT)
            if not name:
                raise ClientError(P.NO_EVENT_TYPE, 400)
            if name.startswith(P.JOIN):
                return self._join(request, params, name, now)
            shared = server.shared_sessions
            if shared is None:
                session = server.dispatcher.require(params.get(P.P_ID))
            else:  # any node may serve it: its state is in Redis (checked against the request first)
                found = shared.session_for(
                    params.get(P.P_ID), data=name in P.DATA_CHANNEL_EVENTS,
                    credentials=lambda: request_credentials(request, params, "pushlet"))
                if isinstance(found, Deferred):
                    later = found.addCallback(lambda s: self._serve(request, s, params, name,
                                                                    server.clock.seconds()))
                    return respond(request, later, lambda e: self._refuse(request, None, e))
                session = found
            return self._serve(request, session, params, name, now)
        except ClientError as e:
            return self._refuse(request, session, e)

    def _serve(self, request: Request, session: Session, params: Params, name: str,
               now: float) -> bytes | int:
        """Run the handler of a request of a live session (after its authorization)."""
        server = self.push
        config = server.config
        try:
            if session.format not in CODECS:  # a native session's id: not one of ours
                raise ClientError(P.INVALID_ID.format(id=session.id), 400)
            if is_bound(session):
                check_binding(server, session, lambda: request_credentials(request, params, "pushlet"))
            server.dispatcher.touch(session, now)
            handler = self.handlers.get(name)
            if handler is None:
                raise ClientError(P.UNKNOWN_EVENT.format(event=name))
            if name in P.DATA_CHANNEL_EVENTS and len(session.channels) >= config.limit_channels_per_session:
                raise ClientError("too many open data channels for this session (at most"
                                  f" {config.limit_channels_per_session}, limit.channels.per.session)")
            check = self._authorize(session, name, params, now)
            if check is None:
                return handler(request, session, params, now)
            answer = then(check, lambda _: handler(request, session, params, server.clock.seconds()))
            return respond(request, answer, lambda e: self._refuse(request, session, e))
        except ClientError as e:
            return self._refuse(request, session, e)

    def _refuse(self, request: Request, session: Session | None, error: BaseException) -> bytes:
        """An error page, or a ``nack`` when a live session's request is refused."""
        e = refusal(error, None if session is not None else 400)
        if e.status is not None or session is None:
            self.log.debug("refused {uri}: {reason}", uri=request.uri, reason=e.reason)
            return error_page(request, e.status or 400, e.reason)
        return self._control(request, session, {
            P.P_EVENT: P.NACK, P.P_TIME: str(int(self.push.clock.seconds())),
            P.P_ID: session.id, P.P_REASON: e.reason})

    # -- authorization ----------------------------------------------------

    def _join(self, request: Request, params: Params, name: str, now: float) -> bytes | int:
        """``join``/``join-listen``: ask the authorizer, then make the session (403 if refused)."""
        fmt = params.get(P.P_FORMAT) or P.FORMAT_JS
        if fmt not in CODECS:
            raise ClientError(P.UNSUPPORTED_FORMAT.format(format=fmt), 400)
        credentials = request_credentials(request, params, "pushlet")
        answer = then(authorize_join(self.push, credentials),
                      lambda identity: self._joined(request, params, name, identity, credentials))
        return respond(request, answer, lambda e: self._refuse(request, None, refusal(e, 403)))

    def _joined(self, request: Request, params: Params, name: str, identity: Identity,
                credentials: Credentials) -> bytes | int | Deferred:
        server = self.push
        now = server.clock.seconds()
        session = self._new_session(request, params, now, identity.user)
        try:
            adopt(server, session, identity, credentials)
            subject = params.get(P.P_SUBJECT)
            check = ask(server.authorizer.subscribe, session, subject, status=403) \
                if name == P.JOIN_LISTEN and subject else None
        except ClientError:
            server.dispatcher.end(session, EndReason.LEAVE)
            raise
        handler = self.handlers.get(name)

        def run(_: object) -> bytes | int:
            try:
                if handler is None:
                    raise ClientError(P.UNKNOWN_EVENT.format(event=name))
                return handler(request, session, params, server.clock.seconds())
            except ClientError as e:  # a nack, as for any request of a live session
                return self._refuse(request, session, e)

        def fail(error: Failure) -> Failure:
            server.dispatcher.end(session, EndReason.LEAVE)  # refused or the client went away
            return error

        if check is None:
            return run(None)
        try:
            answer = then(check, run)
        except ClientError:
            server.dispatcher.end(session, EndReason.LEAVE)
            raise
        if isinstance(answer, Deferred):
            answer.addErrback(fail)
        return answer

    def _authorize(self, session: Session, name: str, params: Params, now: float) -> object:
        """The authorizer's answer for a subscribing or publishing request (``None``: nothing to ask)."""
        authorizer = self.push.authorizer
        subject = params.get(P.P_SUBJECT)
        if name == P.SUBSCRIBE or name == P.LISTEN:
            return ask(authorizer.subscribe, session, subject) if subject else None
        if name == P.PUBLISH:
            config = self.push.config
            check_publish_rate(session.data, config, now)
            if not subject:
                raise ClientError(P.NO_SUBJECT)
            check_event(params, config)
            return ask(authorizer.publish, session, subject)
        return None

    # -- helpers ----------------------------------------------------------

    def _new_session(self, request: Request, params: Params, now: float,
                     user: str | None) -> Session:
        fmt = params.get(P.P_FORMAT) or P.FORMAT_JS
        agent = request.getHeader(b"user-agent")
        return self.push.dispatcher.join(
            now, format=fmt, user_agent=agent.decode("latin-1").lower() if agent else "unknown",
            address=client_address(request), params=params, user=user)

    def _headers(self, request: Request, session: Session) -> PushletCodec:
        codec = CODECS[session.format]
        no_cache(request)
        request.responseHeaders.setRawHeaders(b"Content-Type", [codec.content_type])
        if "java" in session.user_agent:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        return codec

    def _control(self, request: Request, session: Session, fields: Params) -> bytes:
        codec = self._headers(request, session)
        body = codec.control(fields)
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        return body

    def _ack(self, name: str, session: Session, now: float, **fields: str) -> Params:
        return {P.P_EVENT: name, P.P_TIME: str(int(now)), P.P_ID: session.id, **fields}

    # -- control events ---------------------------------------------------

    def _stored(self, request: Request, session: Session, written: Deferred | None,
                body: Callable[[], bytes]) -> bytes | int:
        """``body()``, answered once ``written`` (a session record write) has fired."""
        if written is None:
            return body()
        return respond(request, written.addCallback(lambda _: body()),
                       lambda e: self._refuse(request, session, e))

    def _join_ack(self, request: Request, session: Session, params: Params, now: float) -> bytes | int:
        shared = self.push.shared_sessions
        if shared is not None:
            return self._stored(request, session, shared.save(session), lambda: self._control(
                request, session, self._ack(P.JOIN_ACK, session, now, p_format=session.format)))
        return self._control(request, session,
                             self._ack(P.JOIN_ACK, session, now, p_format=session.format))

    def _subscribe(self, request: Request, session: Session, params: Params,
                   now: float) -> bytes | int:
        subscription = self.push.dispatcher.subscribe(
            session, params.get(P.P_SUBJECT), params.get(P.P_LABEL))
        ack = self._ack(P.SUBSCRIBE_ACK, session, now, p_subject=subscription.subject,
                        p_sid=subscription.sid)
        if subscription.label:
            ack[P.P_LABEL] = subscription.label
        shared = self.push.shared_sessions
        written = shared.subscriptions_changed(session) if shared is not None else None
        return self._stored(request, session, written, lambda: self._control(request, session, ack))

    def _unsubscribe(self, request: Request, session: Session, params: Params,
                     now: float) -> bytes | int:
        sid = params.get(P.P_SID)
        removed = self.push.dispatcher.unsubscribe(session, sid)
        shared = self.push.shared_sessions
        written = shared.subscriptions_changed(session) if shared is not None else None
        ack = self._ack(P.UNSUBSCRIBE_ACK, session, now)
        if sid:
            subscription = removed[0]
            ack[P.P_SID] = subscription.sid
            ack[P.P_SUBJECT] = subscription.subject
            if subscription.label:
                ack[P.P_LABEL] = subscription.label
        return self._stored(request, session, written, lambda: self._control(request, session, ack))

    def _publish(self, request: Request, session: Session, params: Params,
                 now: float) -> bytes | int:
        if not params.get(P.P_SUBJECT):
            raise ClientError(P.NO_SUBJECT)
        bad = [name for name in params if not valid_name(name)]
        if bad:
            raise ClientError(f"invalid field name: {bad[0][:64]}")
        fields = dict(params)
        fields.pop("token", None)  # the publisher's credentials, never anyone else's to read
        fields[P.P_EVENT] = P.DATA
        fields[P.P_FROM] = session.id
        stamp_user(fields, session)
        fields.setdefault(P.P_TIME, str(int(now)))
        target = params.get(P.P_TO)
        route = Route.UNICAST if target else Route.MULTICAST
        published = self.push.publish_event(Event(fields, route=route, target=target or None))
        ack = {P.P_EVENT: P.PUBLISH_ACK, P.P_TIME: str(int(now))}
        if isinstance(published, Deferred):  # a clustered backplane: ack once it is stored
            answer = published.addCallback(lambda _: self._control(request, session, ack))
            return respond(request, answer, lambda e: self._refuse(request, session, e))
        return self._control(request, session, ack)

    def _heartbeat(self, request: Request, session: Session, params: Params, now: float) -> bytes:
        return self._control(request, session, {P.P_EVENT: P.HEARTBEAT_ACK, P.P_TIME: str(int(now))})

    def _leave(self, request: Request, session: Session, params: Params,
               now: float) -> bytes | int:
        self.push.dispatcher.end(session, EndReason.LEAVE)
        shared = self.push.shared_sessions
        written = shared.ended_write(session.id) if shared is not None else None
        return self._stored(request, session, written, lambda: self._control(
            request, session, self._ack(P.LEAVE_ACK, session, now)))

    # -- data channels ----------------------------------------------------

    def _listen(self, request: Request, session: Session, params: Params, now: float) -> int:
        dispatcher = self.push.dispatcher
        subject = params.get(P.P_SUBJECT)
        subscription = dispatcher.subscribe(session, subject, params.get(P.P_LABEL)) if subject else None
        mode = dispatcher.listen(session, params.get(P.P_MODE), now)
        shared = self.push.shared_sessions
        written = None
        if shared is not None:
            session.position = session.position or self.push.backplane.position
            written = shared.save(session, position=True)
        name = P.JOIN_LISTEN_ACK if params[P.P_EVENT] == P.JOIN_LISTEN else P.LISTEN_ACK
        ack = self._ack(name, session, now, p_mode=mode, p_format=session.format)
        if subscription is not None:
            ack[P.P_SID] = subscription.sid
            if subscription.label:
                ack[P.P_LABEL] = subscription.label
        codec = self._headers(request, session)

        def start(_: object = None) -> int:
            if mode == P.MODE_STREAM:
                streaming(request)
                StreamChannel(self.push, request, session, codec).start(ack, now)
            else:
                RefreshChannel(self.push, request, session, codec,
                               refresh_url(request, session.id)).first(ack, now)
            return NOT_DONE_YET

        if written is None:
            return start()
        return respond(request, written.addCallback(start), lambda e: self._refuse(request, session, e))

    def _refresh(self, request: Request, session: Session, params: Params, now: float) -> int:
        if not session.listening:
            raise ClientError(P.NOT_LISTENING)
        codec = self._headers(request, session)
        streaming(request)
        ack = {P.P_EVENT: P.REFRESH_ACK, P.P_TIME: str(int(now))}
        if session.mode == P.MODE_STREAM:
            StreamChannel(self.push, request, session, codec).start(ack, now)
            return NOT_DONE_YET
        RefreshChannel(self.push, request, session, codec,
                       refresh_url(request, session.id)).start(ack, now)
        return NOT_DONE_YET
