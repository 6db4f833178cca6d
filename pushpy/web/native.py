"""pushpy's own protocol over HTTP: connect, resume and client messages.

:class:`NativeProtocol` is shared by every native transport (SSE, XHR
streaming, hidden iframe, long-poll, poll, WebSocket).  A client connects with
its subjects and, when it comes back, its last event id; it gets exactly the
events it missed from history, then live ones.  Resuming needs only the id,
not the old session: a session found by ``session=`` is reused (its queued
unicasts are kept), otherwise a new one is made.  With the Redis backplane a
session of another node is continued here with the same id and key, from its
shared record (:mod:`pushpy.cluster.sessions`).  See ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pushpy import protocol as P
from pushpy.auth import Credentials, Identity
from pushpy.core.events import Event, Route, make_event
from pushpy.core.history import Recovery, live_floor, owner_keys, parse_position
from pushpy.core.limits import check_event, check_publish_rate
from pushpy.core.sessions import Delivery, EndReason, Session, SessionState
from pushpy.core.subjects import Subscription
from pushpy.errors import ClientError
from pushpy.presence import stamp_user
from pushpy.web.authz import (
    ForeignSession,
    adopt,
    ask,
    authorize_join,
    check_binding,
    check_session_key,
    is_bound,
    issue_session_key,
    refusal,
    then,
)
from pushpy.web.queries import Queries
from pushpy.wire.escape import valid_name
from pushpy.wire.native import string_fields

if TYPE_CHECKING:
    from pushpy.server import PushServer


#: What a publish to a user is authorized as: ``IAuthorizer.publish(session, "user:<id>")``.
USER_PREFIX = "user:"
#: Key in ``Session.data`` of the session key not yet told to the session's creator.
ANNOUNCE = "pushpy.announce_key"


def announce(session: Session) -> dict[str, str]:
    """``{"session_key": key}`` for the first answer to a session's creator, then ``{}``."""
    key = session.data.pop(ANNOUNCE, None)
    return {"session_key": key} if isinstance(key, str) else {}


