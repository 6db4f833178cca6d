"""A Socket.IO application on pushpy, in the spirit of python-socketio's server API.

::

    sio = server.socketio                     # one per PushServer

    @sio.on("connect")
    def connect(sid, environ, auth):          # return False or raise ConnectionRefusedError to refuse
        sio.enter_room(sid, "/chat/lobby")

    @sio.on("say")
    def say(sid, text):
        sio.emit("said", {"from": sid, "text": text}, to="/chat/lobby")
        return "ok"                           # the acknowledgement's arguments

Rooms are pushpy subjects (a room ``/chat/lobby`` of namespace ``/`` is the
subject ``/chat/lobby``; of namespace ``/admin`` it is ``/admin#/chat/lobby``),
so every emit goes through :meth:`PushServer.publish_event` and the backplane,
and Pushlet, SSE and WebSocket subscribers of the subject see the same events.
Handlers may return values, Deferreds or coroutines.  See ``docs/socketio.md``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from pushpy import protocol as P
from pushpy.core.events import Event, Route
from pushpy.core.limits import check_event, check_publish_rate
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import ClientError, UsageError
from pushpy.web.authz import ask, then
from pushpy.wire import socketio as S

if TYPE_CHECKING:
    from pushpy.auth import Credentials
    from pushpy.server import PushServer
    from pushpy.web.engineio import EngineSession
    from pushpy.web.socketio import Socket

log = Logger()
NAMESPACE = "socketio.nsp"
ROOMS = "socketio.rooms"
PID = "socketio.pid"


def room_subject(room: str, namespace: str = "/") -> str:
    """The pushpy subject of a room: the room's name in ``/``, ``<namespace>#<room>`` elsewhere."""
    return room if namespace == "/" else f"{namespace}#{room}"


def namespace_subject(namespace: str = "/") -> str:
    """The subject every socket of ``namespace`` is on: ``emit`` without ``to`` publishes there."""
    return "#" + namespace


