# test-case-name: tests.client.test_client
"""A pushpy client for programs that are not browsers, on Twisted.

The Python counterpart of ``webroot/lib/pushpy.js`` (and of Pushlet's Java
client)::

    client = Client("http://127.0.0.1:8080/pushlet/")       # WebSocket by default
    client.subscribe("/chat", lambda event: print(event.fields))
    await client.connect()                                    # fires at the first open
    event_id = await client.publish("/chat", {"text": "hi"})
    await client.close()

It keeps its subscriptions and the id of the last event it received; when a
connection drops (the server restarts, a proxy cuts it, the server says
``close``) it reconnects with a growing, jittered delay and resumes from that
id, so no event kept in the server's history is lost or delivered twice.
Listeners (:meth:`Client.on`) hear ``open``, ``close``, ``event``, ``gap``
(events were lost: reload your state), ``unsubscribed`` (the server took
subjects back: they are dropped here too) and ``error``.  A ``close`` with
``"reconnect": false`` (the application ended the session) closes the client.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from pushpy.client.transports import CONNECTIONS, TRANSPORTS, Connection, Message, query
from pushpy.core.revocation import overlaps
from pushpy.core.subjects import split_subjects

DEFAULT_URL = "http://127.0.0.1:8080/pushlet/"
#: Event ids remembered to drop duplicates after a resume that overlaps.
MAX_SEEN = 1000


class Refused(Exception):
    """The server refused a message (``nack``) or could not be asked (connection lost).

    :ivar reason: the server's reason, or why the message got no answer.
    :ivar reply: the ``nack`` message, if there was one.
    """

    def __init__(self, reason: str, reply: Message | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """An event as the client receives it."""

    subject: str | None
    #: The resume position (``epoch:offset``); ``None`` for events not kept in history.
    id: str | None
    fields: dict[str, str] = field(default_factory=dict)
    #: ``data`` for published events.
    name: str = "data"
    #: ``user``, ``session`` or ``all`` for an event sent to this user, this session or everyone
    #: (not by a subscription: it reaches ``on("event")`` listeners only); ``None`` otherwise.
    to: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON object (what ``pushpy listen`` prints)."""
        out: dict[str, Any] = {"subject": self.subject, "id": self.id, "fields": self.fields}
        if self.name != "data":
            out["name"] = self.name
        if self.to is not None:
            out["to"] = self.to
        return out


@dataclass(slots=True)
class _Pending:
    deferred: Deferred | None
    conn: Connection | None = None
    subject: str | None = None


Handler = Callable[[ClientEvent], object]


