"""Long-poll, interval poll and ``POST send`` over real loopback HTTP."""

from __future__ import annotations

import json
import time

import pytest_twisted
import treq
from native_client import events, texts
from server_support import sleep
from twisted.internet.defer import Deferred

pytest_plugins = ("native_fixtures",)


@pytest_twisted.ensureDeferred
async def test_longpoll_heartbeat_timeout_answers_with_empty_messages(native_server):
    """A long-poll with nothing to deliver answers after the read timeout with its session, position and no
    messages."""
    server = native_server(queue_read_timeout_millis=300)
    server.publish("/elsewhere", "x")
    started = time.monotonic()
    code, body = await server.get_json("longpoll", subject="/lp")
    elapsed = time.monotonic() - started
    assert code == 200 and 0.25 <= elapsed < 2.0
    assert body == {"session": body["session"], "position": f"{server.epoch}:1", "messages": [],
                    "session_key": body["session_key"]}
    assert body["session"] in server.sessions


@pytest_twisted.ensureDeferred
async def test_longpoll_waits_then_answers_with_the_event(native_server):
    """A pending long-poll stays open until an event arrives, then answers at once with it and the new
    position."""
    server = native_server(queue_read_timeout_millis=5000)
    code, first = await server.get_json("poll", subject="/lp")
    pending = Deferred.fromCoroutine(server.get_json(
        "longpoll", session=first["session"], last_event_id=first["position"]))
    await sleep(0.2)
    assert not pending.called
    started = time.monotonic()
    event_id = server.publish("/lp", "late")
    code, body = await pending
    assert time.monotonic() - started < 2.5  # at once, not at the 5 s read timeout
    assert code == 200 and body["session"] == first["session"] and body["position"] == event_id
    assert [m["id"] for m in body["messages"]] == [event_id]
    assert texts(body["messages"]) == ["late"]


@pytest_twisted.ensureDeferred
async def test_longpoll_answers_at_once_when_events_are_queued(native_server):
    """Events queued for a session between long-polls are answered at once, all together and in order."""
    server = native_server(queue_read_timeout_millis=5000)
    code, first = await server.get_json("poll", subject="/lp")
    ids = [server.publish("/lp", str(i)) for i in range(3)]
    started = time.monotonic()
    code, body = await server.get_json("longpoll", session=first["session"],
                                       last_event_id=first["position"])
    assert code == 200 and time.monotonic() - started < 2.5  # not at the 5 s read timeout
    assert [m["id"] for m in body["messages"]] == ids and body["position"] == ids[-1]
    assert [m["type"] for m in body["messages"]] == ["event"] * 3


@pytest_twisted.ensureDeferred
async def test_longpoll_headers(native_server):
    """Long-poll answers are JSON with no-cache headers and an exact Content-Length."""
    server = native_server()
    response = await server.agent.request(b"GET", server.url("poll", {"subject": "/lp"}).encode())
    body = await treq.content(response)
    headers = response.headers
    assert headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert json.loads(body)["messages"] == []
    assert "no-cache" in " ".join(headers.getRawHeaders("cache-control"))
    assert response.length == len(body)  # the Content-Length header


@pytest_twisted.ensureDeferred
async def test_poll_answers_at_once(native_server):
    """A poll answers immediately, empty or with what is queued, however long the read timeout."""
    server = native_server(queue_read_timeout_millis=10_000)
    started = time.monotonic()
    code, first = await server.get_json("poll", subject="/p")
    assert code == 200 and first["messages"] == []
    event_id = server.publish("/p", "one")
    code, second = await server.get_json("poll", session=first["session"],
                                         last_event_id=first["position"])
    code, third = await server.get_json("poll", session=first["session"],
                                        last_event_id=second["position"])
    assert time.monotonic() - started < 5.0  # not at the 10 s read timeout
    assert [m["id"] for m in second["messages"]] == [event_id] and second["position"] == event_id
    assert third["messages"] == [] and third["position"] == event_id


@pytest_twisted.ensureDeferred
async def test_send_subscribe_unsubscribe_and_hb(native_server):
    """`send` subscribes and unsubscribes a session (acks echo ref and subject) and acks hb."""
    server = native_server()
    code, first = await server.get_json("poll")
    session = first["session"]
    code, replies = await server.send(session, [
        {"type": "subscribe", "subject": "/a", "ref": 1},
        {"type": "subscribe", "subject": "/b", "ref": "two"},
        {"type": "hb"},
    ])
    assert code == 200
    assert replies == [{"type": "ack", "ref": 1, "op": "subscribe", "subject": "/a"},
                       {"type": "ack", "ref": "two", "op": "subscribe", "subject": "/b"},
                       {"type": "ack", "op": "hb"}]
    a_id, b_id = server.publish("/a", "a"), server.publish("/b", "b")
    code, body = await server.get_json("poll", session=session, last_event_id=first["position"])
    assert [m["id"] for m in body["messages"]] == [a_id, b_id]
    code, replies = await server.send(session, {"type": "unsubscribe", "subject": "/a", "ref": 3})
    assert replies == [{"type": "ack", "ref": 3, "op": "unsubscribe", "subject": "/a"}]
    server.publish("/a", "gone")
    b2 = server.publish("/b", "still")
    code, body = await server.get_json("poll", session=session, last_event_id=body["position"])
    assert [m["id"] for m in body["messages"]] == [b2]
    code, replies = await server.send(session, [{"type": "unsubscribe", "subject": "/a"},
                                                {"type": "unsubscribe"}])
    assert replies[0]["type"] == "nack" and "not subscribed" in replies[0]["reason"]
    assert replies[1] == {"type": "ack", "op": "unsubscribe", "subject": None}
    assert server.sessions[session].subscriptions == {}


