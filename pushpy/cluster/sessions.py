# test-case-name: tests.cluster.test_cluster_nodes
"""Sessions any node can serve: their state in Redis, no sticky routing.

A session's record is one Redis hash (``<prefix>:session:<id>``) whose TTL is
the session's lease, renewed by every request: format, mode, user, binding,
subscriptions (with their sids and labels), whether it listens, the
**position** (``epoch:offset``) up to which its client has been given every
event it matches, and the **owner**, the node that served its last data
request.  Events are never copied per session: the shared log is the queue.

- A control request (subscribe, publish, heartbeat...) for a session this node
  does not hold makes a passive local copy from the record (not listening).
  Changes of subscriptions are written to the record and announced on the
  control channel, so a node holding the session's open stream applies them.
- A data request (``listen``, ``refresh``) **claims** the session (one script:
  read the record, become owner, renew the lease).  If this node was the owner
  and still holds it listening, its local queue is exact and is used as is.
  Otherwise the local copy is rebuilt from the record: queue cleared, subscribed
  again, and filled from the log after the record's position (merged with live
  events arriving meanwhile, without repeats); ``recovered: false`` becomes a
  ``nack`` (Pushlet) or ``gap`` (native) notice.
- Each refresh response stores the new position before its bytes are written;
  when its client left meanwhile, the position is put back and the events
  queued again (:meth:`SharedSessions.not_written`).

**Native sessions** (format ``json``) have a record too, written when they
start: user, binding, the digest of their session key, subscriptions.  Their
client keeps its position, so the record holds none: a connect naming a
session this node does not hold makes a local copy from the record
(:meth:`SharedSessions.native_session`, same id, key checked against the
digest), and the client's ``last_event_id`` resumes it from the log, unicasts
to it included.  Their records are renewed while a connection is open
(:meth:`SharedSessions.renew`).

A session ended by ``leave`` (or a dropped Pushlet stream) is deleted in Redis
and ended on every node.  A local copy left behind by a session that moved
expires with its local lease.  See ``docs/scaling.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from pushpy import protocol as P
from pushpy.cluster.link import Script
from pushpy.core.events import Route, make_event
from pushpy.core.history import Recovery, owner_keys, parse_position
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import ClientError
from pushpy.web.authz import BINDING, SESSION_KEY, then

#: Key in ``Session.data``: the native session has a record in Redis.
SHARED = "pushpy.shared"

if TYPE_CHECKING:
    from pushpy.cluster.redis_backplane import RedisBackplane
    from pushpy.server import PushServer

#: KEYS: record; ARGV: node, lease ms.  The record before this claim ({} if none).
CLAIM = Script("""
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return record end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return record
""")

#: KEYS: record; ARGV: lease ms.  The record, lease renewed.
LOOKUP = Script("""
local record = redis.call('HGETALL', KEYS[1])
if #record > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return record
""")

#: KEYS: record; ARGV: lease ms, mode (1: only if present, 2: replace, 3: only if absent), field, value, ...
SAVE = Script("""
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '2' then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '3' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
""")


#: KEYS: record; ARGV: node, position stored, position to put back.  Only while the
#: record still holds the stored position and this node as owner.
PUT_BACK = Script("""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'position') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'position', ARGV[3])
return 1
""")


class SharedSessions:
    """Session records in Redis and the local copies made from them."""

    log = Logger()

    def __init__(self, server: PushServer, backplane: RedisBackplane) -> None:
        self.server = server
        self.backplane = backplane
        self.link = backplane.link
        self.prefix = backplane.prefix
        #: This process's id in session records.
        self.node = backplane.node
        self._quiet: set[str] = set()
        self._ending: dict[str, Deferred] = {}
        self._syncing: set[str] = set()
        self._next_renewal = 0.0
        self._renewed_at = 0.0
        backplane.control_listeners.append(self._control)
        server.dispatcher.on_end.append(self._ended)
        server.dispatcher.on_subscriptions.append(self._native_subscriptions)

    def key(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    # -- entry point ---------------------------------------------------------

    def session_for(self, session_id: str | None, *, data: bool) -> Session | Deferred:
        """The local session for a request naming ``session_id``, made from its record if needed.

        ``data`` is true for data-channel requests (listen, refresh), which
        claim the session.  Unknown ids fail with the spec's 400.
        """
        if not session_id:
            raise ClientError(P.NO_ID, 400)
        local = self.server.dispatcher.find(session_id)
        if not self.link.up:  # degraded: serve the sessions held here, refuse the others for now
            if local is not None:
                return local
            raise ClientError("the session store is unavailable: try again shortly", 503)
        lease = self._lease_ms(local)
        if not data:
            if local is not None:
                self._run(self.link.eval(LOOKUP, [self.key(session_id)], [lease]))
                return local
            found = self.link.eval(LOOKUP, [self.key(session_id)], [lease])
            return found.addCallbacks(lambda record: self._passive(session_id, _as_dict(record)),
                                      self._lost, errbackArgs=(session_id,))
        claimed = self.link.eval(CLAIM, [self.key(session_id)], [self.node, lease])
        return claimed.addCallbacks(lambda record: self._take_over(session_id, _as_dict(record)),
                                    self._lost, errbackArgs=(session_id,))

    def _lost(self, reason: Any, session_id: str) -> Session:
        """Redis went away during the lookup: as when it was away before it."""
        import txredisapi

        reason.trap(txredisapi.ConnectionError)
        local = self.server.dispatcher.find(session_id)
        if local is None:
            raise ClientError("the session store is unavailable: try again shortly", 503)
        return local

    # -- native sessions ---------------------------------------------------------

    def save_native(self, session: Session, extra: dict[str, str] | None = None) -> Deferred:
        """Write the record of a new native session (key digest, user, binding, subscriptions, ``extra``)."""
        session.data[SHARED] = True
        fields = {
            "format": session.format, "mode": session.mode, "agent": session.user_agent,
            "address": session.address, "user": session.user or "",
            "binding": _binding_text(session),
            "key": str(session.data.get(SESSION_KEY, "")), "owner": self.node,
            "subs": json.dumps([[s.sid, s.subject, s.label] for s in session.subscriptions.values()]),
            **(extra or {}),
        }
        return self._write(session, fields, only_present=False)

    def native_session(self, session_id: str,
                       accept: Callable[[dict[str, str]], bool] | None = None) -> Deferred:
        """A local copy of the native session ``session_id`` from its record; ``None`` when there is none.

        The copy is subscribed as the record says and listening; its key
        digest and binding are the record's, for the caller to check.  While
        Redis is unreachable the answer is ``None`` (the client gets a new session).
        ``accept``: asked about the record before a copy is made (``False``: no copy).
        A session this node holds already is the answer as it is.
        """
        if not self.link.up:
            return succeed(None)
        found = self.link.eval(LOOKUP, [self.key(session_id)], [self._lease_ms(None)])

        def copy(flat: list[str] | None) -> Session | None:
            record = _as_dict(flat)
            local = self.server.dispatcher.find(session_id)
            if local is not None:
                return local if local.format == P.FORMAT_JSON else None
            if record.get("format") != P.FORMAT_JSON or record.get("ended") == "1":
                return None
            if accept is not None and not accept(record):
                return None
            session = self._make(session_id, record)
            if record.get("key"):
                session.data[SESSION_KEY] = record["key"]
            session.data[SHARED] = True
            self._subscribe_as(session, record)
            self.server.dispatcher.listen(session, P.MODE_STREAM, self.server.clock.seconds())
            return session

        def unavailable(reason: Any) -> None:
            self.log.warn("native session lookup failed: {e}", e=reason.getErrorMessage())
            return None

        return found.addCallbacks(copy, unavailable)

    def drop(self, session: Session) -> None:
        """End a local copy the request may not use, leaving its record alone."""
        if session.state is not SessionState.ENDED:
            self._quiet.add(session.id)
            self.server.dispatcher.end(session, EndReason.LEAVE)

    def renew(self, now: float) -> None:
        """Renew the records of native sessions connected or active here since the last renewal.

        Runs every third of their lease (a local connect makes no Redis call).
        """
        if now < self._next_renewal or not self.link.up:
            return
        since, self._next_renewal = self._renewed_at, now + max(
            1.0, self.server.config.native_session_timeout_secs / 3)
        self._renewed_at = now
        for session in list(self.server.dispatcher.sessions.values()):
            if (session.data.get(SHARED) and session.state is not SessionState.ENDED
                    and (session.channels or session.last_active >= since)):
                self._run(self.link.execute("PEXPIRE", self.key(session.id), self._lease_ms(session)))

    def _native_subscriptions(self, session: Session) -> None:
        if (session.data.get(SHARED) and session.id not in self._syncing
                and session.state is not SessionState.ENDED):
            self.subscriptions_changed(session)

    # -- writing records -------------------------------------------------------

    def save(self, session: Session, *, position: bool = False,
             only_absent: bool = False) -> Deferred:
        """Write the session's record (and its position when asked); fires once written (or failed)."""
        fields = {
            "format": session.format, "mode": session.mode, "agent": session.user_agent,
            "address": session.address, "user": session.user or "",
            "binding": _binding_text(session),
            "listening": "1" if session.listening else "0", "owner": self.node,
            "subs": json.dumps([[s.sid, s.subject, s.label]
                                for s in session.subscriptions.values()]),
        }
        if position and session.position:
            fields["position"] = session.position
        return self._write(session, fields, only_present=False, only_absent=only_absent)

    def save_position(self, session: Session) -> Deferred:
        """Store that the client of ``session`` has everything up to ``session.position``."""
        return self._write(session, {"position": session.position or ""}, only_present=True)

    def not_written(self, session: Session, items: list[Any], previous: str | None,
                    stored: str) -> None:
        """A response that stored ``stored`` as the position was never written (its client left).

        Its events are the client's again: back in the local queue (before
        newer ones) and, if the record still holds ``stored`` with this node
        as owner, the record's position goes back to ``previous`` (a
        compare-and-set: a node that claimed the session since is left alone).
        """
        session.give_back(items)
        if session.position == stored:
            session.position = previous
        if previous:
            self._run(self.link.eval(PUT_BACK, [self.key(session.id)], [self.node, stored, previous]))

    def subscriptions_changed(self, session: Session) -> Deferred:
        """Write the subscriptions and tell the other nodes holding the session."""
        written = self._write(session, {"subs": json.dumps([[s.sid, s.subject, s.label]
                                                            for s in session.subscriptions.values()])},
                              only_present=True)
        self._run(self.backplane.send_control(f"subs {session.id} {self.node}"))
        return written

    def ended_write(self, session_id: str) -> Deferred | None:
        """The tombstone write of a session that just ended here, to wait on before answering."""
        return self._ending.pop(session_id, None)

    def _write(self, session: Session, fields: dict[str, str], *, only_present: bool,
               replace: bool = False, only_absent: bool = False) -> Deferred:
        mode = "2" if replace else "3" if only_absent else "1" if only_present else "0"
        args: list[Any] = [self._lease_ms(session), mode]
        for name, value in fields.items():
            args += [name, value]
        return self._run(self.link.eval(SAVE, [self.key(session.id)], args))

    # -- local copies ----------------------------------------------------------

    def _ended_elsewhere(self, session_id: str, record: dict[str, str]) -> bool:
        """True (and the local copy ended) when the record is a tombstone."""
        if record.get("ended") != "1":
            return False
        local = self.server.dispatcher.find(session_id)
        if local is not None:
            self._quiet.add(session_id)
            self.server.dispatcher.end(local, EndReason.LEAVE)
        return True

    def _passive(self, session_id: str, record: dict[str, str]) -> Session:
        """A copy for control requests: subscribed as the record says, not listening."""
        if self._ended_elsewhere(session_id, record):
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        local = self.server.dispatcher.find(session_id)
        if local is not None:
            return local
        if not record:
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        session = self._make(session_id, record)
        self._subscribe_as(session, record)
        return session

    def _take_over(self, session_id: str, record: dict[str, str]) -> Session | Deferred:
        server = self.server
        if self._ended_elsewhere(session_id, record):
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        local = server.dispatcher.find(session_id)
        if not record:
            if local is None:
                raise ClientError(P.INVALID_ID.format(id=session_id), 400)
            self.save(local, position=True, only_absent=True)  # Redis lost it: write it again
            return local
        if local is not None and record.get("owner") == self.node and local.listening:
            return local
        session = local if local is not None else self._make(session_id, record)
        for channel in list(session.channels):
            channel.end(EndReason.LEAVE)  # a stale copy's channel: its client has moved on
        self._subscribe_as(session, record)
        session.queue.clear()
        session.queue.dropped = 0
        if record.get("listening") != "1":
            return session
        now = server.clock.seconds()
        session.mode = record.get("mode") or P.MODE_PULL
        session.state = SessionState.LISTENING
        session.last_alive = session.last_active = now
        position = record.get("position")
        if not position:
            session.position = self.backplane.position
            return session
        subscriptions = list(session.subscriptions.values())
        recovery = self.backplane.since(
            position, lambda subject: any(s.matches(subject) for s in subscriptions),
            owner_keys(session.id, session.user))
        return then(recovery, lambda found: self._refill(session, position, found))

    def _refill(self, session: Session, position: str, recovery: Recovery) -> Session:
        """Queue the events the client is owed after ``position``, live ones merged in."""
        from pushpy.web.native import _by_offset, _matching

        parsed = parse_position(position)
        after = parsed[1] if parsed and recovery.reason != "unknown epoch" else 0
        offsets = {event.offset for event in recovery.events}
        kept = [item for item in session.queue.drain()
                if item[0].offset is None or (item[0].offset > after and item[0].offset not in offsets)]
        subscriptions = list(session.subscriptions.values())
        items = [(event, _matching(subscriptions, event.subject) if event.route is Route.MULTICAST
                  else None) for event in recovery.events]
        merged = _by_offset(items, kept)
        if not recovery.recovered:
            merged.insert(0, (self._notice(session, f"events lost: {recovery.reason}"), None))
        session.queue.refill(merged)
        session.position = position
        return session

    def _make(self, session_id: str, record: dict[str, str]) -> Session:
        dispatcher = self.server.dispatcher
        session = dispatcher.join(self.server.clock.seconds(),
                                  format=record.get("format") or P.FORMAT_JS,
                                  user_agent=record.get("agent") or "unknown",
                                  address=record.get("address") or "", session_id=session_id,
                                  user=record.get("user") or None)
        session.mode = record.get("mode") or P.MODE_STREAM
        if record.get("binding"):
            session.data[BINDING] = _binding_value(record["binding"])
        return session

    def _subscribe_as(self, session: Session, record: dict[str, str]) -> None:
        """Make the session's subscriptions those of the record (sids kept)."""
        dispatcher = self.server.dispatcher
        wanted = {sid: (subject, label) for sid, subject, label in json.loads(record.get("subs") or "[]")}
        self._syncing.add(session.id)  # not a change to write back
        try:
            for sid, subscription in list(session.subscriptions.items()):
                if wanted.get(sid) != (subscription.subject, subscription.label):
                    dispatcher.unsubscribe(session, sid)
            for sid, (subject, label) in wanted.items():
                if sid not in session.subscriptions:
                    try:
                        dispatcher.subscribe(session, subject, label, sid=sid)
                    except ClientError:
                        self.log.warn("session {id}: subscription {subject!r} refused here",
                                      id=session.id, subject=subject)
        finally:
            self._syncing.discard(session.id)

    def _notice(self, session: Session, reason: str) -> Any:
        now = self.server.clock.seconds()
        if session.format == P.FORMAT_JSON:
            return make_event(P.GAP, now, p_reason=reason, dropped="0")
        return make_event(P.NACK, now, p_id=session.id, p_reason=reason)

    # -- between nodes -----------------------------------------------------------

    def _ended(self, session: Session, reason: EndReason) -> None:
        if session.id in self._quiet:
            self._quiet.discard(session.id)
            return
        native = session.format == P.FORMAT_JSON
        if (reason is EndReason.LEAVE and session.data.get(SHARED)) or (
                reason in (EndReason.LEAVE, EndReason.DISCONNECT) and not native):
            self.end_everywhere(session)

    def end_everywhere(self, session: Session) -> None:
        """Tombstone the record of a session that ended here, and end its copies on other nodes."""
        # A tombstone, not a deletion: a node still holding a copy must not take a
        # missing record for one Redis lost, and bring the session back.
        self._ending[session.id] = self._write(session, {"ended": "1"}, only_present=False, replace=True)
        self._run(self.backplane.send_control(f"end {session.id} {self.node}"))

    def moved_here(self, session: Session) -> None:
        """The session continues on this node: the other nodes end their copies (records untouched)."""
        self._run(self.backplane.send_control(f"end {session.id} {self.node}"))

    def _control(self, message: str) -> None:
        kind, _, rest = message.partition(" ")
        session_id, _, node = rest.partition(" ")
        if node == self.node:
            return
        local = self.server.dispatcher.find(session_id)
        if local is None:
            return
        if kind == "end":
            self._quiet.add(session_id)
            self.server.dispatcher.end(local, EndReason.LEAVE)
        elif kind == "subs":
            found = self.link.eval(LOOKUP, [self.key(session_id)], [self._lease_ms(local)])
            self._run(found.addCallback(lambda record: self._resync(session_id, _as_dict(record))))

    def _resync(self, session_id: str, record: dict[str, str]) -> None:
        local = self.server.dispatcher.find(session_id)
        if local is not None and record:
            self._subscribe_as(local, record)

    # -- helpers ---------------------------------------------------------------

    def _lease_ms(self, session: Session | None) -> int:
        config = self.server.config
        timeout = session.timeout if session is not None else max(
            config.session_timeout, config.native_session_timeout_secs)
        return max(1000, int(timeout * 1000))

    def _run(self, d: Deferred) -> Deferred:
        """``d`` with its failure logged and swallowed (Redis unreachable: writes are best effort)."""
        return d.addErrback(lambda f: self.log.debug("redis session write failed: {e}",
                                                     e=f.getErrorMessage()))


def _binding_text(session: Session) -> str:
    """The session's credential fingerprint (bytes) as record text (hex)."""
    value = session.data.get(BINDING)
    return value.hex() if isinstance(value, bytes) else str(value or "")


def _binding_value(text: str) -> bytes | str:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text


def _as_dict(flat: list[str] | None) -> dict[str, str]:
    items = list(flat or [])
    return dict(zip(items[::2], items[1::2], strict=False))


def shared_sessions(server: PushServer) -> SharedSessions | None:
    """Shared sessions for ``server`` when its backplane is Redis, else ``None``."""
    from pushpy.cluster.redis_backplane import RedisBackplane

    if isinstance(server.backplane, RedisBackplane):
        return SharedSessions(server, server.backplane)
    return None


