"""Three pushpy processes on one Redis behind a round-robin "balancer" (real processes).

Every request of a client goes to the next live node; a node is SIGKILLed in the
middle of the run (with a pull refresh waiting on it and an SSE stream open on
it).  Every client must get every event published, exactly once and in order.
"""

from __future__ import annotations

import threading

from cluster_support import (
    NativePollClient,
    PushletPullClient,
    SSEClient,
    http,
    publish,
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
