"""What a lost connection must not cost: an event stored twice, or a pull response's events.

A :class:`relay.Relay` between a backplane and the real Redis cuts the
connection while publishes are in flight, after Redis ran them or before it got
them.  A Pushlet pull client on in-process servers (real loopback HTTP) leaves
while its response waits for Redis to store its position.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from cluster_support import REDIS_URL, RedisServer, xml_events
from redis_keys import command
from relay import Relay
from server_support import Running, eventually
from twisted.internet import reactor, tcp
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from pushpy.cluster.redis_backplane import RedisBackplane
from pushpy.core.events import Event


def data(n: int) -> Event:
    return Event({"p_event": "data", "p_subject": "/p", "n": str(n)})


def logged(prefix: str, port: int = 6379) -> list[tuple[int, str]]:
    """(offset, n) of every event in the log."""
    entries = command("XRANGE", f"{prefix}:log", "-", "+", port=port)
    return [(int(entry_id.split("-")[0]), json.loads(values[values.index("e") + 1])[0]["n"])
            for entry_id, values in entries]


def numbers(prefix: str, port: int = 6379) -> list[str]:
    return [n for _, n in logged(prefix, port)]


def received(backplane: RedisBackplane) -> list[tuple[int, str]]:
    """What ``backplane`` delivers, as (offset, n)."""
    seen: list[tuple[int, str]] = []
    backplane.attach(lambda event: seen.append((event.offset, event.fields["n"])))
    return seen


@pytest_twisted.ensureDeferred
async def test_a_publish_whose_answer_was_lost_is_stored_and_delivered_once(make, prefix):
    relay = Relay()
    try:
        node, other = make(relay.url), make()
        own, seen = received(node), received(other)
        await node.start()
        await other.start()
        await node.publish(data(0))
        cut = relay.cut_at(b'"n":"1"', forward=True)
        published = node.publish(data(1))
        await cut
        await eventually(lambda: numbers(prefix) == ["0", "1"])  # Redis ran it; no answer yet
        assert not published.called
        relay.reopen()
        stored = await published
        await node.publish(data(2))
        log = logged(prefix)
        assert [n for _, n in log] == ["0", "1", "2"]
        assert stored.offset == log[1][0] and stored.fields["n"] == "1"
        await eventually(lambda: ("2" in dict(seen).values()) and ("2" in dict(own).values()))
        assert seen == own == log  # every node delivered each once, in log order
    finally:
        await relay.close()


@pytest_twisted.ensureDeferred
async def test_publishes_cut_before_redis_got_them_are_stored_once_in_order(make, prefix):
    relay = Relay()
    try:
        node, other = make(relay.url), make()
        seen = received(other)
        await node.start()
        await other.start()
        await node.publish(data(0))
        cut = relay.cut_at(b'"n":"2"', forward=False)  # 1 reaches Redis, 2 and 3 do not
        published = [node.publish(data(n)) for n in (1, 2, 3)]
        await cut
        await eventually(lambda: numbers(prefix) == ["0", "1"])
        relay.reopen()
        stored = await gatherResults(published)
        log = logged(prefix)
        assert [n for _, n in log] == ["0", "1", "2", "3"]
        assert [(event.offset, event.fields["n"]) for event in stored] == log[1:]
        await eventually(lambda: len(seen) >= 4)
        await node.publish(data(4))  # anything sent twice would come before it
        await eventually(lambda: seen[-1][1] == "4")
        assert [n for _, n in seen] == ["0", "1", "2", "3", "4"]
    finally:
        await relay.close()


@pytest_twisted.ensureDeferred
async def test_publishes_in_flight_when_redis_came_back_empty_go_to_the_new_log(make, prefix, tmp_path):
    redis = RedisServer(tmp_path)
    relay = Relay(redis.port)
    try:
        node = make(relay.url)
        await node.start()
        first = await node.publish(data(0))
        cut = relay.cut_at(b'"n":"1"', forward=True)
        published = node.publish(data(1))
        await cut
        await eventually(lambda: numbers(prefix, redis.port) == ["0", "1"])
        redis.kill()
        redis.start()  # empty: a new epoch, nothing of the old log
        relay.reopen()
        stored = await published
        assert stored.epoch != first.epoch and stored.offset == 1
        assert numbers(prefix, redis.port) == ["1"]
    finally:
        await relay.close()
        redis.kill()


# -- a Pushlet pull response whose client left ---------------------------------------


class _Request(Protocol):
    """One raw HTTP request whose connection the test closes at will."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.transport.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def served(port: int) -> bool:
    """Whether the server side of the connection from local ``port`` is still open."""
    return any(isinstance(reader, tcp.Server) and reader.getPeer().port == port
               for reader in reactor.getReaders())


async def refresh(node: Running, session_id: str) -> list[str]:
    code, _, body = await node.get(f"pushlet.srv?p_event=refresh&p_id={session_id}")
    assert code == 200, body
    events = xml_events(body)
    assert not [e for e in events if e.get("p_event") in ("nack", "abort")], events
    return [e["n"] for e in events if e.get("p_event") == "data"]


async def leave_while_stored(a: Running, b: Running, session_id: str, sent: list[str]) -> None:
    """A refresh on ``a`` takes ``sent``; its client leaves before ``a`` hears Redis stored the position."""
    record = f"{a.push.config.backplane_prefix}:session:{session_id}"

    def position() -> object:
        return command("HGET", record, "position")

    def session() -> Any:
        return a.push.dispatcher.find(session_id)

    client = _Request(f"/pushlet/pushlet.srv?p_event=refresh&p_id={session_id}")
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", a.number), client)
    port = client.transport.getHost().port
    await eventually(lambda: session() is not None and session().channels)  # waiting for events
    before = position()
    commands = a.push.backplane.link.commands.transport
    commands.pauseProducing()  # a reads no answer from Redis for now
    try:
        await gatherResults([b.push.publish("/drop", n=n) for n in sent])
        await eventually(lambda: not session().channels)  # the response took what had come
        stored = session().position
        assert stored != before
        await eventually(lambda: position() == stored)  # Redis stored it; a does not know yet
        client.transport.loseConnection()
        await eventually(lambda: not served(port))
    finally:
        commands.resumeProducing()
    await eventually(lambda: position() == before)  # put back: the client never got those events
    assert client.data == b""


@pytest_twisted.ensureDeferred
async def test_events_of_a_pull_response_whose_client_left_go_to_its_next_refresh_once(
        prefix, pushpy_server):
    settings = {"backplane": REDIS_URL, "backplane_prefix": prefix,
                "session_end_on_disconnect": False}
    a, b = pushpy_server(**settings), pushpy_server(**settings)
    await eventually(lambda: a.push.backplane.state == b.push.backplane.state == "up", timeout=10)
    code, _, body = await a.get("pushlet.srv?p_event=join-listen&p_format=xml&p_mode=pull"
                                "&p_subject=/drop")
    assert code == 200, body
    session_id = next(e["p_id"] for e in xml_events(body) if e.get("p_event") == "join-listen-ack")
    # First the client's next refresh goes to the same node, then to the other one.
    for turn, (next_node, then_node) in enumerate(((a, b), (b, a))):
        sent = [f"{turn}.{i}" for i in range(2)]
        await leave_while_stored(a, b, session_id, sent)
        assert await refresh(next_node, session_id) == sent
        assert await refresh(then_node, session_id) == []  # not twice
