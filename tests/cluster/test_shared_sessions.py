"""Shared session records in one process against real Redis: what no real-process test can time."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from cluster_support import REDIS_URL, unique_prefix
from redis_keys import command, delete_prefix
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred

from pushpy.cluster.redis_backplane import RedisBackplane
from pushpy.config import Config
from pushpy.core.history import Recovery
from pushpy.server import PushServer
from pushpy.web.authz import session_key_digest
from pushpy.web.native import ANNOUNCE, NativeProtocol
from pushpy.web.site import build_site


def sleep(seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def answer(value: Any) -> Any:
    """``value``, or its result when it is a Deferred."""
    return await value if isinstance(value, Deferred) else value


@pytest.fixture
def server():
    prefix = unique_prefix()
    backplane = RedisBackplane(REDIS_URL, reactor=reactor, prefix=prefix)
    push = PushServer(Config(), reactor=reactor, backplane=backplane)
    yield push
    push.dispatcher.shutdown()
    backplane.stop()
    delete_prefix(prefix)


@pytest_twisted.ensureDeferred
async def test_a_connect_whose_client_left_during_the_record_lookup_makes_no_session(server):
    """Cancelled (the client went away) while the record of another node's session is read: no new
    session is made in its place (it would be nobody's, and show its user online)."""
    await server.backplane.start()
    command("HSET", f"{server.backplane.prefix}:session:elsewhere", "format", "json", "subs", "[]",
          "key", session_key_digest("k"))
    connecting = NativeProtocol(server).connect(
        {"session": "elsewhere", "session_key": "k"}, last_event_id=None, address="127.0.0.1",
        user_agent="test", now=reactor.seconds())
    assert isinstance(connecting, Deferred)
    connecting.cancel()
    with pytest.raises(CancelledError):
        await connecting
    await sleep(0.1)  # the lookup's answer arrives meanwhile
    assert server.dispatcher.sessions == {}


@pytest_twisted.ensureDeferred
async def test_record_writes_are_not_kept_once_done(server):
    """Tombstones and subscription changes are waited on by answers, then forgotten (no leak)."""
    await server.backplane.start()
    native = NativeProtocol(server)
    shared = server.shared_sessions
    for _ in range(3):
        session, _ = await answer(native.connect({"subject": "/w"}, last_event_id=None,
                                                 address="127.0.0.1", user_agent="test",
                                                 now=reactor.seconds()))
        for message in ({"type": "subscribe", "subject": "/v"}, {"type": "leave"}):
            reply = await answer(native.handle(session, message, reactor.seconds()))
            assert reply["type"] == "ack", reply
    assert shared._ending == {} and shared._changes == {}


class _Client(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)


@pytest_twisted.ensureDeferred
async def test_a_websocket_gone_while_continuing_another_nodes_session_leaves_it_alive(server):
    """A WebSocket continuing a session from its record, gone while the resume waits on Redis: the
    session is not ended (before, it was ended with ``leave``: tombstoned, on every node)."""
    server.startService()
    port = reactor.listenTCP(0, build_site(server), interface="127.0.0.1")
    try:
        await server.backplane.start()
        record = f"{server.backplane.prefix}:session:elsewhere"
        command("HSET", record, "format", "json", "subs", "[]", "key", session_key_digest("k"))
        resuming: Deferred = Deferred()
        asked: list[bool] = []

        def since(*args: Any) -> Deferred:
            asked.append(True)
            return resuming  # Redis answers the resume later

        server.backplane.since = since
        url = f"ws://127.0.0.1:{port.getHost().port}/pushlet/ws?" + urlencode(
            {"session": "elsewhere", "session_key": "k", "last_event_id": "old:0"})
        factory = WebSocketClientFactory(url)
        factory.protocol = _Client
        factory.opened = Deferred()
        connectWS(factory)
        client = await factory.opened
        while not asked:
            await sleep(0.02)
        client.transport.abortConnection()  # the client is gone before the session is resumed
        await sleep(0.3)
        resuming.callback(Recovery())
        await sleep(0.3)
        assert command("HGET", record, "ended") is None  # not tombstoned
        assert server.dispatcher.find("elsewhere") is not None  # the copy lives until its lease ends
    finally:
        await port.stopListening()
        stopped = server.stopService()
        if stopped is not None:
            await stopped


@pytest_twisted.ensureDeferred
async def test_a_resume_that_reads_the_log_ahead_of_live_delivery_queues_no_repeats():
    """A node's pub/sub messages can arrive after the reply of a log read that already holds their
    events: a session resumed from the log skips those live repeats (``Session.floor``), and a
    Pushlet pull copy stores a position covering what it queued (no repeats on the next node)."""
    prefix = unique_prefix()
    servers = [PushServer(Config(), reactor=reactor,
                          backplane=RedisBackplane(REDIS_URL, reactor=reactor, prefix=prefix))
               for _ in range(2)]
    a, b = servers
    try:
        for push in servers:
            await push.backplane.start()
        first, start = await answer(NativeProtocol(a).connect(
            {"subject": "/f"}, last_event_id=None, address="127.0.0.1", user_agent="test",
            now=reactor.seconds()))
        key = first.data[ANNOUNCE]
        subscriber = b.backplane.link.subscriber
        held: list[tuple[str, str]] = []
        subscriber.on_message = lambda *message: held.append(message)  # b's live delivery lags
        ids = [(await a.publish("/f", n=str(i))).offset for i in range(3)]
        session, _ = await answer(NativeProtocol(b).connect(
            {"session": first.id, "session_key": key}, last_event_id=start, address="127.0.0.1",
            user_agent="test", now=reactor.seconds()))
        assert session.floor == ids[-1]
        subscriber.on_message = b.backplane.link.on_message
        for message in held:  # arriving now, after the log read that got them already
            subscriber.on_message(*message)
        later = (await a.publish("/f", n="3")).offset
        for _ in range(100):
            if b.backplane.last_offset >= later:
                break
            await sleep(0.02)
        queued = [event.offset for event, _ in session.queue.drain() if event.offset is not None]
        assert queued == [*ids, later]
        assert session.floor is None
    finally:
        for push in servers:
            push.dispatcher.shutdown()
            push.backplane.stop()
        delete_prefix(prefix)
