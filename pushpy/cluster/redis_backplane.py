# test-case-name: tests.cluster.test_redis_backplane
"""The Redis backplane: one ordered log per cluster, live fan-out to every node.

Publishing runs one Lua script that takes the log's next **offset** (``INCR``)
for every event, multicast or routed (unicast, user, broadcast, kept with their target),
appends the event to a Redis Stream (``XADD`` with id ``offset-0`` and an
approximate ``MAXLEN``) and ``PUBLISH``es it, all atomically: every node sees
the same events in the same order, and an event is in the log before any node
hears of it.  Each node delivers to its receivers only what arrives through
pub/sub, so the publishing node is no different from the others.

The log has an **epoch**, a random id kept in Redis beside it; when the log is
lost (Redis restarted without persistence, the keys deleted) the next publish
or connection starts a new epoch, so old resume tokens get ``recovered: false``.

When Redis is unreachable the backplane is ``degraded``: publishes wait in a
bounded outbox (published, in order, after reconnect; refused when it is full),
local sessions stay connected, and on reconnect the node reads the log from the
last offset it saw, so nothing published meanwhile is skipped.  Every publish
carries an id (this node's id and a counter, a small field of its log entry):
when the connection drops while publishes are in flight, the node first asks
Redis (one script) which of them it stored, completes those with their offset
and sends only the others again, in order, so none is stored twice.  When it cannot
be sure (the epoch changed, the log was trimmed past that offset) it tells its
gap listeners, which warn every local session.  See ``docs/scaling.md``.

Besides the events, nodes talk on pub/sub: the control channel (session
notices, to every node) and one direct channel per node (:meth:`RedisBackplane.send_direct`,
used to relay Engine.IO polls to the node holding the session: :mod:`pushpy.web.eiorelay`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pushpy.cluster.link import RedisLink, Script
from pushpy.cluster.presence import NODE_TTL, RedisPresence
from pushpy.core.events import Event, Route
from pushpy.core.history import Recovery, parse_position, wanted
from pushpy.errors import BackplaneUnavailable, ClientError
from pushpy.interfaces import IBackplane

Receiver = Callable[[Event], object]

#: Makes sure the log has an epoch: a new one when there is none, or when the
#: stream is gone although offsets were handed out (the log was lost).
_ENSURE = """
local epoch = redis.call('GET', KEYS[2])
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if (not epoch) or (seq > 0 and redis.call('EXISTS', KEYS[1]) == 0) then
  epoch = ARGV[1]
  seq = 0
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[3], 0)
end
"""

ENSURE = Script(_ENSURE + "return {epoch, tostring(seq)}")

#: KEYS: log, epoch, seq, channel; ARGV: new epoch, maxlen, payload, publish id.
PUBLISH = Script(_ENSURE + """
local offset = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'e', ARGV[3], 'i', ARGV[4])
redis.call('PUBLISH', KEYS[4], epoch .. ' ' .. offset .. ' ' .. ARGV[3])
return {epoch, tostring(offset)}
""")

#: KEYS: log, epoch, seq; ARGV: new epoch, exclusive start id.
SINCE = Script(_ENSURE + """
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], '+')
return {epoch, tostring(seq), first, entries}
""")


#: KEYS: log, epoch; ARGV: epoch and offset after which to look, publish ids.
#: The epoch, the oldest entry, and the publish id and entry id of each one stored.
FIND = Script("""
local epoch = redis.call('GET', KEYS[2]) or ''
local start = '-'
if epoch == ARGV[1] then start = '(' .. ARGV[2] .. '-0' end
local wanted = {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local found = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+')) do
  local values = entry[2]
  for j = 1, #values - 1, 2 do
    if values[j] == 'i' and wanted[values[j + 1]] then
      table.insert(found, values[j + 1])
      table.insert(found, entry[1])
    end
  end
end
return {epoch, redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1), found}
""")


def encode(event: Event, now: float) -> str:
    """The JSON text of an event as the log and pub/sub carry it."""
    return json.dumps([event.fields, event.route.value, event.target, round(now, 3)],
                      separators=(",", ":"), ensure_ascii=False)


def decode(payload: str, offset: int | None, epoch: str | None) -> tuple[Event, float]:
    """An event and its publish time from :func:`encode`'s text."""
    fields, route, target, stamp = json.loads(payload)
    return Event(fields, route=Route(route), target=target, offset=offset, epoch=epoch), stamp


