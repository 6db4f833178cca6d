"""Pushlet data channels: the response of ``listen``, ``join-listen`` and ``refresh``.

:class:`StreamChannel` (mode ``stream``, spec 7.2) keeps one response open:
ack, ``hb`` with ``p_seq=1``, then events as they come and an ``hb`` after
each read timeout without data.  :class:`RefreshChannel` (modes ``pull`` and
``poll``, spec 7.3, 7.4 and fix 14.2.2) answers one complete document ending
with ``refresh``.  Both notice a client that goes away at once through
``notifyFinish`` (fix 14.2.4) and write nothing after that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from pushpy import protocol as P
from pushpy.core.sessions import Delivery, EndReason, Session, SessionState, end_text
from pushpy.web.http import write_now
from pushpy.wire.pushlet import PushletCodec

if TYPE_CHECKING:
    from pushpy.server import PushServer


class _Channel:
    __slots__ = ("codec", "deadline", "done", "queued_deadline", "request", "seq", "server",
                 "session")

    def __init__(self, server: PushServer, request: Request, session: Session,
                 codec: PushletCodec) -> None:
        self.server = server
        self.request = request
        self.session = session
        self.codec = codec
        self.seq = 0
        self.done = False
        self.deadline: float | None = None
        self.queued_deadline: float | None = None

    def _encode(self, items: list[Delivery]) -> list[bytes]:
        """The parts of each item's copy, numbered on: join them for the bytes."""
        parts = self.codec.data_parts
        out: list[bytes] = []
        seq = self.seq
        for event, subscription in items:
            seq += 1
            out += parts(event, seq, subscription)
        self.seq = seq
        return out

    def _heartbeat(self, now: float) -> bytes:
        self.seq += 1
        return self.codec.event({P.P_EVENT: P.HEARTBEAT, P.P_TIME: str(int(now)),
                                 P.P_SEQ: str(self.seq)})

    def _abort(self, now: float, reason: EndReason) -> bytes:
        """``abort``; with the application's ``p_reason`` when it ended the session."""
        self.seq += 1
        fields = {P.P_EVENT: P.ABORT, P.P_TIME: str(int(now)), P.P_SEQ: str(self.seq)}
        if reason is EndReason.REVOKED:
            fields[P.P_REASON] = end_text(self.session, reason)
        return self.codec.event(fields)

    def _watch(self) -> None:
        self.session.attach(self)
        self.request.notifyFinish().addBoth(self._finished)

    def _finished(self, result: object) -> None:
        """The response is over: finished by us, or the client went away."""
        self.done = True
        server = self.server
        server.scheduler.set(self, None)
        session = self.session
        session.detach(self)
        if session.state is SessionState.ENDED:
            return
        # An open data channel keeps the session alive: the lease runs from its end.
        session.last_active = server.clock.seconds()
        if (isinstance(result, Failure) and not session.channels
                and session.format != P.FORMAT_JSON
                and server.config.session_end_on_disconnect):
            server.dispatcher.end(session, EndReason.DISCONNECT)

    def _close(self) -> None:
        if not self.done:
            self.done = True
            self.server.scheduler.set(self, None)
            self.session.detach(self)
            request = self.request
            if request.producer is self:
                request.unregisterProducer()
            request.finish()


class ProducingChannel:
    """What every long-lived channel shares: the heartbeat timer and back-pressure.

    As an ``IPushProducer`` of its connection, the channel stops taking events
    from the session queue while the client is not reading (so the overflow
    policy applies) and starts again when it drains.
    """

    __slots__ = ()

    def _rearm(self, now: float) -> None:
        self.server.scheduler.postpone(self, now + self.server.config.queue_read_timeout_millis / 1000.0)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.session.queue:
            self.wake()

    def stopProducing(self) -> None:
        self.paused = True


@implementer(IPushProducer)
class StreamChannel(ProducingChannel, _Channel):
    """A ``stream``-mode response, open until the session or the client ends it."""

    __slots__ = ("paused",)

    def __init__(self, server: PushServer, request: Request, session: Session,
                 codec: PushletCodec) -> None:
        super().__init__(server, request, session, codec)
        self.paused = False

    def start(self, ack: dict[str, str], now: float) -> None:
        """Write the ack and the first ``hb``, then wait for events."""
        self.request.write(self.codec.opening + self.codec.event(ack) + self._heartbeat(now))
        self._rearm(now)
        self.request.registerProducer(self, True)
        self._watch()

    def wake(self) -> None:
        if self.done or self.paused:
            return
        if self.session.queue.full():
            self.flush()  # now: waiting for the end of the turn would drop events
        else:
            self.server.scheduler.soon(self)

    def send(self, data: bytes) -> None:
        """Write ``data`` to the open response.

        After the headers, the chunk is framed here and written straight to the
        transport: ``Request.write`` costs more than the rest of a delivery.
        """
        request = self.request
        channel = request.channel
        if channel is None or not request.startedWriting or request.method == b"HEAD":
            request.write(data)
        elif request.chunked:
            write_now(channel, b"%x\r\n%s\r\n" % (len(data), data))
        else:
            write_now(channel, data)

    def flush(self) -> None:
        """Write every queued event in one write."""
        if self.done or self.paused:
            return
        now = self.server.clock.seconds()
        items = self.session.take(now)
        if items:
            self.send(b"".join(self._encode(items)))
            self._rearm(now)

    def fire(self, now: float) -> None:
        """The read timeout passed without data: write an ``hb``."""
        if self.done:
            return
        if self.session.queue and not self.paused:
            self.flush()
            return
        self.session.last_active = self.session.last_alive = now
        self.send(self._heartbeat(now))
        self._rearm(now)

    def end(self, reason: EndReason) -> None:
        if self.done:
            return
        if reason.aborts:
            self.send(self._abort(self.server.clock.seconds(), reason))
        self._close()



