"""Three pushpy processes on one Redis behind a round-robin "balancer" (real processes).

Every request of a client goes to the next live node; a node is SIGKILLed in the
middle of the run (with a pull refresh waiting on it and an SSE stream open on
it).  Every client must get every event published, exactly once and in order.
"""

from __future__ import annotations

import threading

from cluster_support import (
    NativePollClient,
    Node,
    PushletPullClient,
    RedisServer,
    SSEClient,
    http,
    publish,
    unique_prefix,
    wait_until,
)

TOTAL = 60
KILL_AT = 30


def numbers(events: list[dict]) -> list[int]:
    """The ``n`` field of each event, as the client received them."""
    return [int((e.get("fields") or e)["n"]) for e in events]


def test_round_robin_clients_get_every_event_once_in_order_when_a_node_dies(cluster):
    nodes = cluster
    victim = nodes[1]

    def alive() -> list[int]:
        return [node.port for node in nodes if node.process.poll() is None]

    pulls = [PushletPullClient(alive, "/c") for _ in range(3)]
    polls = [NativePollClient(alive, "/c") for _ in range(2)]
    for client in polls:
        client.poll()
    sse = SSEClient(alive, "/c", victim.port)
    assert sse.opened.wait(10)
    try:
        for i in range(TOTAL):
            if i == KILL_AT:
                # A refresh waiting on the victim when it dies: the client's request fails
                # and, like a browser behind a balancer, its next one goes elsewhere.
                waiting = threading.Thread(target=_refresh_on, args=(pulls[0], victim.port))
                waiting.start()
                wait_until(lambda: victim.stats()["connections"]["total"] >= 2, timeout=5)
                victim.kill()
                waiting.join(10)
            ports = alive()
            publish(ports[i % len(ports)], "/c/b" if i % 2 else "/c/a", n=str(i))
            if i % 6 == 5:
                for pull in pulls:
                    pull.refresh()
                for poll in polls:
                    poll.poll()
        for pull in pulls:
            wait_until(lambda pull=pull: len(pull.events) >= TOTAL or pull.refresh() is None,
                       timeout=20, step=0)
        for poll in polls:
            wait_until(lambda poll=poll: len(poll.events) >= TOTAL or poll.poll() is None,
                       timeout=20, step=0)
        wait_until(lambda: len(sse.events) >= TOTAL, timeout=20)
    finally:
        sse.stop()
    expected = list(range(TOTAL))
    for pull in pulls:
        assert numbers(pull.events) == expected
    for poll in polls:
        assert numbers(poll.events) == expected
        assert poll.notices == []
        assert len(poll.sessions) == 1  # the same session on every node
    assert numbers(sse.events) == expected
    assert sse.notices == []
    assert sse.connections >= 2  # it did reconnect to another node


def _refresh_on(client: PushletPullClient, port: int) -> None:
    try:
        http(port, "GET", f"/pushlet/pushlet.srv?p_event=refresh&p_id={client.session}", timeout=10)
    except OSError:
        pass  # the node died under it


def test_a_pushlet_session_is_served_by_any_node_and_leave_ends_it_everywhere(cluster):
    ports = [node.port for node in cluster]
    client = PushletPullClient(lambda: ports, "/d")
    publish(ports[2], "/d/x", n="0")
    assert numbers(client.refresh()) == [0]  # on the second node
    reply = client.request({"p_event": "subscribe", "p_id": client.session, "p_subject": "/e"})
    assert reply[0]["p_event"] == "subscribe-ack"  # third node
    publish(ports[0], "/e/y", n="1")
    assert numbers(client.refresh()) == [1]  # first node learned the new subscription
    client.request({"p_event": "leave", "p_id": client.session})
    for port in ports:
        status, body = http(port, "GET", f"/pushlet/pushlet.srv?p_event=refresh&p_id={client.session}")
        assert status == 400, body


def test_redis_restarted_mid_stream_every_client_gets_everything_or_an_explicit_gap(tmp_path):
    """Redis restarts empty (no persistence): nothing is lost silently.

    Publishes made while it is down wait in the nodes' outboxes and are
    delivered after reconnect.  The log is gone, so a client resuming from an
    old position is told ``recovered: false``, a connected stream gets a
    ``gap`` notice, and a Pushlet session whose record vanished is refused
    (its client rejoins).
    """
    redis = RedisServer(tmp_path)
    prefix = unique_prefix()
    nodes = [Node(tmp_path, prefix, redis.url) for _ in range(2)]
    try:
        for node in nodes:
            node.wait()
        ports = [node.port for node in nodes]
        poll = NativePollClient(lambda: ports, "/r")
        poll.poll()
        sse = SSEClient(lambda: ports, "/r", ports[0])
        assert sse.opened.wait(10)
        for i in range(10):
            publish(ports[i % 2], "/r/a", n=str(i))
        wait_until(lambda: len(sse.events) == 10)
        poll.poll()
        redis.kill()
        wait_until(lambda: all(node.stats()["backplane"]["state"] == "degraded" for node in nodes))
        restart = threading.Timer(1.0, redis.start)
        restart.start()
        for i in range(10, 20):
            publish(ports[i % 2], "/r/a", n=str(i))  # waits in the outbox until Redis is back
        restart.join()
        wait_until(lambda: all(node.stats()["backplane"]["state"] == "up" for node in nodes))
        wait_until(lambda: len(sse.events) >= 20, timeout=20)
        for _ in range(4):
            poll.poll()
        sse.stop()
        # The stream stayed on its node: it got everything, and was told the log was replaced.
        assert numbers(sse.events) == list(range(20))
        assert [n["type"] for n in sse.notices] == ["gap"]
        # The poll client resumes from a position of the lost log: an explicit gap, no repeat.
        got = numbers(poll.events)
        assert got == sorted(set(got))
        assert got == list(range(20)) or any(
            n["type"] == "recovery" and not n["recovered"] for n in poll.notices)
    finally:
        for node in nodes:
            node.stop()
        redis.kill()
