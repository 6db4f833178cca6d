"""Socket.IO v5 on an Engine.IO session: namespaces, events, acks, recovery.

A :class:`Connection` handles one Engine.IO session; each namespace the
client connects to is a :class:`Socket`, backed by one pushpy session of the
dispatcher (so limits, the authorizer, metrics and shutdown apply) and
attached to it as its data channel.  Rooms are subscriptions of that session
(exact subjects, see :mod:`pushpy.socketio`); events reach a socket through
the backplane and its session queue like any other, and are written as
Socket.IO EVENT packets encoded once per event.  Connection state recovery:
the CONNECT answer carries a private ``pid``, events kept in history carry
their position as a last argument, and a client reconnecting with ``pid``
and ``offset`` gets its session back with what it missed (docs/socketio.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pushpy import protocol as P
from pushpy.auth import Credentials
from pushpy.core.events import Route
from pushpy.core.history import owner_keys, parse_position
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import ClientError
from pushpy.socketio import NAMESPACE, ROOMS
from pushpy.web.authz import adopt, authorize_join, check_binding, then
from pushpy.web.engineio import SHUTTING_DOWN, EngineSession, frames
from pushpy.web.native import _by_offset
from pushpy.web.websocket import _cookies
from pushpy.wire import socketio as S
from pushpy.wire.escape import valid_name

if TYPE_CHECKING:
    from pushpy.socketio import SocketIO

log = Logger()
#: Events of pushpy's core that are not application events.
_NOTICES = frozenset({P.RECOVERY, P.GAP, P.NACK, P.ABORT, P.UNSUBSCRIBED, P.DISCONNECTED})


class Encoded(NamedTuple):
    """An event as one namespace's sockets get it: encoded once, shared by all of them."""

    packets: list[str | bytes]
    #: The same packets as WebSocket frames.
    frames: bytes
    position: str | None
    subject: str | None
    #: The socket id an emit's ``skip_sid`` leaves out.
    skip: str | None


class Socket:
    """One namespace of one client: the data channel of its pushpy session."""

    __slots__ = ("app", "clock", "connection", "done", "engine", "key", "nsp", "rooms", "scheduler",
                 "session", "told")

    def __init__(self, app: SocketIO, connection: Connection, session: Session, nsp: str) -> None:
        self.app = app
        self.connection = connection
        self.engine = connection.engine
        self.scheduler = app.server.scheduler
        self.clock = app.server.clock
        self.session = session
        self.nsp = nsp
        self.done = False
        self.told = False
        #: Exact room subjects of this socket (subscriptions match by prefix).
        self.rooms: dict[str, Any] = session.data.setdefault(ROOMS, {})  # type: ignore[assignment]
        self.key = ("socketio", nsp, app.recovery)

    @property
    def sid(self) -> str:
        return self.session.id

    def wake(self) -> None:
        if not self.done and self.engine.writable:
            self.scheduler.soon(self)

    def flush(self) -> None:
        """Write what is queued: every event's packet is encoded once and shared by all sockets.

        On a WebSocket the shared, ready-made frames go out in one write (one
        ``send`` system call per socket and reactor turn, whatever the number
        of events); on polling the packets wait for the poll.
        """
        engine = self.engine
        if self.done or not engine.writable or not self.session.queue:
            return
        items = self.session.take(self.clock.seconds())
        chosen = []
        rooms = self.rooms
        sid = self.session.id
        key = self.key
        position = None
        for event, subscription in items:
            # The fan-out loop, one iteration per event and socket: kept flat, the per-event
            # work (encoding, position, subject) done once in the cached Encoded.
            cached = event.wire_cache.get(key)
            if cached is None:
                if event.name in _NOTICES:
                    continue
                cached = event.wire_cache[key] = self._encode(event)
            if cached.skip == sid or (subscription is not None and cached.subject not in rooms):
                continue  # a room is one exact subject, a subscription a prefix
            chosen.append(cached)
            if cached.position is not None:
                position = cached.position
        if position is not None:
            self.session.position = position
        if not chosen:
            return
        ws = engine.ws
        if ws is not None:
            ws.write_raw(chosen[0].frames if len(chosen) == 1 else b"".join([c.frames for c in chosen]))
        else:
            engine.send([packet for c in chosen for packet in c.packets])

    def _encode(self, event: Any) -> Encoded:
        name, args = S.event_args(event.fields)
        if self.app.recovery and event.position is not None:
            args = [*args, event.position]
        ack = event.fields.get("sio_ack")
        encoded = S.encode(S.Packet(S.EVENT, self.nsp, [name, *args],
                                    id=int(ack) if ack and ack.isdigit() else None))
        packets: list[str | bytes] = ["4" + encoded[0], *encoded[1:]]
        return Encoded(packets, frames(packets), event.position, event.subject,
                       event.fields.get("sio_skip"))

    def end(self, reason: EndReason) -> None:
        """The pushpy session ended (expired, ended by the server, shutdown)."""
        if self.done:
            return
        self.done = True
        self.connection.sockets.pop(self.nsp, None)
        if reason is EndReason.SHUTDOWN or reason is EndReason.OVERFLOW:
            # Not a Socket.IO "server disconnect": the client reconnects (elsewhere).
            reason_text = SHUTTING_DOWN if reason is EndReason.SHUTDOWN else "transport close"
            self.connection.engine.close(reason_text, notify_client=True)
        else:
            self.connection.send(S.Packet(S.DISCONNECT, self.nsp))
        self.app.disconnected(self, "server namespace disconnect")

    def lost(self, reason: str, *, keep: bool) -> None:
        """The client went away (``keep``: hold the session for recovery)."""
        if self.done:
            return
        self.done = True
        session = self.session
        session.detach(self)
        if session.state is not SessionState.ENDED:
            if keep:
                session.last_active = session.last_alive = self.app.server.clock.seconds()
            else:
                self.app.server.dispatcher.end(session, EndReason.DISCONNECT)
        self.app.disconnected(self, reason)


