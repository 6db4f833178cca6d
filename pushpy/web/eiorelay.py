# test-case-name: tests.cluster.test_cluster_socketio
"""Engine.IO long-polling behind a balancer without sticky sessions (Redis backplane).

An Engine.IO session lives on the node that opened it; with the Redis
backplane its sid names that node (``<random>.<node>``, opaque to clients).
A polling ``GET`` or ``POST`` that lands on another node is **relayed**
through Redis, the only path between nodes: the asking node publishes it on
the owner's direct channel with a request id (:meth:`RedisBackplane.send_direct
<pushpy.cluster.redis_backplane.RedisBackplane.send_direct>`), holds the
client's request, and answers it with what comes back on its own channel.
The owner runs the request through :meth:`EngineResource.render
<pushpy.web.engineio.EngineResource.render>` like a local one, on a
:class:`RelayedRequest` that sends the answer back when finished: a relayed
``GET`` waits for packets as a local poll does (at most the ping interval), the
one-poll-at-a-time rule and the body size limit apply unchanged.

Failures answer like an unknown sid (400, Engine.IO's error body), so the
client reconnects: the owner is gone (nobody got the request, or its channel
has no subscriber at the next check, every :data:`CHECK_EVERY` seconds), Redis
is unreachable, or no answer came in time.  A client that drops a relayed
poll, or a relay that gives up, cancels it on the owner, which then treats the
poll as a lost connection (the session closes); an answer the owner cannot
deliver (the asking node is gone) closes the session too, so the packets it
carried are never silently lost.  WebSocket upgrades are not relayed: one
landing on another node gets the unknown-sid 400, and clients keep polling.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from io import BytesIO
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Request

from pushpy.web.engineio import error_answer
from pushpy.wire import engineio as E

if TYPE_CHECKING:
    from pushpy.cluster.redis_backplane import RedisBackplane
    from pushpy.web.engineio import EngineResource, EngineServer

log = Logger()
#: The kind of the relay's direct messages.
KIND = "eio"
#: Seconds an answer may take beyond what the owner may wait (the ping interval, for a poll).
RELAY_MARGIN = 3.0
#: Seconds between checks that the owners of pending relays are still subscribed.
CHECK_EVERY = 1.0
_NODE = re.compile(r"[0-9a-f]{1,32}")


def pack_body(body: bytes) -> dict[str, str]:
    """A body as a relay message carries it: text when it is UTF-8, else base64 (exact either way)."""
    try:
        return {"b": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(body).decode("ascii")}


def unpack_body(message: dict[str, Any]) -> bytes:
    if "b64" in message:
        return base64.b64decode(message["b64"])
    return str(message.get("b", "")).encode("utf-8")


class RelayedRequest:
    """On the owner, a request that came from another node: what the Engine.IO resource uses of one.

    :meth:`finish` sends the answer back; :meth:`lost` is the asking node's
    cancel (its client went away, or it gave up), seen as a lost connection.
    """

    channel = None  # no connection of this node's (shutdown has nothing to drain)

    def __init__(self, relay: EngineRelay, origin: str, rid: str, sid: str, method: bytes,
                 uri: bytes, body: bytes, oversized: bool) -> None:
        self.relay = relay
        self.origin = origin
        self.rid = rid
        self.sid = sid
        self.method = method
        self.uri = uri
        self.content = BytesIO(body)
        #: The client's body was over ``socketio.max.http.buffer.size`` (not relayed).
        self.oversized = oversized
        self.requestHeaders = Headers()
        self.responseHeaders = Headers()
        self.code = 200
        self.finished = False
        self._body: list[bytes] = []
        self._waiting: list[Deferred] = []

    def getHeader(self, name: bytes) -> bytes | None:
        return None  # a relayed request is never a WebSocket handshake

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code

    def write(self, data: bytes) -> None:
        self._body.append(data)

    def notifyFinish(self) -> Deferred:
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.relay.answered(self, b"".join(self._body))
        self._fire(None)

    def lost(self) -> None:
        """The asking node cancelled the request."""
        if not self.finished:
            self.finished = True
            self._fire(Failure(ConnectionLost("relayed request cancelled")))

    def _fire(self, result: Any) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


class _Outgoing:
    """A client's request held on the asking node until the owner answers."""

    __slots__ = ("owner", "request", "rid", "timer")

    def __init__(self, rid: str, owner: str, request: Request, timer: Any) -> None:
        self.rid = rid
        self.owner = owner
        self.request = request
        self.timer = timer


