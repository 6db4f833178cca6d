"""Requests of one session on several nodes at (nearly) the same time, real processes on one Redis.

A subscription changed on one node applies at once to the session's
connection on another; a ``leave`` on one node ends a long-poll waiting on
another; two requests of one session at two nodes at once both get answers;
publishes during the rebuild of a claimed session are neither lost nor
repeated; user events reach each of a user's sessions once; a copy expiring on
one node leaves the session alive on the other.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cluster_support import (
    API_KEY,
    NativePollClient,
    Node,
    PushletPullClient,
    PushletStream,
    SSEClient,
    http,
    no_traceback,
    publish,
    running_cluster,
    token_maker,
    wait_until,
    xml_events,
)

SECRET = "cluster-races-secret-0123"
token = token_maker(SECRET)




@pytest.fixture(scope="module")
def nodes(tmp_path_factory) -> Iterator[list[Node]]:
    """Three nodes shared by the tests of this module (each test uses its own users and subjects)."""
    with running_cluster(tmp_path_factory.mktemp("races"), 3, {"auth.token.secret": SECRET}) as started:
        yield started
    no_traceback(started)


def send(port: int, session: str, key: str, user: str, *messages: dict[str, Any]) -> list[dict]:
    """``POST send`` of client messages to ``port``; the replies (all must be acks)."""
    query = urlencode({"session": session, "session_key": key, "token": token(user)})
    status, body = http(port, "POST", "/pushlet/send?" + query, json.dumps(list(messages)).encode(),
                        {"Content-Type": "text/plain"})
    assert status == 200, body
    replies = json.loads(body)
    assert [r["type"] for r in replies] == ["ack"] * len(messages), replies
    return replies


def api(port: int, event: dict[str, Any]) -> None:
    status, body = http(port, "POST", "/pushlet/api/publish", json.dumps(event).encode(),
                        {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    assert status == 200, body


def values(events: list[dict], subject: str | None = None) -> list[str]:
    return [e["fields"]["n"] for e in events if subject is None or e["subject"] == subject]


def test_subscription_changes_on_one_node_apply_at_once_to_a_stream_on_another(nodes):
    a, b, _ = nodes
    sse = SSEClient(lambda: [b.port], "/ann/base", b.port, token=token("ann"))
    try:
        assert sse.opened.wait(10)
        for i in range(10):
            # One request to a: subscribe, then publish on the new subject once the subscribe is answered.
            send(a.port, sse.session, sse.key, "ann", {"type": "subscribe", "subject": f"/ann/x{i}"},
                 {"type": "publish", "subject": f"/ann/x{i}", "fields": {"n": str(i)}})
        wait_until(lambda: len(sse.events) >= 10)
        assert values(sse.events) == [str(i) for i in range(10)]
        send(a.port, sse.session, sse.key, "ann", {"type": "unsubscribe", "subject": "/ann/x0"},
             {"type": "publish", "subject": "/ann/x0", "fields": {"n": "after"}},
             {"type": "publish", "subject": "/ann/x1", "fields": {"n": "marker"}})
        wait_until(lambda: "marker" in values(sse.events))
        assert "after" not in values(sse.events)  # published after the unsubscribe was answered
    finally:
        sse.stop()


def test_a_pushlet_subscribe_on_one_node_applies_at_once_to_a_stream_on_another(nodes):
    a, b, c = nodes
    stream = PushletStream(b.port, {"p_event": "join-listen", "p_subject": "/pat/base",
                                    "token": token("pat")})
    try:
        session = stream.session()
        for i in range(10):
            status, body = http(a.port, "GET", "/pushlet/pushlet.srv?" + urlencode(
                {"p_event": "subscribe", "p_id": session, "p_subject": f"/pat/x{i}", "token": token("pat")}))
            assert status == 200 and b"subscribe-ack" in body, body
            publish(c.port, f"/pat/x{i}", n=str(i))
        wait_until(lambda: len([e for e in stream.events() if e.get("p_event") == "data"]) >= 10)
        assert [e["n"] for e in stream.events() if e.get("p_event") == "data"] == [str(i) for i in range(10)]
    finally:
        stream.close()


def test_two_long_polls_of_one_session_at_two_nodes_at_once(nodes):
    """Both are answered (same session, no error); the client goes on from either, losing nothing."""
    a, b, c = nodes
    first = json.loads(http(a.port, "GET", "/pushlet/poll?" + urlencode(
        {"subject": "/twin", "token": token("tim")}))[1])
    params = {"subject": "/twin", "session": first["session"], "session_key": first["session_key"],
              "last_event_id": first["position"], "token": token("tim")}
    answers: list[tuple[int, bytes]] = []

    def long_poll(port: int) -> None:
        answers.append(http(port, "GET", "/pushlet/longpoll?" + urlencode(params)))

    waiting = [threading.Thread(target=long_poll, args=(node.port,)) for node in (a, b)]
    for thread in waiting:
        thread.start()
    publish(c.port, "/twin", n="0")
    for thread in waiting:
        thread.join(15)
    kept = []
    for status, body in answers:
        assert status == 200, body
        answer = json.loads(body)
        assert answer["session"] == first["session"]
        kept.append((values([m for m in answer["messages"] if m["type"] == "event"]), answer["position"]))
    assert any(events == ["0"] for events, _ in kept)
    publish(c.port, "/twin", n="1")
    for events, position in kept:  # whichever answer the client keeps, it goes on from it, losing nothing
        params["last_event_id"] = position
        answer = json.loads(http(c.port, "GET", "/pushlet/longpoll?" + urlencode(params))[1])
        assert answer["session"] == first["session"]
        assert events + values([m for m in answer["messages"] if m["type"] == "event"]) == ["0", "1"]


def test_two_pushlet_refreshes_of_one_session_at_two_nodes_at_once(nodes):
    a, b, c = nodes
    client = PushletPullClient(lambda: [a.port], "/pull-twin", token=token("tam"))
    replies: dict[int, tuple[int, bytes]] = {}

    def refresh(port: int) -> None:
        replies[port] = http(port, "GET", "/pushlet/pushlet.srv?" + urlencode(
            {"p_event": "refresh", "p_id": client.session, "token": token("tam")}))

    waiting = [threading.Thread(target=refresh, args=(node.port,)) for node in (a, b)]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join(15)
    for status, body in replies.values():
        events = xml_events(body)
        assert status == 200 and not [e for e in events if e["p_event"] in ("nack", "abort")], body
    # The session goes on from either claim: later events arrive, once.
    for i in range(3):
        publish(c.port, "/pull-twin", n=str(i))
    client.ports = lambda: [c.port, a.port, b.port]
    wait_until(lambda: client.refresh() is not None and len(client.events) >= 3, step=0)
    assert [e["n"] for e in client.events] == ["0", "1", "2"]


def test_events_published_while_sessions_move_are_neither_lost_nor_repeated(nodes):
    ports = [node.port for node in nodes]
    pulls = [PushletPullClient(lambda: ports, "/busy", token=token("bo")) for _ in range(2)]
    polls = [NativePollClient(lambda: ports, "/busy", token=token("bo"))]
    for client in polls:
        client.poll()
    total = 150
    done = threading.Event()

    def publisher() -> None:
        for i in range(total):
            publish(ports[i % 3], "/busy", n=str(i))
        done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        # Every request goes to the next node: each is a claim and a rebuild while events keep coming.
        def caught_up() -> bool:
            for pull in pulls:
                pull.refresh()
            for client in polls:
                client.poll()
            return done.is_set() and all(len(c.events) >= total for c in [*pulls, *polls])

        wait_until(caught_up, timeout=60, step=0)
    finally:
        thread.join(30)
    for pull in pulls:
        assert [int(e["n"]) for e in pull.events] == list(range(total))
    for client in polls:
        assert [int(e["fields"]["n"]) for e in client.events] == list(range(total))
        assert client.notices == [] and len(client.sessions) == 1


def test_user_events_reach_each_session_of_a_user_on_three_nodes_once(nodes):
    streams = [SSEClient(lambda node=node: [node.port], "/una", node.port, token=token("una"))
               for node in nodes]
    try:
        for sse in streams:
            assert sse.opened.wait(10)
        # Each session also gets a copy on the two other nodes (a message of its client there).
        for sse in streams:
            for node in nodes:
                if node.port != sse.port:
                    send(node.port, sse.session, sse.key, "una", {"type": "hb"})
        for i in range(5):
            api(nodes[i % 3].port, {"user": "una", "fields": {"n": str(i)}})
        wait_until(lambda: all(len(sse.events) >= 5 for sse in streams))
        time.sleep(0.5)  # nothing more arrives
        for sse in streams:
            assert values(sse.events) == [str(i) for i in range(5)]
        assert len({sse.session for sse in streams}) == 3
    finally:
        for sse in streams:
            sse.stop()


def test_leave_on_one_node_ends_a_long_poll_waiting_on_another(tmp_path):
    with running_cluster(tmp_path, 3, {"queue.read.timeout.millis": "15000"}) as (a, b, c):
        first = json.loads(http(a.port, "GET", "/pushlet/poll?" + urlencode({"subject": "/l"}))[1])
        params = {"subject": "/l", "session": first["session"], "session_key": first["session_key"],
                  "last_event_id": first["position"]}
        moved = json.loads(http(b.port, "GET", "/pushlet/poll?" + urlencode(params))[1])  # copied to b
        params["last_event_id"] = moved["position"]
        answer: list[Any] = []
        waiting = threading.Thread(target=lambda: answer.append(
            http(b.port, "GET", "/pushlet/longpoll?" + urlencode(params), timeout=30)))
        waiting.start()
        wait_until(lambda: b.stats()["connections"]["total"] >= 1)
        started = time.monotonic()
        status, body = http(a.port, "POST", "/pushlet/send?" + urlencode(
            {"session": first["session"], "session_key": first["session_key"]}),
            b'{"type": "leave"}', {"Content-Type": "text/plain"})
        assert status == 200 and json.loads(body)[0]["type"] == "ack", body
        waiting.join(20)
        assert time.monotonic() - started < 10  # ended by the leave, not by the 15 s read timeout
        status, body = answer[0]
        assert status == 200, body
        assert json.loads(body)["messages"] == []  # ended cleanly: no abort, no close
        # The session is gone on every node: its id and key now get a new session.
        again = json.loads(http(c.port, "GET", "/pushlet/poll?" + urlencode(params))[1])
        assert again["session"] != first["session"]


def test_a_native_session_lives_on_one_node_while_its_copy_expires_on_another(tmp_path):
    with running_cluster(tmp_path, 2, {"native.session.timeout.secs": "2"}) as (a, b):
        client = NativePollClient(lambda: [a.port], "/e")
        client.poll()  # made on a
        session = client.session
        client.ports = lambda: [b.port]
        started, sent = time.monotonic(), 0
        while time.monotonic() - started < 7:  # a's copy expires (2 s) while b serves the session
            publish(a.port if sent % 2 else b.port, "/e", n=str(sent))
            sent += 1
            client.poll()
            time.sleep(0.3)
        assert a.stats()["sessions"]["total"] == 0  # a's copy is gone
        client.ports = lambda: [a.port]
        publish(b.port, "/e", n=str(sent))
        sent += 1
        wait_until(lambda: client.poll() is not None and len(client.events) >= sent)
        assert [int(e["fields"]["n"]) for e in client.events] == list(range(sent))
        assert client.sessions == {session} and client.notices == []