class NativeProtocol:
    """Sessions and messages of pushpy's own transports."""

    def __init__(self, server: PushServer) -> None:
        self.server = server
        self.queries = Queries(server)

    def connect(self, params: Mapping[str, str], *, last_event_id: str | None, address: str,
                user_agent: str, now: float,
                credentials: Credentials | None = None) -> tuple[Session, str] | Deferred:
        """The session for a (re)connecting client and the position it resumes from.

        ``params`` may hold ``session`` (an id to continue), ``subject`` (a
        comma list) and ``last_event_id`` (which wins over the header value).
        Missed events and a ``recovery`` notice are queued on the session.
        A new session is authorized first (a refusal is a 403); the answer is
        a Deferred when the authorizer makes it wait.  A session bound to
        other credentials is not continued: a new one is made.  Continuing a
        session needs its ``session_key`` (told in the answer that created
        it, :func:`announce`), else the answer is a 403.
        """
        server = self.server
        credentials = credentials or Credentials(params=dict(params), address=address)
        session_id = params.get("session")
        session = server.dispatcher.find(session_id)
        shared = server.shared_sessions
        if session is None and session_id and shared is not None:
            # Another node's session (behind a balancer): continue it here, same id and key,
            # once the request passed the checks below against its record.
            copied = shared.continued_native(session_id, credentials, params.get("session_key"))
            copied.addErrback(_foreign_is_new)
            return then(copied, lambda copy: self._connect(
                copy, params, credentials, last_event_id, address, user_agent, now))
        return self._connect(session, params, credentials, last_event_id, address, user_agent, now)

    def _connect(self, session: Session | None, params: Mapping[str, str], credentials: Credentials,
                 last_event_id: str | None, address: str, user_agent: str,
                 now: float) -> tuple[Session, str] | Deferred:
        server = self.server
        if session is not None and session.format != P.FORMAT_JSON:
            session = None  # never continue a Pushlet session here
        if session is not None and is_bound(session):
            try:
                check_binding(server, session, lambda: credentials)
            except ClientError:
                session = None  # someone else's: knowing the id is not enough
        if session is not None:
            check_session_key(session, params.get("session_key"))
        token = params.get("last_event_id") or last_event_id
        if session is None:
            return then(authorize_join(server, credentials), lambda identity: self._start(
                identity, credentials, params, token, address, user_agent))
        return self._continue(session, token, now)

    def _start(self, identity: Identity, credentials: Credentials, params: Mapping[str, str],
               token: str | None, address: str, user_agent: str) -> tuple[Session, str] | Deferred:
        """Make the session of a new client, once it is authorized."""
        server = self.server
        dispatcher = server.dispatcher
        now = server.clock.seconds()
        session = dispatcher.join(now, format=P.FORMAT_JSON, user_agent=user_agent,
                                  address=address, params=params, user=identity.user)
        session.data[ANNOUNCE] = issue_session_key(session)
        subject = params.get("subject")

        def subscribe(_: object) -> tuple[Session, str]:
            if session.state is SessionState.ENDED:
                raise ClientError("session ended", 400)
            try:
                if subject:
                    dispatcher.subscribe(session, subject)
            except ClientError as e:
                dispatcher.end(session, EndReason.LEAVE)
                raise ClientError(e.reason, 400) from None
            later = server.clock.seconds()
            dispatcher.listen(session, P.MODE_STREAM, later)
            if server.shared_sessions is not None:  # stored before the answer: any node may continue it
                return then(server.shared_sessions.save_native(session),
                            lambda _: self._position(session, token, later))
            return self._position(session, token, later)

        def fail(reason: Failure) -> Failure:
            dispatcher.end(session, EndReason.LEAVE)  # refused, or the client went away
            return reason

        try:
            adopt(server, session, identity, credentials)
            check = ask(server.authorizer.subscribe, session, subject, status=403) if subject else None
            answer = then(check, subscribe)
        except ClientError:
            dispatcher.end(session, EndReason.LEAVE)
            raise
        if isinstance(answer, Deferred):
            answer.addErrback(fail)
        return answer

    def _continue(self, session: Session, token: str | None, now: float) -> tuple[Session, str]:
        """Continue a live session: its old connection ends, its queue is kept."""
        self.server.dispatcher.touch(session, now)
        for channel in list(session.channels):
            # One client, one connection: an old one still open (not yet noticed gone, or
            # given up by the client) would take the events resumed below and lose them.
            channel.end(EndReason.LEAVE)
        if self.server.shared_sessions is not None:  # and those open on other nodes
            self.server.shared_sessions.attached(session)
        if token and token == session.position:
            # The client has all the session delivered; its queue holds the rest.
            # (Resuming anyway would queue a ``recovery`` and end every long-poll at once.)
            return session, token
        return self._position(session, token, now)

    def _position(self, session: Session, token: str | None,
                  now: float) -> tuple[Session, str] | Deferred:
        if not token:
            session.position = self.server.backplane.position
            return session, session.position

        def place(position: str) -> tuple[Session, str]:
            session.position = position
            return session, position

        return then(self.resume(session, token, list(session.subscriptions.values()), now,
                                routed=True), place)

    def resume(self, session: Session, token: str, subscriptions: list[Subscription],
               now: float, *, routed: bool = False) -> str | Deferred:
        """Queue what ``session`` missed after ``token`` on ``subscriptions``; return the position.

        With ``routed``, also what was sent to the session, its user or
        everyone (unicast, user and broadcast events are in history too).
        The answer is a Deferred when the backplane's is (Redis); the
        session is subscribed already, so live events arriving meanwhile are
        queued and merged with the recovered ones without repeats.
        """
        owners = owner_keys(session.id, session.user) if routed else frozenset()
        recovery = self.server.backplane.since(
            token, lambda subject: any(s.matches(subject) for s in subscriptions), owners)
        return then(recovery, lambda found: self._recovered(session, token, subscriptions, found,
                                                            routed))

    def _recovered(self, session: Session, token: str, subscriptions: list[Subscription],
                   recovery: Recovery, routed: bool) -> str:
        now = self.server.clock.seconds()
        events = self.server.dispatcher.replayed(session, recovery.events, now) if routed else recovery.events
        if session.state is SessionState.ENDED:
            raise ClientError("session ended", 400)
        subscriptions = [s for s in subscriptions if session.subscriptions.get(s.sid) is s]
        parsed = parse_position(token)
        usable = parsed is not None and recovery.reason not in ("unknown epoch",
                                                                "position ahead of history")
        # What the client has: events of the token's epoch up to its offset (also when that epoch
        # is gone: a copy of the session may still hold such events, delivered by another node).
        seen = parsed if parsed and recovery.reason != "position ahead of history" else None
        recovered_ids = {(event.epoch, event.offset) for event in recovery.events}

        # Queued events the token covers are dropped for the resumed subscriptions (and
        # targets) only: the token says nothing about the session's other subscriptions.
        def covered(item: Delivery) -> bool:
            event = item[0]
            if seen is None or event.epoch != seen[0] or (event.offset or 0) > seen[1]:
                return False
            return item[1] in subscriptions if event.route is Route.MULTICAST else routed

        kept = [item for item in session.queue.drain()
                if item[0].offset is None
                or ((item[0].epoch, item[0].offset) not in recovered_ids and not covered(item))]
        recovered = deliveries(events, subscriptions)
        fields = {"recovered": "true" if recovery.recovered else "false", "count": str(len(recovered))}
        if recovery.reason:
            fields[P.P_REASON] = recovery.reason
        session.queue.refill([(make_event(P.RECOVERY, now, **fields), None),
                              *_by_offset(recovered, kept)])
        if routed and len(subscriptions) == len(session.subscriptions):
            # Everything the session is owed up to the read's end is queued: no live repeats.
            # (A resume of some subscriptions only cannot say so for the others.)
            session.floor = live_floor(recovery, self.server.backplane.position)
        if session.channels:
            session.channels[-1].wake()
        return token if usable else self.server.backplane.position

    def handle(self, session: Session, message: Mapping[str, Any],
               now: float) -> dict[str, Any] | Deferred:
        """Answer one client message (``subscribe``, ``unsubscribe``, ``publish``, ``history``,
        ``presence``, ``leave``, ``hb``).

        The reply is a Deferred when the authorizer makes a subscribe or a
        publish wait; a refusal is a ``nack`` with the reason.
        """
        ref = message.get("ref")
        reply: dict[str, Any] = {"type": "ack"}
        if ref is not None:
            reply["ref"] = ref if isinstance(ref, str | int) else str(ref)

        def nack(error: BaseException) -> dict[str, Any]:
            reply["type"] = "nack"
            reply["reason"] = refusal(error, None).reason
            return reply

        try:
            if session.state is SessionState.ENDED:
                raise ClientError("session ended")
            self.server.dispatcher.touch(session, now)
            kind = message.get("type")
            if kind == "subscribe":
                answer: Any = self._subscribe(session, message)
            elif kind == "unsubscribe":
                answer = self._unsubscribe(session, message)
            elif kind == "publish":
                answer = self._publish(session, message)
            elif kind == "leave":
                self.server.dispatcher.end(session, EndReason.LEAVE)
                shared = self.server.shared_sessions
                answer = then(shared.ended_write(session.id) if shared is not None else None,
                              lambda _: {"op": "leave"})
            elif kind == "history" or kind == "presence":
                answer = self.queries.answer(session, message)
            elif kind == "hb":
                answer = {"op": "hb"}
            else:
                raise ClientError(f"unknown message type: {str(kind)[:40]}")
        except ClientError as e:
            return nack(e)
        if isinstance(answer, Deferred):
            return answer.addCallbacks(lambda done: {**reply, **done}, lambda f: nack(f.value))
        reply.update(answer)
        return reply

    def _subscribe(self, session: Session, message: Mapping[str, Any]) -> Any:
        subject = message.get("subject")
        if not isinstance(subject, str):
            raise ClientError(P.NO_SUBJECT)

        def subscribe(_: object) -> dict[str, Any]:
            if session.state is SessionState.ENDED:
                raise ClientError("session ended")
            subscription = self.server.dispatcher.subscribe(session, subject)
            stored = self._stored(session)
            answer = {"op": "subscribe", "subject": subject}
            token = message.get("last_event_id")
            if isinstance(token, str) and token:
                resumed = self.resume(session, token, [subscription], self.server.clock.seconds())
                return then(resumed, lambda _: then(stored, lambda _: answer))
            return then(stored, lambda _: answer)

        return then(ask(self.server.authorizer.subscribe, session, subject), subscribe)

    def _unsubscribe(self, session: Session, message: Mapping[str, Any]) -> Any:
        subject = message.get("subject")
        dispatcher = self.server.dispatcher
        if subject is None:
            dispatcher.unsubscribe(session)
        else:
            sids = [sid for sid, s in session.subscriptions.items() if s.subject == subject]
            if not sids:
                raise ClientError(f"not subscribed to {str(subject)[:80]}")
            for sid in sids:
                dispatcher.unsubscribe(session, sid)
        return then(self._stored(session), lambda _: {"op": "unsubscribe", "subject": subject})

    def _stored(self, session: Session) -> Deferred | None:
        """The session's last subscription change, stored and told to every node (Redis), to
        answer after: an event published once the client has the answer follows the change."""
        shared = self.server.shared_sessions
        return shared.subscriptions_written(session.id) if shared is not None else None

    def _publish(self, session: Session, message: Mapping[str, Any]) -> Any:
        """Publish on a subject, to one session (``to``) or to every session of a user (``user``).

        A publish to a user is authorized as a publish to the subject-like
        name ``user:<id>`` (its ``subject``, optional, only labels it), and is
        refused when the user has no session anywhere.
        """
        server = self.server
        subject = message.get("subject")
        target = message.get("to")
        user = message.get("user")
        now = server.clock.seconds()
        check_publish_rate(session.data, server.config, now)
        if user is not None:
            if not isinstance(user, str) or not user or len(user) > server.config.limit_subject_length:
                raise ClientError("'user' must be a non-empty string")
            if target is not None:
                raise ClientError("give at most one of 'to' and 'user'")
            if subject is not None and not isinstance(subject, str):
                raise ClientError("'subject' must be a string")
        elif not isinstance(subject, str) or not subject:
            raise ClientError(P.NO_SUBJECT)
        fields = string_fields(message.get("fields"))
        bad = [name for name in fields if not valid_name(name)]
        if bad:
            raise ClientError(f"invalid field name: {bad[0][:64]}")
        out = {P.P_EVENT: P.DATA, P.P_TIME: str(int(now)), **fields, P.P_FROM: session.id}
        stamp_user(out, session)
        if subject:
            out[P.P_SUBJECT] = subject
        out[P.P_EVENT] = P.DATA
        check_event(out, server.config)

        def publish(_: object) -> dict[str, Any]:
            if session.state is SessionState.ENDED:
                raise ClientError("session ended")
            if isinstance(target, str) and target:
                event = Event(out, route=Route.UNICAST, target=target)
            else:
                event = Event(out)
            return then(server.publish_event(event),
                        lambda stored: {"op": "publish", "id": getattr(stored, "position", None)})

        if user is None:
            return then(ask(server.authorizer.publish, session, subject), publish)

        def to_user(online: bool) -> dict[str, Any]:
            if not online:
                raise ClientError(f"user has no session: {user[:64]}")
            if session.state is SessionState.ENDED:
                raise ClientError("session ended")
            return then(server.publish_event(Event(out, route=Route.USER, target=user)),
                        lambda stored: {"op": "publish", "id": getattr(stored, "position", None),
                                        "user": user})

        return then(ask(server.authorizer.publish, session, USER_PREFIX + user),
                    lambda _: server.is_online(user).addCallback(to_user))