class EngineRelay:
    """Relays polling requests for sessions of other nodes, and serves those relayed here."""

    def __init__(self, engine: EngineServer, backplane: RedisBackplane) -> None:
        self.engine = engine
        self.backplane = backplane
        self.node = backplane.node
        self.clock = engine.server.clock
        #: What this node appends to its sids.
        self.suffix = "." + self.node
        self.resource: EngineResource | None = None
        self._ids = itertools.count(1)
        self._outgoing: dict[str, _Outgoing] = {}
        self._incoming: dict[tuple[str, str], RelayedRequest] = {}
        self._watch: LoopingCall | None = None
        backplane.direct_handlers[KIND] = self._message

    def owner_of(self, sid: str) -> str | None:
        """The other node ``sid`` names, if it names one."""
        node = sid.rpartition(".")[2]
        if node == self.node or "." not in sid or not _NODE.fullmatch(node):
            return None
        return node

    # -- the asking node -----------------------------------------------------

    def forward(self, request: Request, owner: str, sid: str, max_body: int) -> int:
        """Relay a polling request to ``owner``; the client's request is answered later."""
        rid = str(next(self._ids))
        message: dict[str, Any] = {"k": "req", "id": rid, "from": self.node, "sid": sid,
                                   "m": request.method.decode("ascii"),
                                   "u": request.uri.decode("latin-1")}
        if request.method == b"POST":
            content = request.content
            content.seek(0, 2)
            if content.tell() > max_body:
                message["over"] = True  # refused by the owner, which closes the session
            else:
                content.seek(0)
                message.update(pack_body(content.read()))
        engine = self.engine
        wait = max(engine.ping_interval, engine.ping_timeout) if request.method == b"GET" else 0.0
        timer = self.clock.callLater(wait + RELAY_MARGIN, self._fail, rid, "no answer in time")
        self._outgoing[rid] = _Outgoing(rid, owner, request, timer)
        if self._watch is None:
            self._watch = LoopingCall(self._check)
            self._watch.clock = self.clock
            self._watch.start(CHECK_EVERY, now=False)
        request.notifyFinish().addErrback(lambda _: self._client_gone(rid))
        sent = self.backplane.send_direct(owner, KIND, json.dumps(message, ensure_ascii=False))
        sent.addCallbacks(lambda got: None if int(got) else self._fail(rid, "no such node", quiet=True),
                          lambda f: self._fail(rid, f"redis: {f.getErrorMessage()}"))
        return NOT_DONE_YET

    def _fail(self, rid: str, reason: str, *, quiet: bool = False) -> None:
        """No answer will come: the client is told its sid is unknown, the owner forgets the request.

        ``quiet``: nobody got the request (a dead node, or a made-up sid): logged at debug only.
        """
        pending = self._take(rid)
        if pending is None:
            return
        (log.debug if quiet else log.info)(
            "engine.io relay to {owner} failed ({reason}): answering as an unknown sid",
            owner=pending.owner, reason=reason)
        self._cancel(pending)
        request = pending.request
        if _open(request):
            request.write(error_answer(request, E.UNKNOWN_SID))
            request.finish()

    def _client_gone(self, rid: str) -> None:
        pending = self._take(rid)
        if pending is not None:
            self._cancel(pending)

    def _cancel(self, pending: _Outgoing) -> None:
        message = json.dumps({"k": "cancel", "id": pending.rid, "from": self.node})
        self.backplane.send_direct(pending.owner, KIND, message).addErrback(lambda _: None)

    def _take(self, rid: str) -> _Outgoing | None:
        pending = self._outgoing.pop(rid, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()
        if not self._outgoing and self._watch is not None:
            watch, self._watch = self._watch, None
            if watch.running:
                watch.stop()
        return pending

    def _check(self) -> None:
        """Fail the relays whose owner no longer listens (killed), or all of them without Redis."""
        if not self.backplane.link.up:
            for rid in list(self._outgoing):
                self._fail(rid, "redis unreachable")
            return
        owners = sorted({pending.owner for pending in self._outgoing.values()})
        if not owners:
            return

        def gone(listening: dict[str, bool]) -> None:
            for rid, pending in list(self._outgoing.items()):
                if not listening.get(pending.owner, True):
                    self._fail(rid, "node gone")

        self.backplane.listening(owners).addCallbacks(gone, lambda _: None)

    def _answer(self, message: dict[str, Any]) -> None:
        pending = self._take(str(message.get("id")))
        if pending is None:
            return  # given up on, or its client went away
        request = pending.request
        if not _open(request):
            return
        request.setResponseCode(int(message.get("s", 200)))
        for name, value in message.get("h", []):
            request.responseHeaders.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        body = unpack_body(message)
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        request.write(body)
        request.finish()

    # -- the owner -----------------------------------------------------------

    def _serve(self, message: dict[str, Any]) -> None:
        if self.resource is None:
            return
        request = RelayedRequest(self, str(message["from"]), str(message["id"]), str(message["sid"]),
                                 str(message["m"]).encode("ascii"), str(message["u"]).encode("latin-1"),
                                 unpack_body(message), bool(message.get("over")))
        self._incoming[(request.origin, request.rid)] = request
        result = self.resource.render(request)
        if result is not NOT_DONE_YET and not request.finished:
            request.write(result)
            request.finish()

    def answered(self, request: RelayedRequest, body: bytes) -> None:
        """Send a relayed request's answer back; close its session if the asking node is gone."""
        self._incoming.pop((request.origin, request.rid), None)
        headers = [[name.decode("latin-1"), value.decode("latin-1")]
                   for name, values in request.responseHeaders.getAllRawHeaders()
                   for value in values if name.lower() != b"content-length"]
        message = {"k": "res", "id": request.rid, "s": request.code, "h": headers, **pack_body(body)}
        sent = self.backplane.send_direct(request.origin, KIND, json.dumps(message, ensure_ascii=False))
        sent.addCallbacks(lambda got: None if int(got) else self._undelivered(request),
                          lambda _: self._undelivered(request))

    def _undelivered(self, request: RelayedRequest) -> None:
        session = self.engine.sessions.get(request.sid)
        if session is not None:
            log.info("engine.io relay: answer for {sid} not delivered (node {node} gone): closing it",
                     sid=request.sid, node=request.origin)
            session.close("transport error")

    # -- messages ------------------------------------------------------------

    def _message(self, text: str) -> None:
        message = json.loads(text)
        kind = message.get("k")
        if kind == "req":
            self._serve(message)
        elif kind == "res":
            self._answer(message)
        elif kind == "cancel":
            request = self._incoming.pop((str(message.get("from")), str(message.get("id"))), None)
            if request is not None:
                request.lost()


def _open(request: Request) -> bool:
    """Whether the client's request may still be answered."""
    return not request.finished and not getattr(request, "_disconnected", False)


__all__ = ["EngineRelay", "RelayedRequest"]