class Connection:
    """The Socket.IO side of one Engine.IO session."""

    def __init__(self, app: SocketIO, engine: EngineSession) -> None:
        self.app = app
        self.engine = engine
        self.decoder = S.Decoder(max_attachments=app.server.config.socketio_max_attachments)
        self.sockets: dict[str, Socket] = {}
        self.connecting: dict[str, Deferred | None] = {}
        self.closed = False

    def send(self, packet: S.Packet) -> None:
        encoded = S.encode(packet)
        self.engine.send(["4" + encoded[0], *encoded[1:]])

    # -- Engine.IO callbacks --------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        try:
            packet = self.decoder.feed(data)
        except S.PacketError as e:
            log.info("socket.io: closing {sid}: {error}", sid=self.engine.sid, error=str(e))
            self.engine.close("parse error")
            return
        if packet is None:
            return
        kind = packet.type
        if kind == S.CONNECT:
            self._connect(packet)
            return
        socket = self.sockets.get(packet.nsp)
        if socket is None:
            return  # not connected to that namespace (yet): ignored, as Socket.IO does
        if kind in (S.EVENT, S.BINARY_EVENT):
            self.app.server.dispatcher.touch(socket.session, self.app.server.clock.seconds())
            self.app.dispatch(socket, packet.data[0], packet.data[1:], packet.id)
        elif kind in (S.ACK, S.BINARY_ACK):
            self.app.acked(socket, packet.id, packet.data)
        elif kind == S.DISCONNECT:
            del self.sockets[packet.nsp]
            socket.lost("client namespace disconnect", keep=False)
        else:
            self.engine.close("parse error")  # CONNECT_ERROR comes from servers only

    def on_alive(self) -> None:
        """A pong: the client is there, the leases of its sessions are renewed."""
        now = self.app.server.clock.seconds()
        for socket in self.sockets.values():
            socket.session.last_active = socket.session.last_alive = now

    def on_writable(self) -> None:
        for socket in list(self.sockets.values()):
            socket.wake()

    def on_close(self, reason: str) -> None:
        self.closed = True
        for pending in self.connecting.values():
            if pending is not None and not pending.called:
                pending.cancel()
        keep = self.app.recovery  # every Engine.IO-level end is recoverable, as in Socket.IO
        sockets, self.sockets = self.sockets, {}
        for socket in sockets.values():
            socket.lost(reason, keep=keep)

    # -- CONNECT ---------------------------------------------------------------

    def _connect(self, packet: S.Packet) -> None:
        nsp = packet.nsp
        if nsp in self.sockets or nsp in self.connecting:
            return
        if not self.app.has_namespace(nsp):
            self.send(S.Packet(S.CONNECT_ERROR, nsp, {"message": "Invalid namespace"}))
            return
        auth: dict[str, Any] = packet.data if isinstance(packet.data, dict) else {}
        info = self.engine.request_info
        params = dict(info["params"])
        for name, value in auth.items():
            if isinstance(value, str) and valid_name(name) and len(value) <= 4096:
                params[name] = value
        headers = info["headers"]
        credentials = Credentials(params=params, headers=headers,
                                  cookies=_cookies(headers.get("cookie")),
                                  address=info["address"], transport="socketio")
        self.connecting[nsp] = None
        try:
            recovered = self._recover(nsp, auth, credentials)
            answer = then(recovered, lambda found: self._join(nsp, auth, credentials, found))
        except Exception as e:  # a refusal (ClientError, ConnectionRefusedError) or a bug
            self._refuse(nsp, e)
            return
        if isinstance(answer, Deferred):
            self.connecting[nsp] = answer
            answer.addErrback(lambda f: self._refuse(nsp, f.value)).addErrback(
                lambda f: log.failure("socket.io connect failed", f))
        else:
            self.connecting.pop(nsp, None)

    def _refuse(self, nsp: str, error: BaseException) -> None:
        self.connecting.pop(nsp, None)
        if self.closed:
            return
        if isinstance(error, ClientError):
            message: Any = error.reason
        elif isinstance(error, ConnectionRefusedError):
            message = error.args[0] if error.args else "Connection rejected by server"
        else:
            if not isinstance(error, Exception) or "Cancelled" not in type(error).__name__:
                log.failure("socket.io connect failed", Failure(error))
            message = "Connection rejected by server"
        data: dict[str, Any] = {"message": message if isinstance(message, str) else str(message)}
        if isinstance(error, ConnectionRefusedError) and len(error.args) > 1:
            data["data"] = error.args[1]
        self.send(S.Packet(S.CONNECT_ERROR, nsp, data))

    def _recover(self, nsp: str, auth: dict[str, Any], credentials: Credentials) -> Any:
        """The session a reconnecting client gets back with what it missed, or ``None``."""
        app = self.app
        pid, offset = auth.get("pid"), auth.get("offset")
        if not (app.recovery and isinstance(pid, str) and isinstance(offset, str)):
            return None
        session = app.server.dispatcher.find(app.pids.get(pid))
        if session is None:
            # Held by another node (behind a balancer), or by a dead one: copied once the record is
            # this pid's and namespace's, bound to these credentials.
            recalled = app.recall(pid, nsp, credentials)
            if recalled is None:
                return None
            return recalled.addCallback(lambda copy: copy and self._resume(copy, nsp, offset, credentials,
                                                                           moved=True))
        return self._resume(session, nsp, offset, credentials, moved=False)

    def _resume(self, session: Session, nsp: str, offset: str, credentials: Credentials, *,
                moved: bool) -> Any:
        """The session of a recovery id, with what its client missed (``moved``: copied from its record)."""
        app = self.app
        shared = app.server.shared_sessions
        if session.data.get(NAMESPACE) != nsp:
            return None
        try:
            check_binding(app.server, session, lambda: credentials)
        except ClientError:
            return None
        if moved:
            shared.moved_here(session)
        parsed = parse_position(offset)
        if parsed is None or parsed[0] != app.server.backplane.epoch:
            return self._unrecoverable(session)
        rooms = session.data.get(ROOMS) or {}
        subjects = set(rooms)

        def merge(recovery: Any) -> Session | None:
            events = app.server.dispatcher.replayed(session, recovery.events, app.server.clock.seconds())
            if not recovery.recovered or session.state is SessionState.ENDED:
                return self._unrecoverable(session)
            for channel in list(session.channels):
                if isinstance(channel, Socket):
                    channel.connection.sockets.pop(channel.nsp, None)
                    channel.lost("transport close", keep=True)
            after = parsed[1]
            found = {event.offset for event in recovery.events}
            kept = [item for item in session.queue.drain()
                    if item[0].offset is None or (item[0].offset > after and item[0].offset not in found)]
            missed = [(event, rooms.get(event.subject) if event.route is Route.MULTICAST else None)
                      for event in events if event.route is not Route.MULTICAST or event.subject in rooms]
            session.queue.refill(_by_offset(missed, kept))
            return session

        owners = owner_keys(session.id, session.user)
        return then(app.server.backplane.since(offset, subjects.__contains__, owners), merge)

    def _unrecoverable(self, session: Session) -> None:
        if session.state is not SessionState.ENDED and not session.channels:
            self.app.server.dispatcher.end(session, EndReason.LEAVE)
        return None

    def _join(self, nsp: str, auth: dict[str, Any], credentials: Credentials,
              found: Session | None) -> Any:
        app = self.app
        server = app.server
        if found is not None:
            return self._accept(nsp, found, auth, credentials, recovered=True)

        def start(identity: Any) -> Any:
            if self.closed:
                return None
            now = server.clock.seconds()
            agent = (credentials.headers.get("user-agent") or "unknown").lower()
            session = server.dispatcher.join(now, format=P.FORMAT_JSON, user_agent=agent,
                                             address=credentials.address, params=credentials.params,
                                             user=identity.user)
            try:
                adopt(server, session, identity, credentials)
                session.data[NAMESPACE] = nsp
                server.dispatcher.listen(session, P.MODE_STREAM, now)
                app.join_namespace(session, nsp)
            except ClientError:
                server.dispatcher.end(session, EndReason.LEAVE)
                raise
            return self._accept(nsp, session, auth, credentials, recovered=False)

        return then(authorize_join(server, credentials), start)

    def _accept(self, nsp: str, session: Session, auth: dict[str, Any],
                credentials: Credentials, *, recovered: bool) -> Any:
        app = self.app
        socket = Socket(app, self, session, nsp)
        environ = app.environ(self.engine, credentials, recovered)

        def answer(allowed: Any) -> None:
            self.connecting.pop(nsp, None)
            if self.closed or session.state is SessionState.ENDED:
                if session.state is not SessionState.ENDED:
                    app.server.dispatcher.end(session, EndReason.LEAVE)
                return
            if allowed is False:
                app.server.dispatcher.end(session, EndReason.LEAVE)
                raise ConnectionRefusedError("Connection rejected by server")
            reply: dict[str, Any] = {"sid": session.id}
            if app.recovery:
                reply["pid"] = app.pid_of(session)
            self.sockets[nsp] = socket
            self.send(S.Packet(S.CONNECT, nsp, reply))
            app.connected(socket)
            session.attach(socket)

        def recorded(allowed: Any) -> Any:
            # With the Redis backplane, the record another node recovers the socket from, written first.
            if allowed is False or self.closed or session.state is SessionState.ENDED:
                return allowed
            return then(app.share(session), lambda _: allowed)

        def refused(reason: Failure) -> Failure:
            if session.state is not SessionState.ENDED:
                app.server.dispatcher.end(session, EndReason.LEAVE)
            return reason

        try:
            result = app.call_connect(nsp, session.id, environ, auth)
        except Exception:
            refused(Failure())
            raise
        if isinstance(result, Deferred):
            result.addErrback(refused)
        return then(then(result, recorded), answer)


def socketio_resource(server: Any) -> Any:
    """``/socket.io/``: the Engine.IO endpoint speaking Socket.IO with ``server.socketio``."""
    from pushpy.web.engineio import EngineResource, EngineServer

    app = server.socketio
    engine = EngineServer(server, lambda session: Connection(app, session))
    app.engine = engine
    return EngineResource(engine)


__all__ = ["Connection", "Socket", "socketio_resource"]