class Client:
    """A connection to a pushpy server that survives reconnects.

    :param url: the mount root (``http://host:8080/pushlet/``), or
        ``tcp://host:8081`` for the plain TCP transport.
    :param transport: ``websocket`` (default), ``sse`` or ``longpoll``
        (``tcp`` is implied by a ``tcp://`` URL).
    :param last_event_id: resume from this position at the first connect.
    :param reconnect_delay: the first delay before reconnecting, in seconds;
        doubled per failure up to ``max_reconnect_delay``, and jittered.
    :param heartbeat_timeout: a streaming connection silent this long is
        given up (default: two server heartbeats plus 2 s).
    :param open_timeout: a connection not open after this long is given up.
    :param request_timeout: the timeout of one long-poll request.
    :param reactor: the reactor (default: the global one).
    :param rng: a :class:`random.Random` for the jitter.
    """

    log = Logger()

    def __init__(self, url: str = DEFAULT_URL, *, transport: str | None = None,
                 last_event_id: str | None = None, reconnect_delay: float = 1.0,
                 max_reconnect_delay: float = 30.0, heartbeat_timeout: float | None = None,
                 open_timeout: float = 10.0, request_timeout: float = 45.0,
                 reactor: Any = None, rng: random.Random | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        scheme = urlsplit(url).scheme
        if scheme == "tcp":
            if transport not in (None, "tcp"):
                raise ValueError(f"a tcp:// URL uses the tcp transport, not {transport!r}")
            transport = "tcp"
        else:
            if scheme not in ("http", "https"):
                raise ValueError(f"the URL must start with http://, https:// or tcp://, not {url!r}")
            if not url.endswith("/"):
                url += "/"
            transport = transport or "websocket"
            if transport == "tcp" or transport not in TRANSPORTS:
                raise ValueError(f"transport must be one of websocket, sse, longpoll, not {transport!r}")
        self.url = url
        self.transport = transport
        self.reactor = reactor
        self.random = rng or random.Random()
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.heartbeat_timeout = heartbeat_timeout
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        #: The server's session id (``None`` before the first open and after ``close``).
        self.session: str | None = None
        #: The session's secret key: continuing the session needs it (``docs/security.md``).
        self.session_key: str | None = None
        #: Where to resume from: the id of the last event received, or the open position.
        self.last_event_id = last_event_id
        #: ``idle``, ``connecting``, ``open`` or ``closed``.
        self.state = "idle"
        self._subs: dict[str, list[Handler]] = {}
        self._server_subs: list[str] = []
        self._waiting: dict[str, list[Deferred]] = {}
        self._listeners: dict[str, list[Callable[..., object]]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._outbox: list[Message] = []
        self._posts: list[Message] = []
        self._posting = False
        self._pending: dict[int, _Pending] = {}
        self._ref = 0
        self._conn: Connection | None = None
        self._failures = 0
        self._timer: Any = None
        self._opened: list[Deferred] = []
        self._http: Any = None
        self._pool: Any = None

    # -- public API ---------------------------------------------------------

    @property
    def subjects(self) -> list[str]:
        """Every subject this client receives (comma lists split)."""
        out: list[str] = []
        for subject in self._subs:
            out.extend(s for s in split_subjects(subject) if s not in out)
        return out

    def connect(self) -> Deferred[Client]:
        """Start connecting (once); fires with the client when a connection is open."""
        if self.state == "closed":
            return fail(Refused("client closed"))
        if self.state == "open":
            return succeed(self)
        d: Deferred[Client] = Deferred()
        self._opened.append(d)
        if self.state == "idle":
            self._connect()
        return d

    def subscribe(self, subject: str, handler: Handler) -> Deferred[None]:
        """Call ``handler(event)`` for events on ``subject`` (a prefix, or a comma list).

        Fires once the server has the subscription (at once if it has).
        """
        subject = str(subject)
        if not split_subjects(subject):
            raise ValueError("subscribe needs a subject")
        d: Deferred[None] = Deferred()
        self._subs.setdefault(subject, []).append(handler)
        if self.state == "open" and self._covered(subject):
            d.callback(None)
            return d
        self._waiting.setdefault(subject, []).append(d)
        self._sync(None)
        return d

    def unsubscribe(self, subject: str, handler: Handler | None = None) -> None:
        """Stop ``handler`` (or every handler) receiving ``subject``."""
        handlers = self._subs.get(str(subject))
        if handlers is None:
            return
        if handler is not None and handler in handlers:
            handlers.remove(handler)
        if handler is None or not handlers:
            del self._subs[str(subject)]
            self._waiting.pop(str(subject), None)
            self._sync(None)

    def publish(self, subject: str | None, fields: Mapping[str, object] | None = None, *,
                to: str | None = None, user: str | None = None) -> Deferred[str | None]:
        """Publish ``fields`` on ``subject`` (to one session: ``to``; every session of a user: ``user``).

        Fires with the event's id (its resume position; unicast and user events have one too), or
        fails with :class:`Refused`.  A publish made while not connected
        waits for the next connection.
        """
        message: Message = {"type": "publish", "fields": dict(fields or {})}
        if subject is not None:
            message["subject"] = subject
        if to:
            message["to"] = to
        if user:
            message["user"] = user
        return self.send(message).addCallback(lambda reply: reply.get("id"))

    def history(self, subject: str, count: int | None = None) -> Deferred[list[Message]]:
        """The newest ``count`` events of exactly ``subject``, oldest first (``event`` messages)."""
        message: Message = {"type": "history", "subject": subject}
        if count is not None:
            message["count"] = count
        return self.send(message).addCallback(lambda reply: list(reply.get("events") or []))

    def presence(self, subject: str = "/online") -> Deferred[dict[str, int]]:
        """Who is on ``subject`` (default: who has a session): ``{user: sessions}``."""
        return self.send({"type": "presence", "subject": subject}).addCallback(
            lambda reply: dict(reply.get("users") or {}))

    def send(self, message: Message) -> Deferred[Message]:
        """Send one protocol message; fires with the ``ack`` (a ``nack`` fails with :class:`Refused`)."""
        self._ref += 1
        message = {**message, "ref": self._ref}
        if self.state == "closed":
            return fail(Refused("client closed"))
        d: Deferred[Message] = Deferred()
        self._pending[self._ref] = _Pending(d)
        if self.state == "open":
            self._transmit([message])
        else:
            self._outbox.append(message)
        return d

    def on(self, name: str, listener: Callable[..., object]) -> Client:
        """Call ``listener(info)`` on ``open``, ``close``, ``gap``, ``unsubscribed`` and ``error``;
        ``listener(event)`` on ``event``."""
        self._listeners.setdefault(name, []).append(listener)
        return self

    def off(self, name: str, listener: Callable[..., object]) -> Client:
        listeners = self._listeners.get(name, [])
        if listener in listeners:
            listeners.remove(listener)
        return self

    def close(self) -> Deferred[None]:
        """Close for good: no reconnect; waiting calls fail with :class:`Refused`."""
        return self._shut("client")

    def _shut(self, reason: str) -> Deferred[None]:
        if self.state == "closed":
            return succeed(None)
        was_open = self.state == "open"
        self.state = "closed"
        self._cancel_timer()
        if self._conn is not None:
            self._end(self._conn)
        self._fail_pending(None, "client closed")
        self._outbox = []
        opened, self._opened = self._opened, []
        for d in opened:
            d.errback(Refused("client closed"))
        self._waiting = {}  # never fired: a subscription that never happened
        self._emit("close", {"reason": reason, "reconnecting": False, "was_open": was_open})
        if self._pool is not None:
            return self._pool.closeCachedConnections()
        return succeed(None)

    # -- connecting ---------------------------------------------------------

    @property
    def http(self) -> Any:
        """The treq client of the HTTP transports (made on first use)."""
        if self._http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            self._pool = HTTPConnectionPool(self.reactor, persistent=False)
            self._http = HTTPClient(Agent(self.reactor, pool=self._pool))
        return self._http

    def _connect(self) -> None:
        self._timer = None
        if self.state == "closed":
            return
        conn = CONNECTIONS[self.transport](self)
        self._conn = conn
        self.state = "connecting"
        conn.timers.append(self.reactor.callLater(self.open_timeout, self._lost, conn, "open timeout"))
        try:
            conn.start()
        except Exception as e:  # a malformed URL, an unusable endpoint
            self.reactor.callLater(0, self._lost, conn, f"transport failed: {e}")

    def _end(self, conn: Connection) -> None:
        if conn.ended:
            return
        conn.ended = True
        for timer in conn.timers:
            if timer.active():
                timer.cancel()
        conn.timers = []
        try:
            conn.abort()
        except Exception:
            self.log.failure("aborting the {transport} connection failed", transport=conn.name)
        self._fail_pending(conn, "connection lost")

    def _lost(self, conn: Connection, reason: str, now: bool = False) -> None:
        """``conn`` failed or ended: reconnect after a delay (at once when ``now``)."""
        if conn is not self._conn or conn.ended or self.state == "closed":
            return
        self._end(conn)
        self.state = "connecting"
        if conn.opened:
            self._emit("close", {"reason": reason, "reconnecting": True, "was_open": True})
            delay = 0.0 if now else self._backoff()
        else:
            self._emit("error", {"reason": reason, "transport": conn.name})
            delay = self._backoff()
        self.log.debug("pushpy client: {reason}; reconnecting in {delay:.2f}s", reason=reason,
                       delay=delay)
        self._cancel_timer()
        self._timer = self.reactor.callLater(delay, self._connect)

    def _backoff(self) -> float:
        base = min(self.max_reconnect_delay, self.reconnect_delay * 2 ** min(self._failures, 16))
        self._failures += 1
        return base * (0.5 + self.random.random() * 0.5)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _on_open(self, conn: Connection, session: str | None, position: str | None,
                 heartbeat: float, key: str | None = None) -> None:
        for timer in conn.timers:
            if timer.active():
                timer.cancel()
        conn.timers = []
        conn.opened = True
        conn.heartbeat = heartbeat or 0.0
        self._failures = 0
        self.state = "open"
        self._new_session(conn, session, key)
        if position:
            self.last_event_id = position
        self._watch(conn)
        self._emit("open", {"transport": conn.name, "session": self.session})
        self._sync(conn.resume_from)
        self._settle()
        if self._outbox and self.state == "open":
            outbox, self._outbox = self._outbox, []
            self._transmit(outbox)
        opened, self._opened = self._opened, []
        for d in opened:
            d.callback(self)

    def _new_session(self, conn: Connection, session: str | None, key: str | None = None) -> bool:
        """The server named ``conn``'s session (and its key, when new): it starts with the URL's subjects."""
        if session and session != self.session:
            self.session = session
            self.session_key = key if isinstance(key, str) else None
            self._server_subs = [conn.subjects] if conn.subjects else []
            return True
        return False

    def _watch(self, conn: Connection) -> None:
        """(Re)start the dead-connection timer of a streaming ``conn``."""
        if not conn.streaming or conn.ended:
            return
        limit = self.heartbeat_timeout or ((conn.heartbeat or 20.0) * 2 + 2)
        for timer in conn.timers:
            if timer.active():
                timer.reset(limit)
                return
        conn.timers = [self.reactor.callLater(limit, self._lost, conn, "heartbeat timeout")]

    # -- receiving ------------------------------------------------------------

    def _text(self, conn: Connection, text: str) -> None:
        if conn is not self._conn or conn.ended:
            return
        try:
            value = json.loads(text)
        except ValueError as e:
            self._lost(conn, f"bad message: {e}")
            return
        self._receive(conn, value if isinstance(value, list) else [value])

    def _receive(self, conn: Connection, messages: Iterable[Any]) -> None:
        for message in messages:
            if conn is not self._conn or conn.ended:
                return
            if isinstance(message, dict):
                self._message(conn, message)
        if conn is self._conn and conn.opened and not conn.ended:
            self._watch(conn)

    def _answer(self, conn: Connection, answer: Any) -> None:
        """A long-poll or poll answer: ``{session, position, messages}``."""
        if conn is not self._conn or conn.ended or not isinstance(answer, dict):
            return
        renewed = False
        if not conn.opened:
            self._on_open(conn, answer.get("session"), None, 0.0, answer.get("session_key"))
        else:
            renewed = self._new_session(conn, answer.get("session"), answer.get("session_key"))
        messages = answer.get("messages")
        self._receive(conn, messages if isinstance(messages, list) else [])
        if conn is self._conn and not conn.ended:
            if answer.get("position"):
                self.last_event_id = str(answer["position"])
            if renewed:
                self._sync(conn.resume_from)

    def _message(self, conn: Connection, message: Message) -> None:
        kind = message.get("type")
        if kind == "open":
            self._on_open(conn, message.get("session"), message.get("position"),
                          float(message.get("heartbeat") or 0), message.get("session_key"))
        elif kind == "event":
            self._event(message)
        elif kind == "recovery":
            if not message.get("recovered"):
                self._emit("gap", {"reason": message.get("reason") or "not recovered",
                                   "recovered": False, "dropped": None})
        elif kind == "gap":
            self._emit("gap", {"reason": message.get("reason") or "gap", "recovered": False,
                               "dropped": message.get("dropped")})
        elif kind in ("ack", "nack"):
            self._reply(message)
        elif kind == "reconnect":
            self._lost(conn, "reconnect", now=True)
        elif kind == "unsubscribed":
            self._revoked(message)
        elif kind == "close":
            self.session = self.session_key = None  # the server ended the session: resume in a new one
            reason = f"closed by server: {message.get('reason', '')}"
            if message.get("reconnect") is False:
                self._shut(reason)  # the application ended it
            else:
                self._lost(conn, reason)

    def _fresh(self, event_id: str | None) -> bool:
        """Whether the message with ``event_id`` is new (else a resume overlapped); remembers it."""
        if event_id is None:
            return True
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        self.last_event_id = event_id
        return True

    def _revoked(self, message: Message) -> None:
        """The server removed our subscriptions at, under and above a subject: drop them here too."""
        subject = message.get("subject")
        event_id = message.get("id")
        if not isinstance(subject, str) or not subject or not self._fresh(
                None if event_id is None else str(event_id)):
            return
        subs: dict[str, list[Handler]] = {}
        dropped = []
        for pattern, handlers in self._subs.items():
            rest = _without(pattern, subject)
            if rest:
                subs.setdefault(rest, []).extend(handlers)
            else:
                dropped.append(pattern)
        self._subs = subs
        self._server_subs = [rest for rest in (_without(entry, subject) for entry in self._server_subs)
                             if rest]
        self._emit("unsubscribed", {"subject": subject, "reason": message.get("reason") or "",
                                    "subjects": dropped})

    def _event(self, message: Message) -> None:
        event_id = message.get("id")
        if event_id is not None:
            event_id = str(event_id)
        if not self._fresh(event_id):
            return
        fields = message.get("fields")
        subject = message.get("subject")
        event = ClientEvent(None if subject is None else str(subject), event_id,
                            dict(fields) if isinstance(fields, dict) else {},
                            str(message.get("name") or "data"),
                            str(message["to"]) if message.get("to") else None)
        for pattern, handlers in [] if event.to else list(self._subs.items()):
            if event.subject and event.subject.startswith(split_subjects(pattern)):
                for handler in list(handlers):
                    self._call(handler, event)
        self._emit("event", event)

    def _reply(self, message: Message) -> None:
        ref = message.get("ref")
        entry = self._pending.pop(ref, None) if isinstance(ref, int) else None
        refused = message.get("type") == "nack"
        if entry is None:
            if refused:
                self._emit("error", {"reason": message.get("reason") or "refused", "reply": message})
            return
        if entry.subject is not None:
            self._subscribed(entry.subject, message if refused else None)
        if entry.deferred is None:
            if refused:
                self._emit("error", {"reason": message.get("reason") or "refused", "reply": message})
        elif refused:
            entry.deferred.errback(Refused(str(message.get("reason") or "refused"), message))
        else:
            entry.deferred.callback(message)

    def _fail_pending(self, conn: Connection | None, reason: str) -> None:
        """Fail the calls waiting on ``conn`` (every one when ``None``)."""
        failed = [ref for ref, entry in self._pending.items() if conn is None or entry.conn is conn]
        for ref in failed:
            entry = self._pending.pop(ref)
            if entry.deferred is not None:
                entry.deferred.errback(Refused(reason))

    # -- subscriptions ------------------------------------------------------

    def _covered(self, subject: str) -> bool:
        present: list[str] = []
        for entry in self._server_subs:
            present.append(entry)
            present.extend(split_subjects(entry))
        return subject in present

    def _settle(self) -> None:
        """Fire the subscribe calls whose subject the server has (from a connect URL)."""
        for subject in list(self._waiting):
            if self._covered(subject) and not any(
                    entry.subject == subject for entry in self._pending.values()):
                for d in self._waiting.pop(subject):
                    d.callback(None)

    def _subscribed(self, subject: str, nack: Message | None) -> None:
        for d in self._waiting.pop(subject, []):
            if nack is None:
                d.callback(None)
            else:
                d.errback(Refused(str(nack.get("reason") or "refused"), nack))

    def _sync(self, resume_from: str | None) -> None:
        """Bring the session's subscriptions on the server in line with ours.

        As in ``pushpy.js``: a new session holds the connect URL's comma list
        as one subscription, kept while all its subjects are wanted, dropped
        when none is; when only some are, everything is subscribed anew,
        resuming from our position so nothing is lost.
        """
        if self.state != "open":
            return  # the next connect carries them
        want = list(self._subs)
        keep: list[str] = []
        present: list[str] = []
        remove: list[str] = []
        messages: list[Message] = []
        reset = False
        for entry in self._server_subs:
            if entry in want:
                keep.append(entry)
                present.append(entry)
                continue
            parts = split_subjects(entry)
            wanted = sum(1 for part in parts if part in want)
            if not wanted:
                remove.append(entry)
            elif wanted == len(parts):
                keep.append(entry)
                present.extend(parts)
            else:
                reset = True
                break
        if reset:
            messages.append({"type": "unsubscribe"})
            for subject in want:
                messages.append(_subscribe(subject, self.last_event_id))
            keep = list(want)
        else:
            for entry in remove:
                messages.append({"type": "unsubscribe", "subject": entry})
            for subject in want:
                if subject not in present:
                    messages.append(_subscribe(subject, resume_from))
                    keep.append(subject)
        self._server_subs = keep
        for message in messages:
            self._ref += 1
            message["ref"] = self._ref
            subject = message["subject"] if message["type"] == "subscribe" else None
            self._pending[self._ref] = _Pending(None, subject=subject)
        if messages:
            self._transmit(messages)

    # -- sending ----------------------------------------------------------------

    def _transmit(self, messages: list[Message]) -> None:
        conn = self._conn
        if conn is not None and conn.sends_frames and conn.opened and not conn.ended:
            for message in messages:
                entry = self._pending.get(message["ref"])
                if entry is not None:
                    entry.conn = conn
            try:
                conn.send(messages)
            except Exception as e:
                self._lost(conn, f"send failed: {e}")
            return
        self._post(messages)

    def _post(self, messages: list[Message] = ()) -> None:  # type: ignore[assignment]
        """Send client messages with ``POST <root>send`` (one request at a time)."""
        self._posts.extend(messages)
        if self._posting or not self._posts or self.state == "closed":
            return
        session = self.session
        if not session:
            self._requeue(self._posts)
            self._posts = []
            return
        batch, self._posts = self._posts[:64], self._posts[64:]  # server: limit.params per request
        self._posting = True
        d = self.http.post(self.url + "send?" + query({"session": session,
                                                       "session_key": self.session_key}),
                           data=json.dumps(batch).encode("utf-8"),
                           headers={"Content-Type": ["application/json"]}, timeout=30)

        def answered(response: Any) -> Deferred | None:
            if response.code == 200:
                return response.json().addCallback(replied)
            response.deliverBody(Protocol())
            if response.code == 404 and session == self.session:
                # The session is gone: nothing was done; publishes wait for the next one.
                self.session = self.session_key = None
                self._requeue(batch)
                if self._conn is not None and not self._conn.ended:
                    self._lost(self._conn, "session expired")
                return None
            failed(f"HTTP status {response.code}")
            return None

        def replied(replies: Any) -> None:
            for i, message in enumerate(batch):
                reply = replies[i] if isinstance(replies, list) and i < len(replies) else None
                if not isinstance(reply, dict):
                    reply = {"type": "nack", "ref": message["ref"], "reason": "no reply"}
                self._reply(reply)

        def failed(reason: str) -> None:
            for message in batch:
                self._reply({"type": "nack", "ref": message["ref"], "reason": reason})

        def done(result: Any) -> None:
            self._posting = False
            if self.state != "closed":
                self._post()

        d.addCallback(answered)
        d.addErrback(lambda reason: failed(f"send failed: {reason.getErrorMessage()}"))
        d.addBoth(done)

    def _requeue(self, messages: list[Message]) -> None:
        """Unsent messages of a session that is gone: publishes wait for the next one."""
        for message in messages:
            if message["type"] == "publish":
                self._outbox.append(message)
            else:
                entry = self._pending.pop(message["ref"], None)  # subscriptions come back by _sync
                if entry is not None and entry.subject is not None:
                    self._server_subs = [s for s in self._server_subs if s != entry.subject]

    # -- helpers ----------------------------------------------------------------

    def _emit(self, name: str, *args: Any) -> None:
        for listener in list(self._listeners.get(name, [])):
            self._call(listener, *args)

    def _call(self, function: Callable[..., object], *args: Any) -> None:
        try:
            function(*args)
        except Exception:
            self.log.failure("pushpy client callback {function!r} failed", function=function)


def _without(subjects: str, revoked: str) -> str:
    """``subjects`` (a comma list) without the parts overlapping ``revoked``, as the server removes them."""
    return ",".join(part for part in split_subjects(subjects) if not overlaps(part, revoked))


def _subscribe(subject: str, last_event_id: str | None) -> Message:
    message: Message = {"type": "subscribe", "subject": subject}
    if last_event_id:
        message["last_event_id"] = last_event_id
    return message

