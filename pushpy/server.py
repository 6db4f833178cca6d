"""The push server: dispatcher, backplane, timers and event sources as one service.

:class:`PushServer` is what applications hold.  It publishes from reactor code
(:meth:`~PushServer.publish`, :meth:`~PushServer.broadcast`,
:meth:`~PushServer.unicast`) and from other threads
(:meth:`~PushServer.publish_from_thread`), takes subscriptions and sessions
back (:meth:`~PushServer.unsubscribe`, :meth:`~PushServer.disconnect`), hands out the resources to mount in
a Twisted site, and as a Twisted ``Service`` runs the lease sweeper and the
event sources, and aborts every session at shutdown.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from pushpy import protocol as P
from pushpy.backplane import backplane_from_config
from pushpy.config import Config
from pushpy.core.dispatcher import Dispatcher
from pushpy.core.events import Event, Route, data_event
from pushpy.core.presence import ONLINE
from pushpy.core.revocation import revocation
from pushpy.dashboard import StatsPublisher
from pushpy.errors import UsageError
from pushpy.interfaces import IAuthorizer, IBackplane, IEventSource, ISessionIdPolicy
from pushpy.logs import watch_sessions
from pushpy.metrics import Counters
from pushpy.presence import PresenceTracker
from pushpy.shutdown import drain, open_transports
from pushpy.wire.escape import valid_name


def default_reactor(reactor: Any = None) -> Any:
    """``reactor``, or the global reactor (imported only when needed)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


