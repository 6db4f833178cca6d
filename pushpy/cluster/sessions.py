# test-case-name: tests.cluster.test_cluster_nodes
"""Sessions any node can serve: their state in Redis, no sticky routing.

A session's record is one Redis hash (``<prefix>:session:<id>``) whose TTL is
the session's lease, renewed by every request: format, mode, user, binding,
subscriptions (with their sids and labels), whether it listens, the
**position** (``epoch:offset``) up to which its client has been given every
event it matches, and the **owner**, the node that served its last data
request.  Events are never copied per session: the shared log is the queue.

- A request is checked against the record (binding, user) before a copy is
  made or the session claimed: a refused one changes nothing.
- A control request (subscribe, publish, heartbeat...) for a session this node
  does not hold makes a passive local copy from the record (not listening).
  Changes of subscriptions are written to the record and announced on the
  control channel with the new subscriptions, so a node holding the session's
  open stream applies them as it reads the notice.
- A data request (``listen``, ``refresh``) **claims** the session (one script:
  read the record, check the binding, become owner, renew the lease).  If this
  node was the owner and still holds it listening, its local queue is exact and
  is used as is.
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
(:meth:`SharedSessions.native_session`, same id, once binding, key and user
passed), and the client's ``last_event_id`` resumes it from the log, unicasts
to it included.  Records of sessions with an open connection are renewed by
the node holding it (:meth:`SharedSessions.renew`).  Each connect makes its
node the record's owner and closes the session's connections on the other
nodes (:meth:`SharedSessions.attached`), as a second connection does on one node.

A session ended by ``leave`` (or a dropped Pushlet stream; a native one by
overflow or liveness on its owner) is replaced in Redis by a tombstone and
ended on every node.  A local copy left behind by a session
that moved expires with its local lease.  See ``docs/scaling.md``.

Revocations (:mod:`pushpy.core.revocation`) come through the log: the node
applying one to a copy writes the record (a disconnect tombstones it).  Records
keep the position each session and subscription was made at (``made``), and a
copy made from a record applies the revocations the node remembers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from pushpy import protocol as P
from pushpy.auth import IDENTITY, Credentials, Identity
from pushpy.cluster.link import Script
from pushpy.core.events import make_event
from pushpy.core.history import Recovery, live_floor, owner_keys, parse_position
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import ClientError
from pushpy.web.authz import (
    BINDING,
    SESSION_KEY,
    ForeignSession,
    check_fingerprint,
    check_key_digest,
    fingerprint,
    identify,
    then,
)
from pushpy.wire.pushlet import CODECS

#: Key in ``Session.data``: the native session has a record in Redis.
SHARED = "pushpy.shared"
#: Key in ``Session.data``: the fields its record has beyond pushpy's own (written again with it).
EXTRA = "pushpy.record_extra"
#: The fields of a record this module writes.
_FIELDS = frozenset({"format", "mode", "agent", "address", "user", "binding", "key", "owner", "subs",
                     "listening", "position", "ended", "attach", "made"})
#: Key in ``Session.data``: the number of this node's newest connect of the native session
#: (None while its ATTACH is in flight); ``_NEWEST``: the highest number any node announced.
_ATTACH = "pushpy.attach"
_NEWEST = "pushpy.attach_newest"

if TYPE_CHECKING:
    from pushpy.cluster.redis_backplane import RedisBackplane
    from pushpy.server import PushServer

#: KEYS: record; ARGV: node, lease ms, the request's binding (hex, '' for none).  The record
#: before this claim ({} if none), or 0 (nothing changed) when it is bound to other credentials;
#: a native session's record is returned unchanged (never claimed by a Pushlet request).
CLAIM = Script("""
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 or redis.call('HGET', KEYS[1], 'format') == 'json' then return record end
local binding = redis.call('HGET', KEYS[1], 'binding')
if binding and binding ~= '' and binding ~= ARGV[3] then return 0 end
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

