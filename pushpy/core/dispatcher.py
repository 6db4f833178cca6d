"""The dispatcher: the session registry and event routing of one process.

Inputs are calls that take ``now``; outputs are return values and the
``wake``/``end`` calls on attached data channels.  Leases live in one
:class:`~pushpy.core.deadlines.Deadlines` heap: the caller asks
:meth:`Dispatcher.next_deadline` and calls :meth:`Dispatcher.expire` then.

Publishing does not happen here: events come in through :meth:`deliver`, which
the backplane calls for every published event (spec: the backplane is the only
path between publishers and subscribers).  Revocations (:mod:`pushpy.core.revocation`)
come the same way and are applied by :meth:`Dispatcher.revoke`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pushpy import protocol as P
from pushpy.config import Config
from pushpy.core.deadlines import Deadlines
from pushpy.core.events import Event, Route, make_event
from pushpy.core.ids import VALID_ID, id_policy
from pushpy.core.revocation import REVOCATIONS, Remembered, concerns, is_revocation, overlaps, predates
from pushpy.core.sessions import END_TEXT, EndReason, Session, SessionState
from pushpy.core.subjects import SubjectIndex, Subscription, split_subjects
from pushpy.errors import ClientError
from pushpy.interfaces import ISessionIdPolicy


def select_mode(requested: str | None, user_agent: str, config: Config) -> str:
    """The effective mode of a listen (spec 7.5): a listed agent gets pull whatever it asked."""
    if config.listen_force_pull_all or any(a in user_agent for a in config.listen_force_pull_agents):
        return P.MODE_PULL
    return requested if requested in P.MODES else P.MODE_STREAM


class Stats:
    """Counters kept by the dispatcher."""

    __slots__ = ("delivered", "dropped", "ended", "joined", "overflows", "received")

    def __init__(self) -> None:
        self.received = 0
        self.delivered = 0
        self.dropped = 0
        #: Overflow episodes: a queue dropping its first event since it was last read.
        self.overflows = 0
        self.joined = 0
        self.ended = 0


class Dispatcher:
    """Sessions of this process and the routing of events to them."""

    def __init__(self, config: Config | None = None, ids: ISessionIdPolicy | None = None) -> None:
        self.config = config = config or Config()
        self.ids = ids or id_policy(config.session_id_generation, config.session_id_size)
        self.sessions: dict[str, Session] = {}
        self.index = SubjectIndex()
        self.stats = Stats()
        self._leases = Deadlines()
        self._by_address: dict[str, int] = {}
        #: The live sessions of each user (sessions with a user only), in join order.
        self.users: dict[str, dict[Session, None]] = {}
        #: Called with ``(session, reason)`` after a session ends.
        self.on_end: list[Callable[[Session, EndReason], None]] = []
        #: Called with the new session after a join.
        self.on_join: list[Callable[[Session], None]] = []
        #: Called with a live session after its subscriptions changed (subscribe, unsubscribe).
        self.on_subscriptions: list[Callable[[Session], None]] = []
        #: Called with a session when it starts listening (its first ``listen``).
        self.on_listen: list[Callable[[Session], None]] = []
        #: Called with ``(session, revocation)`` after a revocation removed subscriptions of a live session.
        self.on_revoked: list[Callable[[Session, Event], None]] = []
        #: The backplane position (``epoch:offset``) new sessions and subscriptions are tagged with.
        self.position: Callable[[], str | None] = lambda: None
        #: Revocations seen lately, for copies of sessions made from older records.
        self.remembered = Remembered(max(config.session_timeout, config.native_session_timeout_secs) + 60)

    # -- sessions ---------------------------------------------------------

    def join(self, now: float, *, format: str = P.FORMAT_JS, user_agent: str = "unknown",
             address: str = "", params: Mapping[str, str] | None = None,
             user: str | None = None, session_id: str | None = None) -> Session:
        """Create and register a session (spec 2.3 step 2).

        Sessions of pushpy's own transports (``format="json"``) get the
        ``native.*`` lease and queue size instead of Pushlet's.  ``user`` is
        the session's user id (``None``: anonymous), set before the
        ``on_join`` callbacks run; user events reach every session of a user.
        ``session_id`` gives the id instead of the id policy (a session another node made).
        """
        config = self.config
        if len(self.sessions) >= config.sessionmanager_maxsessions:
            raise ClientError("Too many sessions: try again later", 503)
        limit = config.limit_sessions_per_address
        if (limit and self._by_address.get(address, 0) >= limit
                and address not in config.limit_sessions_per_address_exempt):
            raise ClientError(f"Too many sessions from {address}", 429)
        session_id = session_id or self.ids.session_id(params or {})
        if not isinstance(session_id, str) or not VALID_ID.match(session_id):
            raise ClientError("Invalid session id chosen by the id policy", 400)
        if session_id in self.sessions:
            raise ClientError(f"Session id in use: {session_id}", 400)
        native = format == P.FORMAT_JSON
        session = Session(
            session_id, format=format, user_agent=user_agent, address=address, now=now,
            timeout=config.native_session_timeout_secs if native else config.session_timeout,
            queue_size=config.native_queue_size + 1 if native else config.queue_size,
            queue_bytes=config.limit_queue_bytes)
        session.user = user
        session.made = self.position()
        self.sessions[session_id] = session
        if user is not None:
            self.users.setdefault(user, {})[session] = None
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self._leases.set(session, session.expires_at)
        self.stats.joined += 1
        for callback in self.on_join:
            callback(session)
        return session

    def sessions_of(self, user: str) -> list[Session]:
        """The live local sessions of ``user``, oldest first."""
        return list(self.users.get(user, ()))

    def find(self, session_id: str | None) -> Session | None:
        """The live session with this id, or ``None``."""
        return self.sessions.get(session_id) if session_id else None

    def require(self, session_id: str | None) -> Session:
        """The live session with this id, or the spec's 400 error."""
        if not session_id:
            raise ClientError(P.NO_ID, 400)
        session = self.sessions.get(session_id)
        if session is None:
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        return session

    def touch(self, session: Session, now: float) -> None:
        """Renew the lease (every request does, spec 14.1.9)."""
        session.last_active = now

    def listen(self, session: Session, mode: str | None, now: float) -> str:
        """Start listening in the effective mode; return that mode."""
        session.mode = select_mode(mode, session.user_agent, self.config)
        first = session.state is SessionState.JOINED
        session.state = SessionState.LISTENING
        session.last_alive = now
        if first:
            for callback in self.on_listen:
                callback(session)
        return session.mode

    def end(self, session: Session, reason: EndReason) -> None:
        """End ``session``: unregister, unsubscribe, tell its data channels."""
        if session.state is SessionState.ENDED:
            return
        session.state = SessionState.ENDED
        self.sessions.pop(session.id, None)
        count = self._by_address.get(session.address, 1) - 1
        if count > 0:
            self._by_address[session.address] = count
        else:
            self._by_address.pop(session.address, None)
        user = session.user
        if user is not None:
            mine = self.users.get(user)
            if mine is not None:
                mine.pop(session, None)
                if not mine:
                    del self.users[user]
        for subscription in session.subscriptions.values():
            self.index.remove(subscription)
        self._leases.set(session, None)
        session.queue.clear()
        self.stats.ended += 1
        for channel in list(session.channels):
            channel.end(reason)
        session.channels.clear()
        for callback in self.on_end:
            callback(session, reason)

    def expire(self, now: float) -> list[Session]:
        """End every session whose lease ran out; return them."""
        self.remembered.trim(now)
        ended = []
        for session in self._leases.due(now):
            if session.channels and session.format == P.FORMAT_JSON:
                session.last_active = now  # an open connection holds a native session
            expires = session.expires_at
            if expires > now:
                self._leases.set(session, expires)
                continue
            self.end(session, EndReason.EXPIRED)
            ended.append(session)
        return ended

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do (possibly early)."""
        return self._leases.next()

    def shutdown(self) -> None:
        """End every session with ``abort`` (spec 14.1.25)."""
        for session in list(self.sessions.values()):
            self.end(session, EndReason.SHUTDOWN)

    # -- subscriptions ----------------------------------------------------

    def subscribe(self, session: Session, subject: str | None, label: str | None = None,
                  sid: str | None = None, made: str | None = None) -> Subscription:
        """Add a subscription; refuse bad subjects with a ``nack`` reason.

        ``sid`` and ``made`` keep the id and position a subscription had on another node.
        """
        config = self.config
        if not subject or not split_subjects(subject):
            raise ClientError(P.NO_SUBJECT)
        if len(subject) > config.limit_subject_length * config.limit_subjects_per_subscription:
            raise ClientError("subject list too long")
        parts = split_subjects(subject)
        if len(parts) > config.limit_subjects_per_subscription:
            raise ClientError(
                f"too many subjects in one subscription (at most {config.limit_subjects_per_subscription})")
        if any(len(part) > config.limit_subject_length for part in parts):
            raise ClientError(f"subject too long (at most {config.limit_subject_length} characters)")
        if len(session.subscriptions) >= config.limit_subscriptions:
            raise ClientError(f"too many subscriptions (at most {config.limit_subscriptions})")
        if sid and sid in session.subscriptions:
            self.index.remove(session.subscriptions.pop(sid))
        sid = sid or self.ids.subscription_id()
        while sid in session.subscriptions:
            sid = self.ids.subscription_id()
        subscription = Subscription(sid, subject, label, made or self.position())
        session.subscriptions[sid] = subscription
        self.index.add(session, subscription)
        for callback in self.on_subscriptions:
            callback(session)
        return subscription

    def unsubscribe(self, session: Session, sid: str | None = None) -> list[Subscription]:
        """Remove one subscription by sid, or all of them; unknown sid is a ``nack``."""
        if sid:
            subscription = session.subscriptions.pop(sid, None)
            if subscription is None:
                raise ClientError(P.NO_SUBSCRIPTION.format(sid=sid))
            removed = [subscription]
        else:
            removed = list(session.subscriptions.values())
            session.subscriptions.clear()
        for subscription in removed:
            self.index.remove(subscription)
        if removed:
            for callback in self.on_subscriptions:
                callback(session)
        return removed

    # -- delivery ---------------------------------------------------------

    def deliver(self, event: Event, now: float) -> int:
        """Queue ``event`` for every local session it is for; return how many."""
        self.stats.received += 1
        route = event.route
        if route is Route.MULTICAST:
            targets = self.index.match(event.subject).items()
        elif route is Route.BROADCAST:
            targets = [(session, None) for session in self.sessions.values()]
        elif route is Route.USER:
            targets = [(session, None) for session in self.users.get(event.target or "", ())]
        else:
            session = self.sessions.get(event.target or "")
            targets = [(session, None)] if session is not None else []
        if route is not Route.MULTICAST and event.name in REVOCATIONS and is_revocation(event):
            self.remembered.add(event, now)
            return sum(self.revoke(session, event, now) for session, _ in list(targets))
        count = 0
        listening = SessionState.LISTENING
        for session, subscription in targets:
            # The hot loop of fan-out: one iteration per recipient, kept flat.
            if session.state is not listening:
                continue
            if session.floor is not None:
                if (event.offset or 0) <= session.floor:
                    continue  # queued already by a resume that read the log ahead of us
                session.floor = None
            channels = session.channels
            if not channels and now - session.last_alive > self._liveness(session):
                self.end(session, EndReason.LIVENESS)
                continue
            if not session.queue.put((event, subscription)) and self._overflowed(session):
                continue
            if channels:
                channels[-1].wake()
            count += 1
        self.stats.delivered += count
        return count

    # -- revocations ------------------------------------------------------

    def revoke(self, session: Session, event: Event, now: float, *, notify: bool = True) -> bool:
        """Apply the revocation ``event`` to ``session``; whether it changed anything.

        Only a session, and subscriptions, made before the revocation are
        affected.  With ``notify``, a native session made before it is told:
        the event is queued for it (its client drops the subjects too).
        """
        epoch = (self.position() or "").rpartition(":")[0]
        if session.state is SessionState.ENDED or not predates(session.made, event, epoch):
            return False
        if event.name == P.DISCONNECTED:
            session.data[END_TEXT] = event.fields.get(P.P_REASON, "")
            self.end(session, EndReason.REVOKED)
            return True
        changed = self._strip(session, event.subject or "", event, epoch)
        queued = session.floor is not None and (event.offset or 0) <= session.floor  # by a resume
        if notify and session.format == P.FORMAT_JSON and not queued:
            kept = session.queue.put((event, None)) or not self._overflowed(session)
            if kept and session.channels:
                session.channels[-1].wake()
        if changed and session.state is not SessionState.ENDED:
            for callback in self.on_subscriptions:
                callback(session)
            for revoked in self.on_revoked:
                revoked(session, event)
        return changed

    def reapply(self, session: Session, now: float) -> bool:
        """Apply the remembered revocations to a copy of ``session`` made from an older record."""
        return any([self.revoke(session, event, now, notify=False)
                    for event in self.remembered.of(session)])

    def replayed(self, session: Session, events: list[Event], now: float) -> list[Event]:
        """Apply the revocations among the replayed ``events`` (a resume) to ``session``.

        Returns the events to queue: revocations only for a native session
        made before them (its client may not have been told yet).
        """
        out = []
        epoch = (self.position() or "").rpartition(":")[0]
        for event in events:
            if not is_revocation(event):
                out.append(event)
                continue
            if not concerns(event, session):
                continue
            self.remembered.add(event, now)
            self.revoke(session, event, now, notify=False)
            if session.format == P.FORMAT_JSON and predates(session.made, event, epoch):
                out.append(event)
        return out

    def _strip(self, session: Session, subject: str, event: Event, epoch: str) -> bool:
        """Remove the prefixes overlapping ``subject`` from the subscriptions made before ``event``."""
        changed = False
        if not subject:
            return changed  # (never published so: every prefix would overlap it)
        for sid, subscription in list(session.subscriptions.items()):
            keep = tuple(p for p in subscription.prefixes if not overlaps(p, subject))
            if len(keep) == len(subscription.prefixes) or not predates(subscription.made, event, epoch):
                continue
            changed = True
            self.index.remove(subscription)
            if keep:
                subscription.prefixes, subscription.subject = keep, ",".join(keep)
                self.index.add(session, subscription)
            else:
                del session.subscriptions[sid]
        if changed:  # what is still queued for the removed prefixes goes too
            live = session.subscriptions
            session.queue.refill([item for item in session.queue.drain()
                                  if item[1] is None or (live.get(item[1].sid) is item[1]
                                                         and item[1].matches(item[0].subject))])
        return changed

    def notify_gap(self, reason: str, now: float) -> None:
        """Warn every listening session that events may have been lost (a backplane gap).

        Native sessions get a ``gap`` message, Pushlet sessions a ``nack``.
        """
        for session in list(self.sessions.values()):
            if session.state is not SessionState.LISTENING:
                continue
            if session.format == P.FORMAT_JSON:
                notice = make_event(P.GAP, now, p_reason=reason, dropped="0")
            else:
                notice = make_event(P.NACK, now, p_id=session.id, p_reason=reason)
            session.queue.put((notice, None))
            if session.channels:
                session.channels[-1].wake()

    def _overflowed(self, session: Session) -> bool:
        """Count a drop and apply the ``abort`` policy; true when the session ended."""
        queue = session.queue
        self.stats.dropped += queue.last_drop
        if queue.dropped == queue.last_drop:
            self.stats.overflows += 1
        if self.config.queue_overflow_policy == "abort":
            self.end(session, EndReason.OVERFLOW)
            return True
        return False

    def _liveness(self, session: Session) -> float:
        if session.format == P.FORMAT_JSON:
            return session.timeout
        if session.mode == P.MODE_POLL:
            return self.config.poll_refresh_timeout_millis / 1000.0
        return self.config.pull_refresh_timeout_millis / 1000.0