class PushServer(Service):
    """A pushpy server: sessions, routing, publishing, sources.

    :param config: settings (defaults: Pushlet's).
    :param reactor: the reactor, used as the clock and for thread hand-off.
    :param backplane: an :class:`~pushpy.interfaces.IBackplane`; in-process by default.
    :param ids: an :class:`~pushpy.interfaces.ISessionIdPolicy`.
    :param sources: :class:`~pushpy.interfaces.IEventSource` providers to run.
    :param rng: a :class:`random.Random` for ``p_wait`` draws.
    :param authorizer: an :class:`~pushpy.interfaces.IAuthorizer`; by default
        :class:`~pushpy.auth.TokenAuthorizer` when ``auth.token.secret`` is
        set, else :class:`~pushpy.auth.OpenAuthorizer` (everyone may do everything).
    """

    log = Logger()

    def __init__(self, config: Config | None = None, *, reactor: Any = None,
                 backplane: IBackplane | None = None, ids: ISessionIdPolicy | None = None,
                 sources: Iterable[IEventSource] = (), rng: random.Random | None = None,
                 authorizer: IAuthorizer | None = None) -> None:
        from pushpy.auth import authorizer_from_config
        from pushpy.web.scheduler import Scheduler

        self.config = config or Config()
        self.authorizer: IAuthorizer = authorizer or authorizer_from_config(self.config)
        self.reactor = default_reactor(reactor)
        self.clock: IReactorTime = self.reactor
        self.random = rng or random.Random()
        self.dispatcher = Dispatcher(self.config, ids)
        self.backplane = backplane or backplane_from_config(self.config, self.reactor,
                                                            self.clock.seconds)
        self.scheduler = Scheduler(self.clock)
        self.sources = list(sources)
        self._sweeper: LoopingCall | None = None
        self.backplane.attach(self._receive)
        self.dispatcher.position = lambda: self.backplane.position
        #: Session records in Redis (:mod:`pushpy.cluster.sessions`) with a clustered backplane.
        self.shared_sessions: Any = None
        if getattr(self.backplane, "control_listeners", None) is not None:
            from pushpy.cluster.sessions import SharedSessions

            self.shared_sessions = SharedSessions(self, self.backplane)
        gaps = getattr(self.backplane, "gap_listeners", None)
        if gaps is not None:
            gaps.append(lambda reason: self.dispatcher.notify_gap(reason, self.clock.seconds()))
        #: Counts besides the dispatcher's (:mod:`pushpy.metrics`).
        self.metrics = Counters(self.clock.seconds())
        self.dispatcher.on_end.append(self.metrics.session_ended)
        watch_sessions(self)
        self.stats_publisher = StatsPublisher(self)
        self.presence_tracker = PresenceTracker(self)

    # -- publishing ---------------------------------------------------------

    def publish(self, subject: str, fields: Mapping[str, object] | None = None,
                **more: object) -> Event | Deferred[Event]:
        """Multicast a ``data`` event on ``subject`` to every matching session."""
        return self.publish_event(data_event(subject, _merge(fields, more), self.clock.seconds()))

    def broadcast(self, fields: Mapping[str, object] | None = None,
                  **more: object) -> Event | Deferred[Event]:
        """Send a ``data`` event (or the ``p_event`` given) to every session."""
        merged = _merge(fields, more)
        name = str(merged.pop("p_event", "data"))
        event = data_event(str(merged.pop("p_subject", "")), merged, self.clock.seconds(),
                           route=Route.BROADCAST)
        event.fields["p_event"] = name
        return self.publish_event(event)

    def unicast(self, session_id: str, fields: Mapping[str, object] | None = None,
                subject: str = "", **more: object) -> Event | Deferred[Event]:
        """Send a ``data`` event to one session, without a subject check."""
        return self.publish_event(data_event(subject, _merge(fields, more), self.clock.seconds(),
                                             route=Route.UNICAST, target=session_id))

    def send_to_user(self, user: str, subject: str = "", fields: Mapping[str, object] | None = None,
                     **more: object) -> Event | Deferred[Event]:
        """Send a ``data`` event to every session of ``user`` (tabs, devices), on every node.

        No subject check: ``subject`` only labels the event for its receivers.
        It is kept in history for the user's sessions that resume (not in the
        subject's history); a user without sessions gets nothing (ask
        :meth:`is_online` first when that matters).
        """
        if not isinstance(user, str) or not user:
            raise UsageError("a user event needs a target user id")
        return self.publish_event(data_event(subject, _merge(fields, more), self.clock.seconds(),
                                             route=Route.USER, target=user))

    # -- revocation -----------------------------------------------------------

    def unsubscribe(self, subject: str, *, user: str | None = None, session: str | None = None,
                    reason: str = "revoked") -> Event | Deferred[Event]:
        """Remove ``subject`` from the subscriptions of every session of ``user``, or of ``session``.

        Prefixes at or under ``subject`` go (``/chat/room1`` also removes
        ``/chat/room1/typing``), and so do broader ones (``/chat``: it cannot
        be cut down); on every node, and in the session records, so a
        session that moves keeps them removed.  Native clients get an
        ``unsubscribed`` message with ``reason`` and drop those subjects.
        Returns the stored revocation (a Deferred of it with a clustered
        backplane, like :meth:`publish`): an event published once it is
        stored never reaches the removed subscriptions.  It does not stop
        a new subscribe: the authorizer must refuse it from now on.
        See :mod:`pushpy.core.revocation`.
        """
        if not isinstance(subject, str) or not subject or "," in subject:
            raise UsageError("unsubscribe needs one subject (not a comma list)")
        if len(subject) > self.config.limit_subject_length:
            raise UsageError(f"subject too long (at most {self.config.limit_subject_length} characters)")
        return self._revoke(P.UNSUBSCRIBED, user, session, reason, subject)

    def disconnect(self, *, user: str | None = None, session: str | None = None,
                   reason: str = "disconnected") -> Event | Deferred[Event]:
        """End every session of ``user``, or ``session``, on every node.

        Their clients get ``close`` (native, with ``reason`` and
        ``"reconnect": false``), ``abort`` (Pushlet) or a Socket.IO
        ``DISCONNECT``; the sessions cannot be continued.  Returns the stored
        revocation like :meth:`unsubscribe`.
        """
        return self._revoke(P.DISCONNECTED, user, session, reason)

    def _revoke(self, name: str, user: str | None, session: str | None, reason: str,
                subject: str | None = None) -> Event | Deferred[Event]:
        if (user is None) == (session is None):
            raise UsageError("give one of user= and session=")
        target = user if user is not None else session
        if not isinstance(target, str) or not target:
            raise UsageError("the user or session must be a non-empty string")
        if not isinstance(reason, str) or len(reason) > 200:
            raise UsageError("reason must be a string of at most 200 characters")
        return self.publish_event(revocation(name, self.clock.seconds(), user=user, session=session,
                                             reason=reason, subject=subject))

    # -- queries --------------------------------------------------------------

    def presence(self, subject: str = ONLINE) -> Deferred[dict[str, int]]:
        """The users present on ``subject`` (default: online anywhere), cluster-wide.

        Fires with ``{user: number of their sessions there}``.
        """
        return maybeDeferred(self.backplane.presence, subject).addCallback(dict)

    def is_online(self, user: str) -> Deferred[bool]:
        """Whether ``user`` has a session on some node."""
        return self.presence(ONLINE).addCallback(lambda users: user in users)

    def history(self, subject: str, count: int) -> Deferred[list[Event]]:
        """The newest ``count`` events of exactly ``subject``, oldest first."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"count must be an int >= 0, not {count!r}")
        return maybeDeferred(self.backplane.history, subject, count).addCallback(list)

    def publish_event(self, event: Event) -> Event | Deferred[Event]:
        """Hand ``event`` to the backplane; return the stored event.

        A clustered backplane answers with a Deferred firing with it.
        """
        bad = [name for name in event.fields if not valid_name(name)]
        if bad:
            raise UsageError(f"field name {bad[0]!r} cannot be written in every format")
        self.metrics.published += 1
        return self.backplane.publish(event)

    def publish_from_thread(self, subject: str, fields: Mapping[str, object] | None = None,
                            **more: object) -> None:
        """Like :meth:`publish`, callable from any thread (runs in the reactor thread)."""
        self.reactor.callFromThread(self.publish, subject, fields, **more)

    def call_from_thread(self, function: Any, *args: Any, **kwargs: Any) -> None:
        """Run ``function(*args, **kwargs)`` in the reactor thread."""
        self.reactor.callFromThread(function, *args, **kwargs)

    def _receive(self, event: Event) -> None:
        self.dispatcher.deliver(event, self.clock.seconds())

    # -- resources ----------------------------------------------------------

    def pushlet_resource(self):
        """The Pushlet protocol ``IResource`` (mount it as ``.../pushlet.srv``)."""
        from pushpy.web.pushlet import PushletResource

        return PushletResource(self)

    def resources(self) -> dict[bytes, Any]:
        """Every endpoint by the name to mount it under (beside the web root).

        ``pushlet.srv`` is the Pushlet protocol; the others are pushpy's own
        transports (see ``docs/protocol.md``), ``history`` and ``presence`` the
        queries of :mod:`pushpy.web.queries`, and ``api`` holds the back-end
        API (``api/publish``, ``api/unsubscribe``, ``api/disconnect``).  Every
        HTTP endpoint applies the origin policy (``origins.allowed``); the
        WebSocket checks it in its handshake.
        """
        from twisted.web.resource import Resource

        from pushpy.web.api import PublishAPI, RevokeAPI
        from pushpy.web.longpoll import LongPollResource, SendResource
        from pushpy.web.origins import OriginGuard, OriginPolicy
        from pushpy.web.queries import QueryResource
        from pushpy.web.stats import stats_resources
        from pushpy.web.streams import iframe_resource, sse_resource, xhr_resource
        from pushpy.web.websocket import websocket_resource

        policy = OriginPolicy(self.config.origins_allowed)
        api = Resource()
        api.putChild(b"publish", OriginGuard(PublishAPI(self), policy))
        for op in ("unsubscribe", "disconnect"):
            api.putChild(op.encode(), OriginGuard(RevokeAPI(self, op), policy))
        guarded = {
            b"pushlet.srv": self.pushlet_resource(),
            b"sse": sse_resource(self),
            b"xhr": xhr_resource(self),
            b"iframe": iframe_resource(self),
            b"longpoll": LongPollResource(self, wait=True),
            b"poll": LongPollResource(self, wait=False),
            b"send": SendResource(self),
            b"history": QueryResource(self, "history"),
            b"presence": QueryResource(self, "presence"),
            **stats_resources(self),
        }
        if self.config.socketio_enabled:
            from pushpy.web.socketio import socketio_resource

            guarded[b"socket.io"] = socketio_resource(self)
        return {**{name: OriginGuard(resource, policy) for name, resource in guarded.items()},
                b"ws": websocket_resource(self), b"api": api}

    @property
    def socketio(self) -> Any:
        """The Socket.IO application of this server (:class:`pushpy.socketio.SocketIO`)."""
        app = self.__dict__.get("_socketio")
        if app is None:
            from pushpy.socketio import SocketIO

            app = self.__dict__["_socketio"] = SocketIO(self)
        return app

    # -- service ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        start = getattr(self.backplane, "start", None)
        if start is not None:
            start()  # connects in the background; publishes wait in its outbox meanwhile
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = self.clock
        self._sweeper.start(self.config.session_check_millis / 1000.0, now=False)
        if self.config.sources_activate:
            for source in self.sources:
                source.activate(self)
        self.stats_publisher.start()
        self.log.info("pushpy started: {sources} event sources", sources=len(self.sources))

    def stopService(self) -> Deferred[None] | None:
        """Stop sources, end every session with ``abort`` (spec 14.1.25).

        When sessions were ended, the result is a Deferred that fires once
        their connections have sent their closing bytes and closed, or after
        ``shutdown.timeout.secs`` (:mod:`pushpy.shutdown`); twistd waits for
        it before it drops the connections and exits.
        """
        self.stats_publisher.stop()
        for source in self.sources:
            try:
                source.stop()
            except Exception:
                self.log.failure("stopping event source {source!r} failed", source=source)
        had_sessions = bool(self.dispatcher.sessions)
        transports = open_transports(self.dispatcher)
        engine = getattr(self.__dict__.get("_socketio"), "engine", None)
        if engine is not None:
            transports.update(engine.open_transports())  # Socket.IO polls and WebSockets
        self.dispatcher.shutdown()
        if engine is not None:
            # Engine.IO sessions not (or no longer) in a namespace; close packets awaiting a poll.
            transports.update(engine.shutdown())
        self.scheduler.flush_pending()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.scheduler.stop()
        stop = getattr(self.backplane, "stop", None)
        if stop is not None:
            stop()
        super().stopService()
        if transports:
            return drain(transports, self.clock, self.config.shutdown_timeout_secs)
        if had_sessions:
            return deferLater(self.clock, 0, lambda: None)
        return None

    def sweep(self) -> None:
        """End expired sessions (runs every ``session.check.millis``)."""
        now = self.clock.seconds()
        self.dispatcher.expire(now)
        if self.shared_sessions is not None:
            self.shared_sessions.renew(now)


def _merge(fields: Mapping[str, object] | None, more: Mapping[str, object]) -> dict[str, object]:
    merged = dict(fields or {})
    merged.update(more)
    return merged