class SocketIO:
    """Handlers, rooms and emits of the Socket.IO endpoint of one :class:`PushServer`."""

    def __init__(self, server: PushServer) -> None:
        config = server.config
        self.server = server
        self.recovery = config.socketio_recovery
        self.builtin = config.socketio_builtin_events
        self.handlers: dict[str, dict[str, Callable[..., Any]]] = {"/": {}}
        for namespace in config.socketio_namespaces:
            self.handlers.setdefault(namespace, {})
        #: Live sockets of this process by socket id.
        self.sockets: dict[str, Socket] = {}
        #: Private recovery ids (``pid``) to session ids.
        self.pids: dict[str, str] = {}
        self._acks: dict[tuple[str, int], Callable[..., Any]] = {}
        self.client_errors = ClientErrors(server.clock)
        self._ack_ids = itertools.count(1)
        #: The Engine.IO sessions (set when the endpoint is mounted).
        self.engine: Any = None
        server.dispatcher.on_end.append(self._ended)
        server.dispatcher.on_subscriptions.append(self._rooms_changed)

    # -- handlers -----------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None,
           namespace: str | None = None) -> Any:
        """Register ``handler(sid, *args)`` for ``event`` (also as a decorator).

        ``connect`` gets ``(sid, environ, auth)``, ``disconnect`` ``(sid, reason)``
        (fewer if the handler takes fewer).  Registering any handler in a
        namespace makes clients able to connect to it.
        """
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers.setdefault(namespace or "/", {})[event] = function
            return function

        return register(handler) if handler is not None else register

    def event(self, handler: Callable[..., Any] | None = None, namespace: str | None = None) -> Any:
        """Register a handler named like its event (``@sio.event def chat(sid, msg)``)."""
        if handler is not None:
            return self.on(handler.__name__, handler, namespace)
        return lambda function: self.on(function.__name__, function, namespace)

    def has_namespace(self, namespace: str) -> bool:
        return namespace in self.handlers or "*" in self.handlers

    # -- emitting -----------------------------------------------------------

    def emit(self, event: str, data: Any = None, to: str | Iterable[str] | None = None,
             room: str | Iterable[str] | None = None, skip_sid: str | None = None,
             namespace: str | None = None, callback: Callable[..., Any] | None = None) -> list[Event]:
        """Emit ``event`` to a room, a socket id, or (no ``to``) every socket of the namespace.

        ``data`` is the one argument, a tuple the arguments.  Every emit is a
        pushpy event published through the backplane; room emits are kept in
        history (and recovered after reconnects).  ``callback`` asks one
        socket (of this process) for an acknowledgement.  Returns what
        ``publish_event`` returned for each target (the stored events, or
        Deferreds of them with a clustered backplane).
        """
        namespace = namespace or "/"
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        if event in S.RESERVED_EVENTS:
            raise UsageError(f"{event!r} is a reserved Socket.IO event name")
        target = to if to is not None else room
        targets = [None] if target is None else [target] if isinstance(target, str) else list(target)
        published = []
        for one in targets:
            fields = S.event_fields(event, args)
            if skip_sid:
                fields["sio_skip"] = skip_sid
            now = str(int(self.server.clock.seconds()))
            socket_session = self._socket_session(one, namespace) if one is not None else None
            if socket_session is not None:
                if callback is not None:
                    ack = next(self._ack_ids)
                    self._acks[(socket_session.id, ack)] = callback
                    fields["sio_ack"] = str(ack)
                out = Event({P.P_EVENT: P.DATA, P.P_TIME: now, **fields}, route=Route.UNICAST,
                            target=socket_session.id)
            else:
                if callback is not None:
                    raise UsageError("an acknowledgement callback needs one socket id of this process")
                subject = namespace_subject(namespace) if one is None else room_subject(one, namespace)
                out = Event({P.P_EVENT: P.DATA, P.P_TIME: now, **fields, P.P_SUBJECT: subject})
            published.append(self.server.publish_event(out))
        return published

    def send(self, data: Any, to: str | None = None, namespace: str | None = None,
             **kwargs: Any) -> list[Event]:
        """Emit a ``message`` event (what a client's ``socket.send`` would)."""
        return self.emit("message", data, to=to, namespace=namespace, **kwargs)

    def _socket_session(self, sid: str, namespace: str) -> Session | None:
        session = self.server.dispatcher.find(sid)
        if session is not None and session.data.get(NAMESPACE) == namespace:
            return session
        return None

    # -- rooms ----------------------------------------------------------------

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> Deferred | None:
        """Put socket ``sid`` in ``room`` (a subscription to its subject).

        The authorizer's ``subscribe`` decides; a refusal raises
        :class:`~pushpy.errors.ClientError` (or fails the Deferred returned
        when the authorizer makes it wait).
        """
        namespace = namespace or "/"
        session = self._require(sid, namespace)
        subject = room_subject(room, namespace)
        rooms = session.data.setdefault(ROOMS, {})
        if subject in rooms:  # type: ignore[operator]
            return None

        def subscribe(_: object) -> None:
            if session.state is SessionState.ENDED:
                raise ClientError("socket disconnected")
            if subject not in rooms:  # type: ignore[operator]
                rooms[subject] = self.server.dispatcher.subscribe(session, subject)  # type: ignore[index]

        return then(ask(self.server.authorizer.subscribe, session, subject), subscribe)

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Take socket ``sid`` out of ``room``."""
        namespace = namespace or "/"
        session = self._require(sid, namespace)
        subscription = session.data.get(ROOMS, {}).pop(room_subject(room, namespace), None)  # type: ignore[union-attr]
        if subscription is not None:
            self.server.dispatcher.unsubscribe(session, subscription.sid)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms of socket ``sid``, its own id first (as python-socketio lists them)."""
        namespace = namespace or "/"
        session = self._require(sid, namespace)
        prefix = "" if namespace == "/" else namespace + "#"
        everyone = namespace_subject(namespace)
        return [sid] + [subject[len(prefix):] for subject in session.data.get(ROOMS, {})  # type: ignore[union-attr]
                        if subject != everyone]

    def disconnect(self, sid: str, namespace: str | None = None) -> None:
        """Disconnect socket ``sid`` (its client gets a DISCONNECT and does not reconnect)."""
        session = self._socket_session(sid, namespace or "/")
        if session is not None:
            self.server.dispatcher.end(session, EndReason.LEAVE)

    def _require(self, sid: str, namespace: str) -> Session:
        session = self._socket_session(sid, namespace)
        if session is None:
            raise ClientError(f"no socket {sid[:64]} in namespace {namespace[:64]}")
        return session

    # -- called by the protocol (pushpy.web.socketio) -----------------------------

    def join_namespace(self, session: Session, namespace: str) -> None:
        """Subscribe a new socket's session to its namespace's subject."""
        subject = namespace_subject(namespace)
        session.data.setdefault(ROOMS, {})[subject] = self.server.dispatcher.subscribe(  # type: ignore[index]
            session, subject)

    def pid_of(self, session: Session) -> str:
        """The session's private recovery id (``<secret>.<session id>`` when other nodes may recover it)."""
        pid = session.data.get(PID)
        if not isinstance(pid, str):
            pid = secrets.token_urlsafe(18)
            if self.server.shared_sessions is not None:
                pid += "." + session.id
            session.data[PID] = pid
            self.pids[pid] = session.id
        return pid

    def share(self, session: Session) -> Deferred | None:
        """With the Redis backplane, write the record another node recovers the socket from."""
        shared = self.server.shared_sessions
        if shared is None or not self.recovery:
            return None
        return shared.save_native(session, {"sio.nsp": str(session.data.get(NAMESPACE)),
                                            "sio.pid": _digest(self.pid_of(session))})

    def recall(self, pid: str, nsp: str, credentials: Credentials) -> Deferred | None:
        """The session of ``pid`` copied from its record (it was on another node), or ``None``.

        Only a record of this pid and namespace, bound to ``credentials``
        (and of their user), is copied: a refused recovery leaves no trace.
        """
        shared = self.server.shared_sessions
        session_id = pid.partition(".")[2]
        if shared is None or not session_id:
            return None
        found: dict[str, str] = {}

        def accept(record: dict[str, str]) -> bool:
            found.update(record)
            return record.get("sio.nsp") == nsp and record.get("sio.pid") == _digest(pid)

        def adopt(session: Session | None) -> Session | None:
            if session is None or not found or PID in session.data:
                return None  # no record, or not this pid's, or a session held here already
            session.data[NAMESPACE] = found["sio.nsp"]
            session.data[PID] = pid
            session.data[ROOMS] = {s.subject: s for s in session.subscriptions.values()}
            self.pids[pid] = session.id
            return session

        return shared.native_session(session_id, accept, credentials).addCallback(adopt)

    def environ(self, engine: EngineSession, credentials: Any, recovered: bool) -> dict[str, Any]:
        """A WSGI-like ``environ`` for ``connect`` handlers."""
        info = engine.request_info
        environ: dict[str, Any] = {
            "QUERY_STRING": info.get("query", ""), "REMOTE_ADDR": info.get("address", ""),
            "pushpy.transport": info.get("transport"), "pushpy.credentials": credentials,
            "pushpy.recovered": recovered}
        for name, value in info.get("headers", {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        return environ

    def call_connect(self, namespace: str, sid: str, environ: dict[str, Any], auth: Any) -> Any:
        handler = self.handlers.get(namespace, {}).get("connect")
        if handler is None:
            return True
        return _result(_call(handler, sid, environ, auth))

    def connected(self, socket: Socket) -> None:
        self.sockets[socket.sid] = socket

    def disconnected(self, socket: Socket, reason: str) -> None:
        if socket.told:
            return
        socket.told = True
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]
        handler = self.handlers.get(socket.nsp, {}).get("disconnect")
        if handler is not None:
            try:
                _result(_call(handler, socket.sid, reason))
            except Exception:
                log.failure("socket.io disconnect handler failed")

    def dispatch(self, socket: Socket, event: Any, args: list[Any], ack: int | None) -> None:
        """Run the handler of a client's event; answer its acknowledgement."""
        handler = self.handlers.get(socket.nsp, {}).get(event)
        if handler is None and self.builtin and event in _BUILTIN:
            handler = getattr(self, "_builtin_" + event)
        if handler is None:
            handler = self.handlers.get(socket.nsp, {}).get("*")
            if handler is None:
                return
            args = [socket.sid, *args]
            socket_args: tuple[Any, ...] = (event,)
        else:
            socket_args = (socket.sid,)
        try:
            result = _result(handler(*socket_args, *args))
        except ClientError as e:
            result = {"error": e.reason}
        except TypeError as e:
            if not _refuses(handler, len(socket_args) + len(args)):
                log.failure("socket.io handler of {event} failed", event=event[:64])
                result = INTERNAL_ERROR
            else:  # the client sent arguments the handler cannot take
                self.client_errors.note(socket.sid, event, str(e))
                result = {"error": f"bad arguments for {event[:64]}"}
        except Exception:
            log.failure("socket.io handler of {event} failed", event=event[:64])
            result = INTERNAL_ERROR
        if ack is None:
            if isinstance(result, Deferred):
                result.addErrback(lambda f: log.failure("socket.io handler failed", f))
            return

        def answer(value: Any) -> None:
            if socket.done:
                return
            values = list(value) if isinstance(value, tuple) else [] if value is None else [value]
            socket.connection.send(S.Packet(S.ACK, socket.nsp, values, id=ack))

        def failed(reason: Any) -> None:
            if reason.check(ClientError):
                answer({"error": reason.value.reason})
            else:
                log.failure("socket.io handler failed", reason)
                answer(INTERNAL_ERROR)

        if isinstance(result, Deferred):
            result.addCallbacks(answer, failed)
        else:
            answer(result)

    def acked(self, socket: Socket, ack: int | None, args: list[Any]) -> None:
        callback = self._acks.pop((socket.sid, ack), None) if ack is not None else None
        if callback is not None:
            try:
                _result(callback(*args))
            except TypeError as e:
                if not _refuses(callback, len(args)):
                    log.failure("socket.io acknowledgement callback failed")
                else:
                    self.client_errors.note(socket.sid, "acknowledgement", str(e))
            except Exception:
                log.failure("socket.io acknowledgement callback failed")

    def _rooms_changed(self, session: Session) -> None:
        """Forget the rooms whose subscription went (``PushServer.unsubscribe`` of a room's subject)."""
        rooms = session.data.get(ROOMS)
        if rooms:
            for subject, subscription in list(rooms.items()):  # type: ignore[union-attr]
                if session.subscriptions.get(subscription.sid) is not subscription:
                    del rooms[subject]  # type: ignore[union-attr]

    def _ended(self, session: Session, reason: EndReason) -> None:
        pid = session.data.get(PID)
        if isinstance(pid, str):
            self.pids.pop(pid, None)
            shared = self.server.shared_sessions
            if shared is not None and reason in (EndReason.DISCONNECT, EndReason.OVERFLOW):
                shared.end_everywhere(session)  # not recoverable here, so nowhere (LEAVE: done already)
        if self._acks and session.data.get(NAMESPACE) is not None:
            for key in [key for key in self._acks if key[0] == session.id]:
                del self._acks[key]

    # -- built-in events (socketio.builtin.events) ----------------------------------

    def _builtin_subscribe(self, sid: str, room: Any = None, *_: Any) -> Any:
        if not isinstance(room, str):
            raise ClientError("subscribe needs a room name")
        socket = self.sockets[sid]
        return then(self.enter_room(sid, room, socket.nsp), lambda _: {"ok": True})

    def _builtin_unsubscribe(self, sid: str, room: Any = None, *_: Any) -> Any:
        if not isinstance(room, str):
            raise ClientError("unsubscribe needs a room name")
        self.leave_room(sid, room, self.sockets[sid].nsp)
        return {"ok": True}

    def _builtin_publish(self, sid: str, room: Any = None, event: Any = None, *args: Any) -> Any:
        if not isinstance(room, str) or not isinstance(event, str) or not event:
            raise ClientError("publish needs a room and an event name")
        socket = self.sockets[sid]
        session = socket.session
        config = self.server.config
        check_publish_rate(session.data, config, self.server.clock.seconds())
        check_event(S.event_fields(event, args), config)
        subject = room_subject(room, socket.nsp)

        def publish(_: object) -> Any:
            stored = self.emit(event, tuple(args), to=room, namespace=socket.nsp)[0]
            # A clustered backplane answers with a Deferred of the stored event.
            return then(stored, lambda e: {"ok": True, "id": getattr(e, "position", None)})

        return then(ask(self.server.authorizer.publish, session, subject), publish)


def _digest(pid: str) -> str:
    """What a record keeps of a recovery id (never the id itself)."""
    return hashlib.sha256(pid.encode("utf-8", "surrogatepass")).hexdigest()


_BUILTIN = frozenset({"subscribe", "unsubscribe", "publish"})
#: The acknowledgement of an event whose handler failed (an application bug, logged as a failure).
INTERNAL_ERROR = {"error": "internal server error"}


class ClientErrors:
    """Events a client sent that their handler cannot take: logged at info, rate limited.

    One line per :attr:`INTERVAL` seconds at most, counting the ones not
    logged, so that no client can flood the log.
    """

    INTERVAL = 10.0

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.quiet_until = 0.0
        self.unlogged = 0

    def note(self, sid: str, event: str, error: str) -> None:
        now = self.clock.seconds()
        if now < self.quiet_until:
            self.unlogged += 1
            return
        log.info("socket.io: {sid} sent {event} arguments its handler cannot take ({error}); "
                 "{unlogged} more since the last such line", sid=sid, event=event[:64],
                 error=error[:200], unlogged=self.unlogged)
        self.quiet_until = now + self.INTERVAL
        self.unlogged = 0


def _refuses(function: Callable[..., Any], count: int) -> bool:
    """Whether ``function`` cannot be called with ``count`` positional arguments."""
    try:
        inspect.signature(function).bind(*([None] * count))
    except TypeError:
        return True
    except ValueError:  # no signature to look at: a bug is the safer guess
        return False
    return False


def _call(handler: Callable[..., Any], *args: Any) -> Any:
    """Call ``handler`` with as many leading ``args`` as it takes."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return handler(*args)
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return handler(*args)
    count = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return handler(*args[:count])


def _result(value: Any) -> Any:
    """A handler's result, a coroutine's as a Deferred."""
    if inspect.iscoroutine(value):
        return ensureDeferred(value)
    return value


__all__ = ["SocketIO", "namespace_subject", "room_subject"]
