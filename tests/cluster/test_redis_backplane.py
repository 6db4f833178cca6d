"""The Redis backplane against real Redis: order, resume, history, epochs, outages.

Shared-Redis tests use a fresh key prefix each; outage tests run a private
``redis-server`` and kill and restart it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_twisted
from cluster_support import REDIS_URL, RedisServer
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from pushpy.cluster.redis_backplane import RedisBackplane
from pushpy.core.events import Event, Route


def sleep(seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    waited = 0.0
    while not check():
        assert waited < timeout, "condition not met in time"
        await sleep(0.02)
        waited += 0.02


def data(subject: str, n: int) -> Event:
    return Event({"p_event": "data", "p_subject": subject, "n": str(n)})


@pytest_twisted.ensureDeferred
async def test_every_node_receives_every_event_in_one_order(make):
    nodes = [make() for _ in range(3)]
    received: list[list[str]] = [[] for _ in nodes]
    for node, log in zip(nodes, received, strict=True):
        node.attach(lambda event, log=log: log.append(f"{event.position} {event.fields['n']}"))
        await node.start()
    stored = []
    for i in range(30):  # publishers on every node, interleaved
        stored.append(nodes[i % 3].publish(data(f"/s/{i % 4}", i)))
    offsets = [(await d).offset for d in stored]
    assert sorted(offsets) == list(range(1, 31))
    for publisher in range(3):  # each publisher's events are stored in the order it sent them
        own = offsets[publisher::3]
        assert own == sorted(own)
    await eventually(lambda: all(len(log) == 30 for log in received))
    assert received[0] == received[1] == received[2]  # one order, seen by every node
    assert [int(line.split()[0].split(":")[1]) for line in received[0]] == list(range(1, 31))


@pytest_twisted.ensureDeferred
async def test_since_and_history_read_the_shared_log_from_any_node(make):
    a, b = make(), make()
    await a.start()
    await b.start()
    first = await a.publish(data("/x/1", 1))
    await a.publish(data("/y", 2))
    await a.publish(data("/x/2", 3))
    recovery = await b.since(f"{first.epoch}:0", lambda subject: subject.startswith("/x"))
    assert recovery.recovered and [e.fields["n"] for e in recovery.events] == ["1", "3"]
    after = await b.since(first.position, lambda subject: True)
    assert [e.fields["n"] for e in after.events] == ["2", "3"]
    assert [e.fields["n"] for e in await b.history("/x/2", 5)] == ["3"]
    assert (await b.since("other:0", lambda s: True)).reason == "unknown epoch"
    assert (await b.since(f"{first.epoch}:99", lambda s: True)).reason == "position ahead of history"
    assert (await b.since("garbage", lambda s: True)).reason == "malformed position"


@pytest_twisted.ensureDeferred
async def test_a_trimmed_log_is_reported_not_skipped(make):
    node = make(log_size=1)
    await node.start()
    first = await node.publish(data("/t", 0))
    for i in range(1, 300):  # MAXLEN ~ trims whole nodes of the stream
        await node.publish(data("/t", i))
    recovery = await node.since(first.position, lambda s: True)
    assert not recovery.recovered and recovery.reason == "history trimmed"


@pytest_twisted.ensureDeferred
async def test_expired_events_are_not_resumed(make):
    now = [1000.0]
    node = make(history_ttl=10, now=lambda: now[0])
    await node.start()
    old = await node.publish(data("/t", 0))
    await node.publish(data("/t", 1))
    now[0] += 60
    recovery = await node.since(f"{old.epoch}:0", lambda s: True)
    assert not recovery.recovered and recovery.reason == "history expired"


@pytest_twisted.ensureDeferred
async def test_unicast_and_broadcast_reach_every_node_and_are_resumed_by_their_owners(make):
    from pushpy.core.history import owner_keys

    a, b = make(), make()
    got: list[Event] = []
    b.attach(got.append)
    await a.start()
    await b.start()
    await a.publish(Event({"p_event": "data", "n": "1"}, route=Route.UNICAST, target="sid"))
    await a.publish(Event({"p_event": "data", "n": "2"}, route=Route.BROADCAST))
    await eventually(lambda: len(got) == 2)
    assert [(e.route, e.target, e.offset) for e in got] == [
        (Route.UNICAST, "sid", 1), (Route.BROADCAST, None, 2)]
    await a.publish(data("/x", 3))
    start = f"{a.epoch}:0"
    mine = await b.since(start, lambda subject: subject == "/x", owner_keys("sid", None))
    other = await b.since(start, lambda subject: subject == "/x", owner_keys("other", None))
    assert [e.fields["n"] for e in mine.events] == ["1", "2", "3"]
    assert [e.fields["n"] for e in other.events] == ["2", "3"]
    assert [e.fields["n"] for e in await b.history("/x", 10)] == ["3"]  # subject history: multicast only


@pytest_twisted.ensureDeferred
async def test_redis_restarted_empty_means_a_new_epoch_a_gap_and_queued_publishes_delivered(
        make, tmp_path):
    redis = RedisServer(tmp_path)
    try:
        node = make(redis.url)
        got: list[Event] = []
        gaps: list[str] = []
        node.attach(got.append)
        node.gap_listeners.append(gaps.append)
        await node.start()
        before = await node.publish(data("/r", 0))
        await eventually(lambda: len(got) == 1)
        redis.kill()
        await eventually(lambda: node.state == "degraded")
        waiting = node.publish(data("/r", 1))  # held in the outbox meanwhile
        await sleep(0.2)
        assert not waiting.called and len(got) == 1
        redis.start()
        stored = await waiting
        await eventually(lambda: len(got) == 2)
        assert node.state == "up" and got[1].fields["n"] == "1"
        assert stored.epoch != before.epoch and gaps  # the old log is gone: said so
        recovery = await node.since(before.position, lambda s: True)
        assert not recovery.recovered and recovery.reason == "unknown epoch"
    finally:
        redis.kill()


@pytest_twisted.ensureDeferred
async def test_a_node_cut_off_catches_up_from_the_log_without_a_gap(make):
    a, b = make(), make()
    got: list[str] = []
    b.attach(lambda event: got.append(event.fields["n"]))
    await a.start()
    await b.start()
    await a.publish(data("/k", 0))
    await eventually(lambda: got == ["0"])
    gaps: list[str] = []
    b.gap_listeners.append(gaps.append)
    b.link.subscriber.transport.loseConnection()  # b misses what is published now
    await eventually(lambda: b.state == "degraded")
    for i in range(1, 4):
        await a.publish(data("/k", i))
    await eventually(lambda: b.state == "up")
    await eventually(lambda: len(got) == 4)
    assert got == ["0", "1", "2", "3"] and gaps == []


@pytest_twisted.ensureDeferred
async def test_a_full_outbox_refuses_publishing(make):
    node = make("redis://127.0.0.1:1/0", outbox_size=1)  # nothing listens there
    node.start()
    node.publish(data("/o", 0)).addErrback(lambda _: None)
    with pytest.raises(Exception, match="outbox is full"):
        await node.publish(data("/o", 1))
    assert node.state == "degraded"


def test_bad_urls_are_refused_with_a_message():
    from pushpy.cluster.link import parse_redis_url
    from pushpy.errors import UsageError

    assert parse_redis_url("redis://:pw@h:7/3") == {"host": "h", "port": 7, "db": 3, "password": "pw"}
    for bad in ("http://h", "redis://", "redis://h/x"):
        with pytest.raises(UsageError):
            parse_redis_url(bad)


@pytest_twisted.ensureDeferred
async def test_presence_is_cluster_wide_and_a_dead_nodes_members_disappear(make, prefix):
    a, b = make(), make()
    await a.start()
    await b.start()
    assert await a.presence_enter("/room", "ann", "s1") is True
    assert await b.presence_enter("/room", "ann", "s2") is False  # ann was there (on a)
    assert await b.presence_enter("/room", "bob", "s3") is True
    assert await a.presence("/room") == {"ann": 2, "bob": 1}
    # a dies without a goodbye: its heartbeat key expires (deleted here instead of waiting)
    a.stop()
    delete_node = RedisBackplane(REDIS_URL, reactor=reactor, prefix=prefix)
    await delete_node.start()
    await delete_node.link.execute("DEL", f"{prefix}:node:{a.node}")
    delete_node.stop()
    assert await b.presence("/room") == {"ann": 1, "bob": 1}
    assert await b.presence_leave("/room", "ann", "s2") is True  # her last live member
    assert await b.presence("/room") == {"bob": 1}


@pytest_twisted.ensureDeferred
async def test_one_node_reaps_a_dead_nodes_members_and_a_reaped_node_is_told(make, prefix):
    a, b, c = make(), make(), make()
    for backplane in (a, b, c):
        await backplane.start()
    await a.presence_enter("/room", "ann", "s1")
    await a.presence_enter("/room", "carol", "s2")
    await b.presence_enter("/room", "ann", "s3")
    await a.presence_enter("/online", "carol", "s2")
    await b.link.execute("DEL", f"{prefix}:node:{a.node}")  # a's heartbeat expired
    # ann is still on b: only carol is now absent, on both subjects; the second reaper finds nothing.
    assert sorted(await c.presence_store.reap()) == [("/online", "carol"), ("/room", "carol")]
    assert await b.presence_store.reap() == []
    assert await b.presence("/room") == {"ann": 1}
    # a was cut off, not dead: its next heartbeat learns it was reaped, so it enters its members again.
    rejoined: list[bool] = []
    a.rejoin_listeners.append(lambda: rejoined.append(True))
    a._beat()
    await eventually(lambda: rejoined == [True])
    # It sets its members again (carol only now: s1 ended meanwhile); carol is back on both subjects.
    assert sorted(await a.presence_sync([("/room", "carol", "s2"), ("/online", "carol", "s2")])) == [
        ("/online", "carol", "join"), ("/room", "carol", "join")]
    assert await b.presence("/room") == {"ann": 1, "carol": 1}


@pytest_twisted.ensureDeferred
async def test_presence_sync_sets_this_nodes_members_and_reports_the_changes(make):
    a, b = make(), make()
    await a.start()
    await b.start()
    await a.presence_enter("/room", "ann", "s1")
    await a.presence_enter("/room", "dan", "s2")
    await a.presence_enter("/hall", "eve", "s3")
    await b.presence_enter("/room", "dan", "s4")
    # a's members were meant to be: ann gone, dan still (s2), bob come, eve moved from /hall to /yard.
    changes = await a.presence_sync([("/room", "dan", "s2"), ("/room", "bob", "s5"),
                                     ("/yard", "eve", "s3")])
    assert sorted(changes) == [("/hall", "eve", "leave"), ("/room", "ann", "leave"),
                               ("/room", "bob", "join"), ("/yard", "eve", "join")]
    assert await b.presence("/room") == {"dan": 2, "bob": 1}
    assert await b.presence("/hall") == {}
    assert await b.presence("/yard") == {"eve": 1}
    assert await a.presence_sync([("/room", "dan", "s2"), ("/room", "bob", "s5"),
                                  ("/yard", "eve", "s3")]) == []  # nothing to change
    assert sorted(await a.presence_sync([])) == [("/room", "bob", "leave"), ("/yard", "eve", "leave")]
    assert await b.presence("/room") == {"dan": 1}  # b's member stays


@pytest_twisted.ensureDeferred
async def test_user_events_reach_other_nodes(make):
    a, b = make(), make()
    got: list[Event] = []
    b.attach(got.append)
    await a.start()
    await b.start()
    await a.publish(Event({"p_event": "data", "n": "1"}, route=Route.USER, target="ann"))
    await eventually(lambda: len(got) == 1)
    assert (got[0].route, got[0].target) == (Route.USER, "ann")
    assert got[0].offset is not None  # in the log, for resumes of ann's sessions


@pytest_twisted.ensureDeferred
async def test_direct_messages_reach_one_node_and_tell_when_it_is_gone(make):
    a, b, c = make(), make(), make()
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for name, node in (("a", a), ("b", b), ("c", c)):
        node.direct_handlers["t"] = got[name].append
        await node.start()
    assert await a.send_direct(b.node, "t", "for b only") == 1
    assert await a.send_direct(b.node, "other", "no handler of this kind") == 1
    await eventually(lambda: got["b"] == ["for b only"])
    assert got["a"] == got["c"] == []
    assert await a.listening([b.node, c.node, "0123456789ab"]) == {
        b.node: True, c.node: True, "0123456789ab": False}
    c.stop()
    for _ in range(250):  # Redis notices the closed connection shortly
        if await a.listening([c.node]) == {c.node: False}:
            break
        await sleep(0.02)
    assert await a.send_direct(c.node, "t", "to a stopped node") == 0
    assert got["c"] == []


@pytest_twisted.ensureDeferred
async def test_a_refused_subscriber_connection_closes_the_command_connection(make):
    """The command connection succeeds, the subscriber one is refused: the command connection
    is closed (not left open while reconnecting makes another), and the next pair comes up."""
    from relay import Relay

    relay = Relay()
    relay.accepting = 1  # the command connection gets through, then the port closes
    backplane = make(relay.url)
    started = backplane.start()
    await eventually(lambda: not relay.listening)
    await eventually(lambda: backplane.link.failures >= 1)
    await eventually(lambda: not relay.fronts)  # before the fix: the command connection stayed open
    relay.reopen()
    await started
    assert backplane.state == "up"
    await sleep(0.3)
    assert len(relay.fronts) == 2  # one command connection, one subscriber connection
    backplane.stop()
    await relay.close()