#: KEYS: record; ARGV: node, lease ms, control channel, session id, owner ('' for any).  Replaces
#: the record with a tombstone and announces ``end`` (only while ``owner`` owns it); 1 when it did.
TOMBSTONE = Script("""
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[5] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ended', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'end ' .. ARGV[4] .. ' ' .. ARGV[1])
return 1
""")

#: KEYS: record; ARGV: node, lease ms, control channel, session id.  A connect of the native
#: session here: this node owns it, and the others hear ``attach <id> <node> <n>`` (n counts the
#: connects) when it was another node's: a connect to the owner (each long-poll of a client that
#: stays on one node) tells nobody, since every other node's connection was closed by the notice
#: that made it the owner.  n, or 0 when there is no live record.
ATTACH = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'attach', 1)
local previous = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if previous ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[3], 'attach ' .. ARGV[4] .. ' ' .. ARGV[1] .. ' ' .. n)
end
return n
""")

#: KEYS: records.  The 1-based indexes of those that are tombstones.
ENDED = Script("""
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'ended') == '1' then out[#out + 1] = i end
end
return out
""")

#: Records :meth:`SharedSessions.check_copies` reads per script.
_BATCH = 500

#: What an admission check answers when the record is not for this request (no copy).
_NO_COPY = object()


class Unreadable(ValueError):
    """A session record no node can use (written by hand, or by something else)."""


class SharedSessions:
    """Session records in Redis and the local copies made from them.

    A copy is made only after the request's credentials passed the record's
    checks (binding, key, user): a refused request leaves no trace (no
    presence ``join``/``leave``, no claim, no ended channel).
    """

    log = Logger()

    def __init__(self, server: PushServer, backplane: RedisBackplane) -> None:
        self.server = server
        self.backplane = backplane
        self.link = backplane.link
        self.prefix = backplane.prefix
        #: This process's id in session records.
        self.node = backplane.node
        self._quiet: set[str] = set()
        #: Record writes still in flight, to answer after: tombstones, subscription changes.
        self._ending: dict[str, Deferred] = {}
        self._changes: dict[str, Deferred] = {}
        self._syncing: set[str] = set()
        self._next_renewal = 0.0
        self._renewed_at = 0.0
        backplane.control_listeners.append(self._control)
        backplane.reconnect_listeners.append(self.check_copies)
        server.dispatcher.on_end.append(self._ended)
        server.dispatcher.on_subscriptions.append(self._native_subscriptions)
        server.dispatcher.on_revoked.append(self._revoked)

    def key(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    # -- Pushlet sessions ------------------------------------------------------

    def session_for(self, session_id: str | None, *, data: bool,
                    credentials: Callable[[], Credentials]) -> Session | Deferred:
        """The local session for a Pushlet request naming ``session_id``, made from its record if needed.

        ``data`` is true for data-channel requests (listen, refresh), which
        claim the session.  Unknown ids fail with the spec's 400; a session
        bound to other credentials with a 403 before anything changes.
        """
        if not session_id:
            raise ClientError(P.NO_ID, 400)
        local = self.server.dispatcher.find(session_id)
        if local is not None and local.format not in CODECS:
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)  # a native session
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
            found.addCallbacks(self._read, self._lost, callbackArgs=(session_id,),
                               errbackArgs=(session_id,))
            return found.addCallback(lambda record: self._passive(session_id, record, credentials()))
        bound = fingerprint(self.server, credentials())
        claimed = self.link.eval(CLAIM, [self.key(session_id)],
                                 [self.node, lease, bound.hex() if bound else ""])
        claimed.addCallbacks(self._read, self._lost, callbackArgs=(session_id,),
                             errbackArgs=(session_id,))
        return claimed.addCallback(lambda record: self._take_over(session_id, record, credentials()))

    def _read(self, flat: Any, session_id: str) -> dict[str, str]:
        """The Pushlet record a script answered, checked.

        400 when unreadable or a native session's (never served as Pushlet),
        403 when bound to other credentials (CLAIM then changed nothing).
        """
        if isinstance(flat, int):
            raise ForeignSession()
        try:
            record = _readable(_as_dict(flat))
        except Unreadable as e:
            return self._unreadable(session_id, e)
        if record and record.get("ended") != "1" and record.get("format") not in CODECS:
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        return record

    def _unreadable(self, session_id: str, error: Exception) -> Any:
        self.log.warn("session {id}: record unreadable ({error}): not used", id=session_id,
                      error=str(error)[:200])
        raise ClientError(f"{P.INVALID_ID.format(id=session_id)} (its record is unreadable)", 400)

    def _lost(self, reason: Any, session_id: str) -> Session:
        """Redis went away during the lookup (as when it was away before it), or refused it."""
        import txredisapi

        if reason.check(txredisapi.ResponseError):  # e.g. WRONGTYPE: not a record at all
            return self._unreadable(session_id, reason.value)
        reason.trap(txredisapi.ConnectionError)
        local = self.server.dispatcher.find(session_id)
        if local is None:
            raise ClientError("the session store is unavailable: try again shortly", 503)
        return local

    # -- native sessions ---------------------------------------------------------

    def save_native(self, session: Session, extra: dict[str, str] | None = None, *,
                    only_absent: bool = False) -> Deferred:
        """Write the record of a new native session (key digest, user, binding, subscriptions, ``extra``)."""
        session.data[SHARED] = True
        if extra:
            session.data[EXTRA] = dict(extra)
        fields = {
            "format": session.format, "mode": session.mode, "agent": session.user_agent,
            "address": session.address, "user": session.user or "",
            "binding": _binding_text(session),
            "key": str(session.data.get(SESSION_KEY, "")), "owner": self.node,
            "subs": _subs_text(session), "made": session.made or "",
            **(extra or {}),
        }
        return self._write(session, fields, only_present=False, only_absent=only_absent)

    def native_session(self, session_id: str, accept: Callable[[dict[str, str]], bool],
                       credentials: Credentials) -> Deferred:
        """A local copy of the native session ``session_id`` from its record; ``None`` when there is none.

        No copy is made unless ``accept(record)`` is true and the record's
        binding and user are those of ``credentials`` (Socket.IO recovery:
        a refusal is no recovery, not an error).  A session this node holds
        already is the answer as it is.
        """
        def admit(record: dict[str, str]) -> Any:
            if not accept(record):
                return _NO_COPY
            try:
                answer = self._admit(record, credentials)
            except ForeignSession:
                return _NO_COPY
            if isinstance(answer, Deferred):
                answer.addErrback(lambda f: f.trap(ForeignSession) and _NO_COPY)
            return answer

        return self._native(session_id, admit)

    def continued_native(self, session_id: str, credentials: Credentials,
                         session_key: object) -> Deferred:
        """A local copy of the native session a client continues here, checked before it is made.

        Fires with ``None`` when there is no usable record (none, ended, not
        native, unreadable; or Redis is unreachable): the client gets a new
        session.  Fails with :class:`ForeignSession` when the request's
        credentials are someone else's, with a 403 when ``session_key`` is
        wrong; no copy is made then.  The copy has its user's claims again.
        """
        def admit(record: dict[str, str]) -> Any:
            self._check_binding(record, credentials)  # first: someone else's gets a new session
            check_key_digest(record.get("key") or None, session_key)
            return identify(self.server, record.get("user") or None, credentials)

        return self._native(session_id, admit)

    def _native(self, session_id: str, admit: Callable[[dict[str, str]], Any]) -> Deferred:
        """A copy of a native session's record once ``admit(record)`` gave its identity (or ``_NO_COPY``).

        The copy is subscribed as the record says and listening.  While
        Redis is unreachable the answer is ``None``.
        """
        if not self.link.up:
            return succeed(None)
        found = self.link.eval(LOOKUP, [self.key(session_id)], [self._lease_ms(None)])

        def copy(flat: list[str] | None) -> Session | Deferred | None:
            local = self.server.dispatcher.find(session_id)
            if local is not None:
                return local if local.format == P.FORMAT_JSON else None
            try:
                record = _readable(_as_dict(flat))
            except Unreadable as e:
                self.log.warn("session {id}: record unreadable ({error}): not used",
                              id=session_id, error=str(e)[:200])
                return None
            if record.get("format") != P.FORMAT_JSON or record.get("ended") == "1":
                return None
            return then(admit(record), lambda identity: None if identity is _NO_COPY
                        else self._native_copy(session_id, record, identity))

        def unavailable(reason: Any) -> None:
            import txredisapi

            reason.trap(txredisapi.RedisError)  # not a cancel: a client gone meanwhile gets nothing
            self.log.warn("native session lookup failed: {e}", e=reason.getErrorMessage())
            return None

        return found.addCallbacks(copy, unavailable)

    def _native_copy(self, session_id: str, record: dict[str, str],
                     identity: Identity | None) -> Session | None:
        local = self.server.dispatcher.find(session_id)
        if local is not None:  # made meanwhile by another request of the session
            return local if local.format == P.FORMAT_JSON else None
        session = self._make(session_id, record, identity)
        if record.get("key"):
            session.data[SESSION_KEY] = record["key"]
        session.data[SHARED] = True
        extra = {name: value for name, value in record.items() if name not in _FIELDS}
        if extra:
            session.data[EXTRA] = extra
        self._subscribe_as(session, record)
        if session.state is SessionState.ENDED:  # disconnected by the application meanwhile
            return None
        self.server.dispatcher.listen(session, P.MODE_STREAM, self.server.clock.seconds())
        return session

    def renew(self, now: float) -> None:
        """Renew the records of sessions held here: native ones connected or active since the
        last renewal, Pushlet ones with an open data channel (their requests renew them too).

        Runs about every third of the shortest lease (a local connect makes no
        Redis call).  A record Redis lost is written again.
        """
        if now < self._next_renewal or not self.link.up:
            return
        config = self.server.config
        # Every third of the shortest lease, counting the sweep's period in (it runs this).
        since, self._next_renewal = self._renewed_at, now + max(
            0.0, min(config.native_session_timeout_secs, config.session_timeout) / 3
            - config.session_check_millis / 1000.0)
        self._renewed_at = now
        for session in list(self.server.dispatcher.sessions.values()):
            if session.state is SessionState.ENDED:
                continue
            if session.data.get(SHARED):
                if not (session.channels or session.last_active >= since):
                    continue
            elif session.format == P.FORMAT_JSON or not session.channels:
                continue
            renewed = self.link.execute("PEXPIRE", self.key(session.id), self._lease_ms(session))
            self._run(renewed.addCallback(self._renewed, session))

    def _renewed(self, found: Any, session: Session) -> None:
        if int(found) or session.state is SessionState.ENDED or not session.channels:
            return
        self.log.info("session {id}: record lost (Redis restarted?): written again", id=session.id)
        if session.data.get(SHARED):
            self.save_native(session, session.data.get(EXTRA), only_absent=True)  # type: ignore[arg-type]
        else:
            self.save(session, position=True, only_absent=True)

    def _native_subscriptions(self, session: Session) -> None:
        if (session.data.get(SHARED) and session.id not in self._syncing
                and session.state is not SessionState.ENDED):
            _pending(self._changes, session.id, self.subscriptions_changed(session))

    def _revoked(self, session: Session, _: Any) -> None:
        """A revocation changed a Pushlet session's subscriptions: write them (native ones always do)."""
        if session.format != P.FORMAT_JSON:
            self.subscriptions_changed(session)

    def subscriptions_written(self, session_id: str) -> Deferred | None:
        """Fires once the native session's last subscription change is stored and announced."""
        return _after(self._changes.get(session_id))

    # -- writing records -------------------------------------------------------

    def save(self, session: Session, *, position: bool = False,
             only_absent: bool = False) -> Deferred:
        """Write the session's record (and its position when asked); fires once written (or failed)."""
        fields = {
            "format": session.format, "mode": session.mode, "agent": session.user_agent,
            "address": session.address, "user": session.user or "",
            "binding": _binding_text(session),
            "listening": "1" if session.listening else "0", "owner": self.node,
            "subs": _subs_text(session), "made": session.made or "",
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
        """Write the subscriptions and tell the other nodes holding the session.

        The notice carries the subscriptions, so a node holding the session's
        connection applies them as it reads the notice, before any event
        published after this Deferred fired (its answer to the client).
        """
        subs = _subs_text(session)
        written = self._write(session, {"subs": subs}, only_present=True)
        told = self._run(self.backplane.send_control(f"subs {session.id} {self.node} {subs}"))
        return gatherResults([written, told])

    def ended_write(self, session_id: str) -> Deferred | None:
        """The tombstone write of a session that just ended here, to wait on before answering."""
        return _after(self._ending.get(session_id))

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
            self._end_here(local)
        return True

    def _admit(self, record: dict[str, str], credentials: Credentials) -> Any:
        """The identity of a request for a copy of ``record``, checked before the copy exists.

        :class:`ForeignSession` (403) when the credentials are not the
        session's (binding, user); the answer may be a Deferred.
        """
        self._check_binding(record, credentials)
        return identify(self.server, record.get("user") or None, credentials)

    def _check_binding(self, record: dict[str, str], credentials: Credentials) -> None:
        """:class:`ForeignSession` unless ``credentials`` are those the record is bound to (if any)."""
        if record.get("binding"):
            check_fingerprint(self.server, bytes.fromhex(record["binding"]), credentials)

    def _passive(self, session_id: str, record: dict[str, str],
                 credentials: Credentials) -> Session | Deferred:
        """A copy for control requests: subscribed as the record says, not listening."""
        if self._ended_elsewhere(session_id, record):
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        local = self.server.dispatcher.find(session_id)
        if local is not None:  # held here since the lookup began
            return local
        if not record:
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)

        def made(identity: Identity | None) -> Session:
            local = self.server.dispatcher.find(session_id)
            if local is not None:  # made meanwhile by another request of the session
                return local
            session = self._make(session_id, record, identity)
            self._subscribe_as(session, record)
            if session.state is SessionState.ENDED:  # disconnected by the application meanwhile
                raise ClientError(P.INVALID_ID.format(id=session_id), 400)
            return session

        return then(self._admit(record, credentials), made)

    def _take_over(self, session_id: str, record: dict[str, str],
                   credentials: Credentials) -> Session | Deferred:
        server = self.server
        if self._ended_elsewhere(session_id, record):
            raise ClientError(P.INVALID_ID.format(id=session_id), 400)
        local = server.dispatcher.find(session_id)
        if not record:
            if local is None:
                raise ClientError(P.INVALID_ID.format(id=session_id), 400)
            self.save(local, position=True, only_absent=True)  # Redis lost it: write it again
            return local
        if local is not None:
            if record.get("owner") == self.node and local.listening:
                return local
            return self._rebuild(local, record)

        def made(identity: Identity | None) -> Session | Deferred:
            session = server.dispatcher.find(session_id)  # made meanwhile by another request?
            return self._rebuild(session or self._make(session_id, record, identity), record)

        return then(self._admit(record, credentials), made)

    def _rebuild(self, session: Session, record: dict[str, str]) -> Session | Deferred:
        """Make the local copy what the record says; queue what its client is owed after its position."""
        server = self.server
        for channel in list(session.channels):
            channel.end(EndReason.LEAVE)  # a stale copy's channel: its client has moved on
        self._subscribe_as(session, record)
        if session.state is SessionState.ENDED:  # disconnected by the application meanwhile
            raise ClientError(P.INVALID_ID.format(id=session.id), 400)
        session.queue.clear()
        session.queue.dropped = 0
        if record.get("listening") != "1":
            return session
        now = server.clock.seconds()
        mode = record.get("mode") or P.MODE_PULL
        server.dispatcher.listen(session, mode, now)  # present on ONLINE here too
        session.mode = mode
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
        from pushpy.web.native import _by_offset, deliveries

        parsed = parse_position(position)
        after = parsed[1] if parsed and recovery.reason != "unknown epoch" else 0
        offsets = {event.offset for event in recovery.events}
        events = self.server.dispatcher.replayed(session, recovery.events, self.server.clock.seconds())
        if session.state is SessionState.ENDED:  # disconnected by the application
            raise ClientError(P.INVALID_ID.format(id=session.id), 400)
        kept = [item for item in session.queue.drain()
                if item[0].offset is None or (item[0].offset > after and item[0].offset not in offsets)]
        items = deliveries(events, list(session.subscriptions.values()))
        merged = _by_offset(items, kept)
        if not recovery.recovered:
            merged.insert(0, (self._notice(session, f"events lost: {recovery.reason}"), None))
        session.queue.refill(merged)
        session.position = position
        session.floor = live_floor(recovery, self.backplane.position)
        return session

    def _make(self, session_id: str, record: dict[str, str], identity: Identity | None) -> Session:
        """A local copy of ``record`` with the identity its request was given."""
        dispatcher = self.server.dispatcher
        session = dispatcher.join(self.server.clock.seconds(),
                                  format=record.get("format") or P.FORMAT_JS,
                                  user_agent=record.get("agent") or "unknown",
                                  address=record.get("address") or "", session_id=session_id,
                                  user=record.get("user") or None)
        session.mode = record.get("mode") or P.MODE_STREAM
        session.made = record.get("made") or None  # not known: older than any revocation
        if record.get("binding"):
            session.data[BINDING] = bytes.fromhex(record["binding"])
        if identity is not None:
            session.data[IDENTITY] = identity
        return session

    def _subscribe_as(self, session: Session, record: dict[str, str]) -> None:
        """Make the session's subscriptions those of the record (sids and positions kept).

        Then the revocations this node saw apply to them (the record may be
        older than one): the copy is ended when one was a disconnect.
        """
        dispatcher = self.server.dispatcher
        wanted = {sid: (subject, label, made) for sid, subject, label, made in _subscriptions(record)}
        self._syncing.add(session.id)  # not a change to write back
        try:
            for sid, subscription in list(session.subscriptions.items()):
                if wanted.get(sid, ())[:2] != (subscription.subject, subscription.label):
                    dispatcher.unsubscribe(session, sid)
            for sid, (subject, label, made) in wanted.items():
                if sid not in session.subscriptions:
                    try:
                        dispatcher.subscribe(session, subject, label, sid=sid, made=made)
                    except ClientError:
                        self.log.warn("session {id}: subscription {subject!r} refused here",
                                      id=session.id, subject=subject)
        finally:
            self._syncing.discard(session.id)
        dispatcher.reapply(session, self.server.clock.seconds())

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
        if (reason in (EndReason.LEAVE, EndReason.REVOKED) and session.data.get(SHARED)) or (
                reason in (EndReason.LEAVE, EndReason.DISCONNECT, EndReason.REVOKED) and not native):
            self.end_everywhere(session)
        elif reason in (EndReason.OVERFLOW, EndReason.LIVENESS) and session.data.get(SHARED):
            # Ended as on one node (its client gets a new session), unless the session has
            # moved on: a copy left behind (another node owns the record) ends alone.
            self.end_everywhere(session, only_owned=True)

    def end_everywhere(self, session: Session, *, only_owned: bool = False) -> None:
        """Tombstone the record of a session that ended here, and end its copies on other nodes.

        With ``only_owned``, only while this node owns the record (its last connect was here).
        """
        # A tombstone, not a deletion: a node still holding a copy must not take a
        # missing record for one Redis lost, and bring the session back.
        _pending(self._ending, session.id, self._run(self.link.eval(
            TOMBSTONE, [self.key(session.id)],
            [self.node, self._lease_ms(session), self.backplane.control_channel, session.id,
             self.node if only_owned else ""])))

    def moved_here(self, session: Session) -> None:
        """The session continues on this node: the other nodes end their copies (records untouched)."""
        self._run(self.backplane.send_control(f"end {session.id} {self.node}"))

    def attached(self, session: Session) -> None:
        """A client connects to its native session here: this node owns the record, and the
        other nodes close their connections of the session, as one node does (:meth:`_control`).

        Connects are numbered in Redis, so a notice that arrives late (the client came back
        here since) closes nothing.
        """
        if not session.data.get(SHARED) or not self.link.up:
            return
        before = session.data.get(_ATTACH, 0)
        session.data[_ATTACH] = None  # in flight: notices wait for the answer

        def answered(n: Any) -> None:
            session.data[_ATTACH] = int(n)
            if int(n) and session.data.get(_NEWEST, 0) > int(n):  # type: ignore[operator]
                self._superseded(session)

        def failed(reason: Any) -> Any:
            session.data[_ATTACH] = before
            return reason

        d = self.link.eval(ATTACH, [self.key(session.id)],
                           [self.node, self._lease_ms(session), self.backplane.control_channel,
                            session.id])
        self._run(d.addCallbacks(answered, failed))

    def _attached_elsewhere(self, local: Session, number: str) -> None:
        try:
            n = int(number)
        except ValueError:
            return
        local.data[_NEWEST] = max(n, local.data.get(_NEWEST, 0))  # type: ignore[call-overload]
        mine = local.data.get(_ATTACH, 0)
        if mine is not None and n > mine:  # type: ignore[operator]
            self._superseded(local)

    def check_copies(self) -> None:
        """End the local sessions whose record is a tombstone (after a reconnect: their ``end``
        notice may have been missed while pub/sub was down); one script per :data:`_BATCH`.

        A missing record is no proof of an end (Redis may have lost it): those copies stay,
        and their records are written again by :meth:`renew` while connected.
        """
        held = [session.id for session in self.server.dispatcher.sessions.values()
                if session.state is not SessionState.ENDED
                and (session.data.get(SHARED) or session.format in CODECS)]
        for start in range(0, len(held), _BATCH):
            ids = held[start:start + _BATCH]
            found = self.link.eval(ENDED, [self.key(i) for i in ids], [])
            self._run(found.addCallback(self._end_copies, ids))

    def _end_copies(self, indexes: list[Any], ids: list[str]) -> None:
        for index in indexes or []:
            session_id = ids[int(index) - 1]
            local = self.server.dispatcher.find(session_id)
            if local is not None:
                self.log.info("session {id}: ended on another node (notice missed): ended here",
                              id=session_id)
                self._end_here(local)

    def _end_here(self, local: Session) -> None:
        """End the local copy of a session ended on another node (nothing written, nothing announced)."""
        self._quiet.add(local.id)
        self.server.dispatcher.end(local, EndReason.LEAVE)

    def _superseded(self, session: Session) -> None:
        """The client connected to its session on another node: its connections here end (as
        a second connection ends the first on one node); the copy stays until its lease ends."""
        for channel in list(session.channels):
            channel.end(EndReason.LEAVE)

    def _control(self, message: str) -> None:
        """``end <id> <node>``, ``attach <id> <node> <n>`` or ``subs <id> <node> [<subscriptions>]``
        from a node (this one too)."""
        kind, session_id, node, subs = [*message.split(" ", 3), "", "", ""][:4]
        if node == self.node:
            return
        local = self.server.dispatcher.find(session_id)
        if local is None:
            return
        if kind == "end":
            self._end_here(local)
        elif kind == "attach":
            self._attached_elsewhere(local, subs)
        elif kind == "subs" and subs:
            self._resync(session_id, {"subs": subs})
        elif kind == "subs":  # a notice without the subscriptions: read them from the record
            found = self.link.eval(LOOKUP, [self.key(session_id)], [self._lease_ms(local)])
            self._run(found.addCallback(lambda record: self._resync(session_id, _as_dict(record))))

    def _resync(self, session_id: str, record: dict[str, str]) -> None:
        local = self.server.dispatcher.find(session_id)
        if local is None or not record.get("subs"):
            return
        try:
            self._subscribe_as(local, record)
        except Unreadable as e:
            self.log.warn("session {id}: unreadable subscriptions ({error})", id=session_id,
                          error=str(e)[:200])

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


def _subs_text(session: Session) -> str:
    """The session's subscriptions as record text: ``[[sid, subject, label, made], ...]``."""
    return json.dumps([[s.sid, s.subject, s.label, s.made] for s in session.subscriptions.values()])


def _subscriptions(record: dict[str, str]) -> list[tuple[str, str, str | None, str | None]]:
    """The subscriptions of a record (:func:`_subs_text`; ``made`` optional); else :class:`Unreadable`."""
    try:
        items = json.loads(record.get("subs") or "[]")
    except ValueError:
        raise Unreadable("subs is not JSON") from None
    if not isinstance(items, list) or not all(
            isinstance(item, list) and len(item) in (3, 4) and isinstance(item[0], str) and item[0]
            and isinstance(item[1], str) and all(v is None or isinstance(v, str) for v in item[2:])
            for item in items):
        raise Unreadable("subs is not a list of [sid, subject, label, made]")
    return [(item[0], item[1], item[2], item[3] if len(item) > 3 else None) for item in items]


def _readable(record: dict[str, str]) -> dict[str, str]:
    """``record`` when a node can make a session of it (or it is none, or a tombstone)."""
    if not record or record.get("ended") == "1":
        return record
    if record.get("format") != P.FORMAT_JSON and record.get("format") not in CODECS:
        raise Unreadable(f"unknown format {str(record.get('format'))[:40]!r}")
    if record.get("mode", "") not in ("", *P.MODES):
        raise Unreadable(f"unknown mode {record['mode'][:40]!r}")
    if record.get("position") and parse_position(record["position"]) is None:
        raise Unreadable("malformed position")
    try:
        bytes.fromhex(record.get("binding", ""))
    except ValueError:
        raise Unreadable("binding is not hex") from None
    _subscriptions(record)
    return record


def _pending(writes: dict[str, Deferred], session_id: str, d: Deferred) -> None:
    """Keep ``d`` in ``writes`` under ``session_id`` until it fires."""
    writes[session_id] = d

    def done(result: Any) -> Any:
        if writes.get(session_id) is d:
            del writes[session_id]
        return result

    d.addBoth(done)


def _after(d: Deferred | None) -> Deferred | None:
    """A new Deferred firing (with ``None``) when ``d`` does; ``None`` when there is nothing to wait for."""
    if d is None:
        return None
    after: Deferred = Deferred()
    d.addBoth(lambda result: (after.callback(None), result)[1])
    return after


def _as_dict(flat: list[str] | None) -> dict[str, str]:
    items = list(flat or [])
    return dict(zip(items[::2], items[1::2], strict=False))


def shared_sessions(server: PushServer) -> SharedSessions | None:
    """Shared sessions for ``server`` when its backplane is Redis, else ``None``."""
    from pushpy.cluster.redis_backplane import RedisBackplane

    if isinstance(server.backplane, RedisBackplane):
        return SharedSessions(server, server.backplane)
    return None