class _Outgoing:
    """An event waiting to be stored, and whether its script is in flight.

    ``unsure``: it was sent on a connection lost before Redis answered, so it
    may be stored already (:meth:`RedisBackplane._check_unsure`).
    """

    __slots__ = ("done", "event", "sent", "stamp", "uid", "unsure")

    def __init__(self, event: Event, stamp: float, done: Deferred, uid: str) -> None:
        self.event = event
        self.stamp = stamp
        self.done = done
        self.uid = uid
        self.sent = False
        self.unsure = False


@implementer(IBackplane)
class RedisBackplane:
    """An :class:`~pushpy.interfaces.IBackplane` shared by every node through Redis.

    :param url: ``redis://[:password@]host[:port][/db]``.
    :param prefix: prefix of every key and channel (one cluster per prefix).
    :param log_size: events kept in the log (approximately; ``XADD MAXLEN ~``).
    :param history_ttl: seconds an event stays usable for resume and history.
    :param outbox_size: publishes kept while Redis is unreachable.
    :param node_ttl: seconds after its last heartbeat a node counts as dead
        (heartbeat every third of it); its users' presence ``leave`` is announced then.
    """

    log = Logger()

    def __init__(self, url: str, *, reactor: Any = None, prefix: str = "pushpy",
                 log_size: int = 10_000, history_ttl: float = 600.0,
                 outbox_size: int = 10_000, node_ttl: float = NODE_TTL,
                 now: Callable[[], float] = time.time) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.reactor = reactor
        self.url = url
        self.prefix = prefix
        self.keys = [f"{prefix}:log", f"{prefix}:epoch", f"{prefix}:seq"]
        self.channel = f"{prefix}:events"
        #: Channel of session notices between nodes (:mod:`pushpy.cluster.sessions`).
        self.control_channel = f"{prefix}:control"
        #: Called with each control message (a str) from any node, this one included.
        self.control_listeners: list[Callable[[str], object]] = []
        self.log_size = max(1, log_size)
        self.history_ttl = history_ttl
        self.outbox_size = outbox_size
        self.now = now
        self.epoch: str = "none"
        #: Offset of the newest event this node has delivered (in ``epoch``).
        self.last_offset = 0
        self._receivers: list[Receiver] = []
        #: Called with a reason when this node may have missed events.
        self.gap_listeners: list[Callable[[str], object]] = []
        self._outbox: deque[_Outgoing] = deque()
        self._published = 0  # the counter of publish ids
        #: (epoch, offset) after which every publish sent on this connection is stored.
        self._base: tuple[str, int] = ("", 0)
        #: ``_base`` of the connection lost with publishes in flight; None when there were none.
        self._unsure: tuple[str, int] | None = None
        self._checking = False
        self._pending: list[tuple[str, str]] | None = None  # pub/sub held during catch-up
        self.reconnects = 0
        self.link = RedisLink(url, reactor, on_up=self._up, on_down=self._down,
                              on_message=self._message)
        #: This process's id among the nodes (presence members, session owners).
        self.node = secrets.token_hex(6)
        self.presence_store = RedisPresence(self.link, prefix, self.node, node_ttl)
        #: This node's own channel: what other nodes send to it alone (:meth:`send_direct`).
        self.direct_channel = self.direct_channel_of(self.node)
        #: Handlers of direct messages by kind, called with the message's text.
        self.direct_handlers: dict[str, Callable[[str], object]] = {}
        #: Called with (subject, user) when a dead node's user is now absent from subject.
        self.departure_listeners: list[Callable[[str, str], object]] = []
        #: Called when this node's presence members may have been removed (reaped, Redis lost).
        self.rejoin_listeners: list[Callable[[], object]] = []
        #: Called after each reconnect, once caught up (not after the first connect): what
        #: this node missed or could not write meanwhile may need doing.
        self.reconnect_listeners: list[Callable[[], object]] = []
        self._heartbeat: Any = None
        self._ready: list[Deferred] = []

    # -- state ---------------------------------------------------------------

    @property
    def position(self) -> str:
        return f"{self.epoch}:{self.last_offset}"

    @property
    def connected(self) -> bool:
        """True when Redis is reachable and this node is caught up."""
        return self.link.up and self._pending is None

    @property
    def state(self) -> str:
        """``up``, ``degraded`` (Redis unreachable or catching up) or ``stopped``."""
        if not self.link.running:
            return "stopped"
        return "up" if self.connected else "degraded"

    def start(self) -> Deferred:
        """Connect; the Deferred fires once connected and caught up the first time."""
        if self.connected:
            return succeed(self)
        d: Deferred = Deferred()
        self._ready.append(d)
        if not self.link.running:
            self.link.start()
        return d

    def stop(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self.link.up:
            self.presence_store.forget_node().addErrback(lambda _: None)
        self.link.stop()
        outbox, self._outbox = self._outbox, deque()
        self._unsure, self._checking = None, False
        for entry in outbox:
            entry.done.errback(ClientError("the backplane stopped before this event was published", 503))

    # -- IBackplane ------------------------------------------------------------

    def attach(self, receiver: Receiver) -> None:
        self._receivers.append(receiver)

    def detach(self, receiver: Receiver) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    def publish(self, event: Event) -> Deferred:
        """Publish through Redis; the Deferred fires with the stored event.

        While Redis is unreachable the event waits in the outbox (in order);
        a full outbox refuses it with a 503 :class:`ClientError`.
        """
        d: Deferred = Deferred()
        if len(self._outbox) >= self.outbox_size:
            return fail(ClientError("the backplane is unavailable and its outbox is full", 503))
        self._published += 1
        self._outbox.append(_Outgoing(event, self.now(), d, f"{self.node}{self._published:x}"))
        self._flush()
        return d

    def since(self, position: str | None, matches: Callable[[str], bool],
              owners: frozenset[tuple[str, str]] = frozenset()) -> Deferred:
        """The events after ``position`` from the shared log.

        Multicast ones on subjects ``matches`` accepts, routed ones to the
        targets in ``owners`` (:func:`~pushpy.core.history.owner_keys`).
        """
        parsed = parse_position(position)
        if parsed is None:
            return succeed(Recovery(recovered=False, reason="malformed position"))
        epoch, offset = parsed
        d = self.link.eval(SINCE, self.keys, [self._new_epoch(), f"({offset}-0"])
        return d.addCallbacks(self._recovery, _unavailable, callbackArgs=(epoch, offset, matches, owners))

    def history(self, subject: str, count: int) -> Deferred:
        """The newest ``count`` events of exactly ``subject``, oldest first (scans the log)."""
        if count <= 0:
            return succeed([])
        d = self.link.execute("XREVRANGE", self.keys[0], "+", "-", "COUNT", self.log_size)

        def pick(entries: list[Any]) -> list[Event]:
            horizon = self.now() - self.history_ttl
            found = []
            for entry_id, values in entries or []:
                event, stamp = decode(_entry_payload(values), _offset_of(entry_id), self.epoch)
                if stamp < horizon:
                    break
                if event.route is Route.MULTICAST and event.subject == subject:
                    found.append(event)
                    if len(found) == count:
                        break
            found.reverse()
            return found

        return d.addCallbacks(pick, _unavailable)

    def presence_enter(self, subject: str, user: str, member: str) -> Deferred:
        """Add ``member`` of ``user`` on ``subject`` (this node's); True when the user was absent.

        Fails with :class:`~pushpy.errors.BackplaneUnavailable` while Redis is unreachable
        (as do the other presence writes).
        """
        return self.presence_store.enter(subject, user, member).addErrback(_presence_unavailable)

    def presence_leave(self, subject: str, user: str, member: str) -> Deferred:
        """Remove ``member``; True when ``user`` has no member left on ``subject`` on any live node."""
        return self.presence_store.leave(subject, user, member).addErrback(_presence_unavailable)

    def presence_sync(self, members: list[tuple[str, str, str]]) -> Deferred:
        """Make this node's members exactly ``members`` ((subject, user, member)); fires with the
        (subject, user, ``join``/``leave``) changes to announce."""
        return self.presence_store.sync(members).addErrback(_presence_unavailable)

    def presence(self, subject: str) -> Deferred:
        """``{user: members}`` on ``subject`` over the live nodes."""
        return self.presence_store.members(subject)

    # -- publishing ------------------------------------------------------------

    def _flush(self) -> None:
        """Send every unsent outbox entry now, pipelined on the one command connection.

        Redis runs one connection's commands in the order sent, so offsets
        follow the publish order without waiting for each answer.  Publishes
        that were in flight when a connection was lost are checked first.
        """
        if not self.connected or self._checking:
            return
        if self._unsure is not None:
            self._check_unsure()
            return
        for entry in self._outbox:
            if not entry.sent:
                entry.sent = True
                self._send(entry)

    def _send(self, entry: _Outgoing) -> None:
        event = entry.event
        sent = self.link.eval(PUBLISH, [*self.keys, self.channel], [
            self._new_epoch(), self.log_size, encode(event, entry.stamp), entry.uid])

        def done(result: list[str]) -> None:
            self._outbox.remove(entry)  # the head, but for a refused entry before it
            epoch, offset = result[0], int(result[1])
            self._base = (epoch, offset)  # later publishes come after it
            entry.done.callback(event.stored(offset, epoch))

        def failed(reason: Any) -> None:
            import txredisapi

            if reason.check(txredisapi.ConnectionError):
                # Kept in the outbox; Redis may have run it: checked after reconnect.
                entry.sent, entry.unsure = False, True
                if self._unsure is None:
                    self._unsure = self._base
                return
            self._outbox.remove(entry)
            self.log.failure("publishing to redis failed", reason)
            entry.done.errback(ClientError("the backplane refused the event", 503))

        sent.addCallbacks(done, failed)

    def _check_unsure(self) -> None:
        """Ask Redis which of the publishes in flight on a lost connection it stored.

        One script scans the log after the last offset that connection had
        confirmed (the whole log when the epoch changed since) for their ids.
        """
        unsure = [entry for entry in self._outbox if entry.unsure]
        epoch, after = self._unsure or ("", 0)
        self._checking = True
        d = self.link.eval(FIND, self.keys[:2], [epoch, after, *(entry.uid for entry in unsure)])
        d.addCallbacks(self._checked, self._check_failed, callbackArgs=(unsure, epoch, after))

    def _checked(self, result: list[Any], unsure: list[_Outgoing], epoch: str, after: int) -> None:
        """Complete the publishes Redis had stored; the others are sent again, in order."""
        current, first, pairs = result[0], result[1], result[2] or []
        lower = after if current == epoch else 0
        if first and _offset_of(first[0][0]) > lower + 1:
            self.log.warn("backplane: the log was trimmed past publishes in flight;"
                          " those not found are sent again (they may be stored twice)")
        where = dict(zip(pairs[::2], pairs[1::2], strict=False))
        stored = []
        for entry in unsure:
            entry.unsure = False
            if entry.uid in where:
                self._outbox.remove(entry)
                stored.append(entry)
        self._unsure, self._checking = None, False
        for entry in stored:
            entry.done.callback(entry.event.stored(_offset_of(where[entry.uid]), current))
        self._flush()

    def _check_failed(self, reason: Any) -> None:
        import txredisapi

        self._checking = False
        if reason.check(txredisapi.ConnectionError):
            return  # still unsure: checked again after the next reconnect
        self.log.failure("checking publishes in flight failed: sending them again", reason)
        for entry in self._outbox:
            entry.unsure = False
        self._unsure = None
        self._flush()

    def _new_epoch(self) -> str:
        return secrets.token_hex(4)

    # -- receiving -------------------------------------------------------------

    def send_control(self, message: str) -> Deferred:
        """Publish a control message to every node (fails while Redis is unreachable)."""
        return self.link.execute("PUBLISH", self.control_channel, message)

    def direct_channel_of(self, node: str) -> str:
        return f"{self.prefix}:direct:{node}"

    def send_direct(self, node: str, kind: str, message: str) -> Deferred:
        """Send ``message`` to node ``node`` alone (its ``kind`` handler gets it).

        Fires with the number of nodes that got it: 0 when that node is gone
        (or not subscribed right now); fails while Redis is unreachable.
        """
        return self.link.execute("PUBLISH", self.direct_channel_of(node), f"{kind} {message}")

    def listening(self, nodes: list[str]) -> Deferred:
        """Which of ``nodes`` are subscribed to their direct channel now: ``{node: bool}``."""
        d = self.link.execute("PUBSUB", "NUMSUB", *[self.direct_channel_of(n) for n in nodes])

        def found(flat: list[Any]) -> dict[str, bool]:
            counts = dict(zip(flat[::2], flat[1::2], strict=False))
            return {node: int(counts.get(self.direct_channel_of(node), 0)) > 0 for node in nodes}

        return d.addCallback(found)

    def _message(self, channel: str, message: str) -> None:
        if channel == self.control_channel:
            for listener in list(self.control_listeners):
                self._hand(listener, message)
            return
        if channel == self.direct_channel:
            kind, _, text = message.partition(" ")
            handler = self.direct_handlers.get(kind)
            if handler is not None:
                self._hand(handler, text)
            return
        if channel != self.channel:
            return
        epoch, _, rest = message.partition(" ")
        offset_text, _, payload = rest.partition(" ")
        if self._pending is not None:
            self._pending.append((epoch, message))
            return
        self._deliver(epoch, int(offset_text), payload)

    def _hand(self, listener: Callable[..., object], *args: str) -> None:
        try:
            listener(*args)
        except Exception:
            self.log.failure("backplane message listener failed")

    def _deliver(self, epoch: str, offset: int, payload: str) -> None:
        if offset:
            if epoch == self.epoch and offset <= self.last_offset:
                return  # already delivered (seen during catch-up)
            if epoch != self.epoch:
                self._epoch_changed(epoch)
            self.last_offset = offset
        event, _ = decode(payload, offset or None, epoch if offset else None)
        for receiver in list(self._receivers):
            try:
                receiver(event)
            except Exception:
                self.log.failure("backplane receiver failed")

    def _epoch_changed(self, epoch: str) -> None:
        old = self.epoch
        self.epoch, self.last_offset = epoch, 0
        if old != "none":
            self._gap("backplane log replaced (new epoch)")

    def _gap(self, reason: str) -> None:
        self.log.warn("backplane gap: {reason}", reason=reason)
        for listener in list(self.gap_listeners):
            listener(reason)

    # -- connection state --------------------------------------------------------

    def _down(self, reason: str) -> None:
        self._pending = None

    def _up(self) -> None:
        """Subscribe, catch up from the log, deliver what pub/sub held meanwhile, publish."""
        self._pending = []
        link = self.link
        if self._heartbeat is None:
            from twisted.internet.task import LoopingCall

            self._heartbeat = LoopingCall(self._beat)
            self._heartbeat.clock = self.reactor
            self._heartbeat.start(self.presence_store.node_ttl / 3, now=False)
        self._beat()
        d = link.subscriber.subscribe([self.channel, self.control_channel, self.direct_channel])
        d.addCallback(lambda _: link.eval(ENSURE, self.keys, [self._new_epoch()]))
        d.addCallback(self._catch_up)
        d.addCallbacks(self._caught_up, self._catch_up_failed)

    def _beat(self) -> None:
        """Renew this node's heartbeat, re-enter its members if they were lost, reap dead nodes."""
        if not self.link.up:
            return
        d = self.presence_store.heartbeat()
        d.addCallback(self._listed)
        d.addCallback(lambda _: self.presence_store.reap())
        d.addCallback(self._departed)
        d.addErrback(lambda f: self.log.warn("presence heartbeat failed: {error}",
                                             error=f.getErrorMessage()))

    def _listed(self, was_absent: bool) -> None:
        if was_absent:
            for listener in list(self.rejoin_listeners):
                listener()

    def _departed(self, pairs: list[tuple[str, str]]) -> None:
        for subject, user in pairs:
            self.log.info("presence: {user} left {subject} (node gone)", user=user, subject=subject)
            for listener in list(self.departure_listeners):
                listener(subject, user)

    def _catch_up(self, result: list[str]) -> Deferred | None:
        epoch, seq = result[0], int(result[1])
        self._base = (epoch, seq)  # this connection's publishes will come after
        if self.epoch == "none":
            self.epoch, self.last_offset = epoch, seq  # first connection: start from now
            return None
        if epoch != self.epoch:
            self._epoch_changed(epoch)  # gap; read the new log from its start
        start = self.last_offset
        d = self.link.eval(SINCE, self.keys, [self._new_epoch(), f"({start}-0"])

        def deliver(found: list[Any]) -> None:
            epoch, seq, first, entries = found[0], int(found[1]), found[2], found[3]
            if epoch != self.epoch:
                self._epoch_changed(epoch)
                self.last_offset = seq
                return
            oldest = _offset_of(first[0][0]) if first else seq + 1
            if oldest > start + 1 and seq > start:
                self._gap("backplane log trimmed or lost past this node's position")
            for entry_id, values in entries or []:
                self._deliver(epoch, _offset_of(entry_id), _entry_payload(values))
            self.last_offset = max(self.last_offset, seq)

        return d.addCallback(deliver)

    def _caught_up(self, _: object) -> None:
        self.reconnects += 1
        pending, self._pending = self._pending or [], None
        for epoch, message in pending:
            _, _, rest = message.partition(" ")
            offset_text, _, payload = rest.partition(" ")
            self._deliver(epoch, int(offset_text), payload)
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(self)
        self._flush()
        if self.reconnects > 1:
            for listener in list(self.reconnect_listeners):
                self._hand(listener)

    def _catch_up_failed(self, reason: Any) -> None:
        self.log.warn("redis catch-up failed: {error}", error=reason.getErrorMessage())
        if self.link.up and self.link.commands is not None:
            self.link.commands.transport.loseConnection()  # reconnect and try again

    # -- results -----------------------------------------------------------------

    def _recovery(self, result: list[Any], epoch: str, offset: int,
                  matches: Callable[[str], bool], owners: frozenset[tuple[str, str]]) -> Recovery:
        current, seq, first, entries = result[0], int(result[1]), result[2], result[3]
        if epoch != current:
            return Recovery(recovered=False, reason="unknown epoch")
        if offset > seq:
            return Recovery(recovered=False, reason="position ahead of history")
        recovered, reason = True, None
        oldest = _offset_of(first[0][0]) if first else seq + 1
        if oldest > offset + 1 and seq > offset:
            recovered, reason = False, "history trimmed"
        horizon = self.now() - self.history_ttl
        events = []
        for entry_id, values in entries or []:
            event, stamp = decode(_entry_payload(values), _offset_of(entry_id), current)
            if not wanted(event, matches, owners):
                continue
            if stamp < horizon:
                recovered, reason = False, "history expired"
                continue
            events.append(event)
        return Recovery(events=events, recovered=recovered, reason=reason, upto=seq)


def _unavailable(reason: Any) -> Any:
    """A lost or absent Redis connection, as a 503 the client may retry."""
    import txredisapi

    if reason.check(txredisapi.ConnectionError):
        raise ClientError("the backplane is unavailable: try again shortly", 503)
    return reason


def _presence_unavailable(reason: Any) -> Any:
    import txredisapi

    if reason.check(txredisapi.ConnectionError):
        raise BackplaneUnavailable(reason.getErrorMessage())
    return reason


def _offset_of(entry_id: str) -> int:
    return int(str(entry_id).partition("-")[0])


def _entry_payload(values: list[str]) -> str:
    return values[values.index("e") + 1] if "e" in values else values[1]