def _foreign_is_new(reason: Failure) -> None:
    """A session bound to someone else's credentials is not continued: the client gets a new one."""
    reason.trap(ForeignSession)
    return None


def _by_offset(recovered: list[Delivery], kept: list[Delivery]) -> list[Delivery]:
    """Both lists as one in offset order, so ids reach the client increasing.

    A client resumes from the last id it received: an event delivered after
    one with a higher id would be skipped by that resume.  Items of ``kept``
    without an offset (notices, unicasts) keep their place.
    """
    out: list[Delivery] = []
    i = 0
    for item in kept:
        offset = item[0].offset
        if offset is not None:
            while i < len(recovered) and (recovered[i][0].offset or 0) < offset:
                out.append(recovered[i])
                i += 1
        out.append(item)
    out.extend(recovered[i:])
    return out


def deliveries(events: list[Event], subscriptions: list[Subscription]) -> list[Delivery]:
    """Replayed ``events`` as queue items, each multicast one with the subscription it matches.

    A multicast event no subscription matches (a revocation removed it since)
    is left out.
    """
    items: list[Delivery] = []
    for event in events:
        subscription = _matching(subscriptions, event.subject) if event.route is Route.MULTICAST else None
        if subscription is not None or event.route is not Route.MULTICAST:
            items.append((event, subscription))
    return items


def _matching(subscriptions: list[Subscription], subject: str | None) -> Subscription | None:
    for subscription in subscriptions:
        if subscription.matches(subject):
            return subscription
    return None