class RefreshChannel(_Channel):
    """A ``pull``/``poll`` response: one complete document ending with ``refresh``."""

    __slots__ = ("ack", "url")

    def __init__(self, server: PushServer, request: Request, session: Session,
                 codec: PushletCodec, url: str) -> None:
        super().__init__(server, request, session, codec)
        self.url = url
        self.ack = b""

    def first(self, ack: dict[str, str], now: float) -> None:
        """The first response of a pull/poll listen: ack and ``refresh`` only."""
        self._write(self.codec.opening + self.codec.event(ack) + self._refresh(now))

    def start(self, ack: dict[str, str], now: float) -> None:
        """A ``refresh``: answer now if anything is queued (or in poll mode), else wait."""
        self.ack = self.codec.event(ack)
        if self.session.queue or self.session.mode == P.MODE_POLL:
            self._respond(self.session.take(now), now)
            return
        self.session.last_active = self.session.last_alive = now
        self.server.scheduler.set(self, now + self.server.config.queue_read_timeout_millis / 1000.0)
        self._watch()

    def wake(self) -> None:
        if self.done:
            return
        if self.session.queue.full():
            self.flush()  # now: waiting for the end of the turn would drop events
        else:
            self.server.scheduler.soon(self)

    def flush(self) -> None:
        if self.done or not self.session.queue:
            return
        now = self.server.clock.seconds()
        self._respond(self.session.take(now), now)

    def fire(self, now: float) -> None:
        """The read timeout passed: answer with one ``hb``."""
        if not self.done:
            self._respond(self.session.take(now), now)

    def end(self, reason: EndReason) -> None:
        if self.done:
            return
        now = self.server.clock.seconds()
        if reason.aborts:
            self._write(self.codec.opening + self.ack + self._abort(now, reason) + self.codec.closing)
        else:
            self._write(self.codec.opening + self.ack + self._refresh(now))

    def _respond(self, items: list[Delivery], now: float) -> None:
        body = self._encode(items) if items else [self._heartbeat(now)]
        data = b"".join([self.codec.opening, self.ack, *body, self._refresh(now)])
        shared = self.server.shared_sessions
        if shared is None:
            self._write(data)
            return
        # Every event up to the node's position that the session matches was queued, and
        # is taken now: the next refresh, on any node, reads the log from there.  The
        # position is stored before the response is written (never twice).
        session = self.session
        previous = session.position
        session.position = stored = covered_position(self.server.backplane.position, session.floor)
        self.server.scheduler.set(self, None)
        session.detach(self)
        written = shared.save_position(session)
        written.addBoth(lambda _: self._position_stored(data, items, previous, stored))

    def _position_stored(self, data: bytes, items: list[Delivery], previous: str | None,
                         stored: str) -> None:
        """Write the response now that its position is stored, unless its client left meanwhile.

        Then its events are given back (:meth:`SharedSessions.not_written`) for
        the client's next request, on this node or another.
        """
        if not self.request._disconnected:
            self._write(data)
            return
        if not self.done:  # gone before the response watched for it
            self._finished(Failure(ConnectionLost("the client went away")))
        if self.session.state is not SessionState.ENDED:
            self.server.shared_sessions.not_written(self.session, items, previous, stored)

    def _refresh(self, now: float) -> bytes:
        config = self.server.config
        if self.session.mode == P.MODE_POLL:
            low, high = config.poll_refresh_wait_min_millis, config.poll_refresh_wait_max_millis
        else:
            low, high = config.pull_refresh_wait_min_millis, config.pull_refresh_wait_max_millis
        return self.codec.refresh(self.url, self.server.random.randint(low, high), now)

    def _write(self, body: bytes) -> None:
        if self.done:
            return
        request = self.request
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        request.write(body)
        self._close()


def refresh_url(request: Request, session_id: str) -> str:
    """``<request path>?p_id=<id>&p_event=refresh`` (spec 7.1)."""
    path = request.path.decode("latin-1")
    return f"{path}?{P.P_ID}={session_id}&{P.P_EVENT}={P.REFRESH}"


def covered_position(position: str, floor: int | None) -> str:
    """The node's ``position``, or ``floor`` in its epoch when a log read queued events beyond it."""
    epoch, _, offset = position.rpartition(":")
    if floor is None or not offset.isdigit() or int(offset) >= floor:
        return position
    return f"{epoch}:{floor}"
