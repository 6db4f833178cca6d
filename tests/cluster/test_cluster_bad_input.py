"""Bad requests and bad records across real nodes: a clear answer to that client, no harm to anyone else.

Unknown and ended session ids on a node that never held them, wrong session
keys and someone else's token (HTTP 403, WebSocket close 1008), records in
Redis written by something else (garbage fields, a key of the wrong type):
each request gets a clear error or a new session; the nodes log no traceback
and keep serving the sessions of others.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import cluster_support
import pytest
import websocket
from cluster_support import (
    Node,
    PushletPullClient,
    http,
    no_traceback,
    publish,
    running_cluster,
    token_maker,
    wait_until,
    xml_events,
)
from redis_keys import command

SECRET = "cluster-bad-input-secret-0123"
token = token_maker(SECRET)




@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Iterator[tuple[str, list[Node]]]:
    """Two nodes shared by the tests of this module; none may log a traceback."""
    settings = {"auth.token.secret": SECRET, "queue.read.timeout.millis": "4000"}
    with running_cluster(tmp_path_factory.mktemp("bad"), 2, settings) as nodes:
        yield nodes[0].prefix, nodes
    no_traceback(nodes)


def pushlet(port: int, **params: str) -> tuple[int, bytes]:
    status, _, body = cluster_support.pushlet(port, **params)
    return status, body


def poll(port: int, **params: str) -> tuple[int, Any]:
    status, body = http(port, "GET", "/pushlet/poll?" + urlencode(params))
    return status, json.loads(body) if status == 200 else body


def send(port: int, body: bytes = b'{"type": "hb"}', **params: str) -> tuple[int, bytes]:
    return http(port, "POST", "/pushlet/send?" + urlencode(params), body, {"Content-Type": "text/plain"})


def ws_close(port: int, **params: str) -> tuple[int, str]:
    """Open a WebSocket with ``params``; the close code and the ``close`` message's reason."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/pushlet/ws?" + urlencode(params), timeout=10)
    try:
        reason = json.loads(ws.recv())
        assert reason["type"] == "close", reason
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        return int.from_bytes(data[:2], "big"), reason["reason"]
    finally:
        ws.close()


def native_session(port: int, user: str, subject: str) -> dict:
    status, answer = poll(port, subject=subject, token=token(user))
    assert status == 200, answer
    return answer


def test_unknown_and_ended_sessions_on_a_node_that_never_held_them(two):
    _, (a, b) = two
    for params in ({"p_event": "subscribe", "p_subject": "/x"}, {"p_event": "refresh"}):
        status, body = pushlet(b.port, p_id="nosuchsession", **params)
        assert status == 400 and b"nosuchsession" in body, body
    status, body = send(b.port, session="nosuchsession", session_key="k")
    assert status == 404, body
    status, answer = poll(b.port, subject="/x", session="nosuchsession", session_key="k",
                          token=token("zed"))
    assert status == 200 and answer["session"] != "nosuchsession"  # a new session instead

    # Ended (a tombstone in Redis) by a leave on a: unknown on b too.
    client = PushletPullClient(lambda: [a.port], "/ended", token=token("zed"))
    status, body = pushlet(a.port, p_event="leave", p_id=client.session, token=token("zed"))
    assert status == 200 and b"leave-ack" in body, body
    for params in ({"p_event": "subscribe", "p_subject": "/x"}, {"p_event": "refresh"}):
        status, body = pushlet(b.port, p_id=client.session, **params)
        assert status == 400, body
    ended = native_session(a.port, "una", "/ended")
    status, body = send(a.port, b'{"type": "leave"}', session=ended["session"],
                        session_key=ended["session_key"], token=token("una"))
    assert status == 200, body
    status, body = send(b.port, session=ended["session"], session_key=ended["session_key"],
                        token=token("una"))
    assert status == 404, body
    status, answer = poll(b.port, subject="/x", session=ended["session"], session_key=ended["session_key"],
                          token=token("una"))
    assert status == 200 and answer["session"] != ended["session"]


def test_a_wrong_session_key_or_token_on_another_node_is_refused_and_harms_nobody(two):
    _, (a, b) = two
    ann = native_session(a.port, "ann", "/keys")
    session, key = ann["session"], ann["session_key"]
    for port in (b.port, a.port):
        status, body = poll(port, subject="/keys", session=session, session_key="0" * 22, token=token("ann"))
        assert status == 403 and b"wrong session_key" in body, body
        status, body = send(port, session=session, session_key="0" * 22, token=token("ann"))
        assert status == 403, body
        status, body = send(port, session=session, session_key=key, token=token("bob"))
        assert status == 403, body  # someone else's session
        code, reason = ws_close(port, subject="/keys", session=session, session_key="0" * 22,
                                token=token("ann"))
        assert code == 1008 and "wrong session_key" in reason
    # ann's session lives on, on both nodes, with its grants
    publish(b.port, "/keys", n="1")
    status, answer = poll(b.port, subject="/keys", session=session, session_key=key, token=token("ann"),
                          last_event_id=ann["position"])
    assert status == 200 and answer["session"] == session
    assert [m["fields"]["n"] for m in answer["messages"] if m["type"] == "event"] == ["1"]


