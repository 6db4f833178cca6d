"""What a lost connection must not cost: an event stored twice.

A :class:`relay.Relay` between a backplane and the real Redis cuts the
connection while publishes are in flight, after Redis ran them or before it got
them.
"""

from __future__ import annotations

import json

import pytest_twisted
from cluster_support import RedisServer
from redis_keys import command
from relay import Relay
from server_support import eventually
from twisted.internet.defer import gatherResults

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