@pytest_twisted.ensureDeferred
async def test_send_publish_acks_the_event_id(native_server):
    """A publish through `send` is acked with the event's id, and subscribers receive it with that id and the
    sender as p_from."""
    server = native_server()
    code, sender = await server.get_json("poll")
    listener = await server.opened("xhr", subject="/chat")
    code, replies = await server.send(sender["session"], {
        "type": "publish", "subject": "/chat", "ref": 9,
        "fields": {"text": "你好 <b>", "n": 3, "ok": True}})
    assert code == 200 and replies[0]["type"] == "ack" and replies[0]["ref"] == 9
    assert replies[0]["op"] == "publish" and replies[0]["id"] == f"{server.epoch}:1"
    message = events(await listener.until(1))[0]
    assert message["id"] == replies[0]["id"]
    fields = message["fields"]
    assert fields["text"] == "你好 <b>" and fields["n"] == "3" and fields["ok"] == "true"
    assert fields["p_from"] == sender["session"] and fields["p_subject"] == "/chat"


@pytest_twisted.ensureDeferred
async def test_send_nacks_bad_messages(native_server):
    """Unknown types, non-objects, missing subjects and bad field names are nacked one by one."""
    server = native_server()
    code, first = await server.get_json("poll")
    code, replies = await server.send(first["session"], [
        {"type": "zap", "ref": 5},
        "text",
        {"type": "publish", "fields": {"a": "b"}},
        {"type": "publish", "subject": "/x", "fields": {"bad name": "v"}},
        {"type": "publish", "subject": "/x", "fields": {"nested": {"a": 1}}},
        {"type": "subscribe"},
    ])
    assert code == 200
    assert replies[0] == {"type": "nack", "ref": 5, "reason": "unknown message type: zap"}
    assert replies[1] == {"type": "nack", "reason": "message must be a JSON object"}
    assert [r["type"] for r in replies] == ["nack"] * 6
    assert "subject" in replies[2]["reason"] and "field name" in replies[3]["reason"]
    assert server.push.backplane.position == f"{server.epoch}:0"


@pytest_twisted.ensureDeferred
async def test_send_refuses_invalid_json_unknown_sessions_and_oversized_bodies(native_server):
    """`send` answers 400 to a body that is not JSON, 404 to an unknown or Pushlet session, 413 to an
    oversized body."""
    server = native_server(limit_request_bytes=2048)
    code, first = await server.get_json("poll")
    session = first["session"]
    code, text = await server.send(session, b"{not json", raw=True)
    assert code == 400 and "not valid UTF-8 JSON" in text
    code, text = await server.send(session, b"\xff\xfe", raw=True)
    assert code == 400
    code, text = await server.send("nosuchsession", {"type": "hb"})
    assert code == 404 and "nosuchsession" in text
    code, text = await server.send(None, {"type": "hb"})
    assert code == 404
    join = await server.pushlet(p_event="join", p_format="xml")
    pushlet_id = join.decode().split('p_id="')[1].split('"')[0]
    code, text = await server.send(pushlet_id, {"type": "hb"})
    assert code == 404
    code, text = await server.send(session, {"type": "hb", "pad": "x" * 3000})
    assert code == 413
    code, replies = await server.send(session, {"type": "hb"})
    assert code == 200 and replies == [{"type": "ack", "op": "hb"}]


@pytest_twisted.ensureDeferred
async def test_send_to_a_waiting_longpoll_subscribes_and_resumes(native_server):
    """A subscribe with last_event_id sent while a long-poll waits answers that long-poll with the recovery
    and the missed events."""
    server = native_server(queue_read_timeout_millis=5000)
    before = server.publish("/r", "old")
    missed = [server.publish("/r", "m1"), server.publish("/r", "m2")]
    code, first = await server.get_json("poll")
    pending = Deferred.fromCoroutine(server.get_json(
        "longpoll", session=first["session"], last_event_id=first["position"]))
    await sleep(0.1)
    assert not pending.called
    code, replies = await server.send(first["session"], {"type": "subscribe", "subject": "/r",
                                                         "last_event_id": before})
    assert replies[0]["type"] == "ack"
    code, body = await pending
    assert code == 200
    assert body["messages"][0] == {"type": "recovery", "recovered": True, "count": 2}
    assert [m["id"] for m in events(body["messages"])] == missed