def test_someone_elses_pushlet_refresh_does_not_disturb_the_sessions_waiting_refresh(two):
    """A refresh with bob's token for ann's Pushlet session is refused (403) before it claims the
    session: ann's refresh waiting on a is not ended, it gets the next event."""
    _, (a, b) = two
    status, body = pushlet(a.port, p_event="join-listen", p_format="xml", p_mode="pull", p_subject="/own",
                           token=token("ann"))
    session = xml_events(body)[0]["p_id"]
    waiting: list[tuple[int, bytes]] = []
    thread = threading.Thread(target=lambda: waiting.append(
        pushlet(a.port, p_event="refresh", p_id=session, token=token("ann"))))
    thread.start()
    wait_until(lambda: a.stats()["connections"]["total"] >= 1)
    for port in (b.port, a.port):  # b first: its claim would make a's copy a stale one
        status, body = pushlet(port, p_event="refresh", p_id=session, token=token("bob"))
        assert status == 403, body
        status, body = pushlet(port, p_event="subscribe", p_id=session, p_subject="/bob", token=token("bob"))
        assert status == 403, body
    publish(b.port, "/own", n="1")
    thread.join(10)
    status, body = waiting[0]
    assert status == 200 and [e["n"] for e in xml_events(body) if e["p_event"] == "data"] == ["1"], body


@pytest.mark.parametrize("write", [
    ("HSET", "format", "json", "subs", "{not json", "key", "00"),
    ("HSET", "format", "json", "subs", '[["s1", 7, null]]', "user", "ann"),
    ("HSET", "format", "json", "binding", "not hex", "user", "ann"),
    ("HSET", "format", "xml", "mode", "sideways", "listening", "1"),
    ("HSET", "format", "xml", "listening", "1", "position", "no position", "subs", "[]"),
    ("HSET", "format", "klingon", "listening", "1"),
    ("HSET", "garbage", "1"),
    ("SET", "not a hash at all"),
], ids=["subs-not-json", "subs-not-triples", "binding-not-hex", "mode", "position", "format",
        "no-format", "wrong-type"])
def test_a_malformed_session_record_gives_that_client_a_clear_answer(two, write):
    prefix, (a, b) = two
    bystander = PushletPullClient(lambda: [a.port, b.port], "/calm", token=token("zed"))
    session = "garbage" + secrets.token_hex(4)
    kind, *values = write
    command(kind, f"{prefix}:session:{session}", *values)
    try:
        for node in (a, b):
            for params in ({"p_event": "subscribe", "p_subject": "/x"}, {"p_event": "refresh"}):
                status, body = pushlet(node.port, p_id=session, **params)
                assert status == 400 and b"unreadable" in body, body
            status, body = send(node.port, session=session, session_key="k")
            assert status == 404, body
            status, answer = poll(node.port, subject="/x", session=session, session_key="k",
                                  token=token("zed"))
            assert status == 200 and answer["session"] != session  # a new session instead
        publish(a.port, "/calm", n="1")
        wait_until(lambda: bystander.refresh() is not None and len(bystander.events) == 1)
    finally:
        command("DEL", f"{prefix}:session:{session}")


def test_pushlet_requests_naming_a_native_session_are_refused_and_change_nothing(two):
    """A native session's id (it leaks: it is its unicast address) in Pushlet requests, on the node
    holding the session and on another: 400, no copy made (a copy would need no session key), the
    session's waiting long-poll is not ended."""
    _, (a, b) = two
    una = native_session(a.port, "una", "/nat")
    params = {"subject": "/nat", "session": una["session"], "session_key": una["session_key"],
              "token": token("una"), "last_event_id": una["position"]}
    waiting: list[tuple[int, bytes]] = []
    thread = threading.Thread(target=lambda: waiting.append(
        http(a.port, "GET", "/pushlet/longpoll?" + urlencode(params))))
    thread.start()
    wait_until(lambda: a.stats()["connections"]["total"] >= 1)
    for port in (b.port, a.port):
        for event in ({"p_event": "subscribe", "p_subject": "/x"}, {"p_event": "refresh"},
                      {"p_event": "publish", "p_subject": "/x"}, {"p_event": "leave"}):
            status, body = pushlet(port, p_id=una["session"], **event)
            assert status == 400, body
        # No keyless copy was left behind: the key is still required there.
        status, body = poll(port, subject="/nat", session=una["session"], session_key="0" * 22,
                            token=token("una"))
        assert status == 403, body
    publish(b.port, "/nat", n="1")
    thread.join(10)
    status, body = waiting[0]
    assert status == 200, body
    assert [m["fields"]["n"] for m in json.loads(body)["messages"] if m["type"] == "event"] == ["1"]
