"""The WebSocket transport (``/pushlet/ws``) with a real autobahn client over loopback."""

from __future__ import annotations

import json

import pytest_twisted
from native_client import events, of_type, texts

pytest_plugins = ("native_fixtures",)


@pytest_twisted.ensureDeferred
async def test_ws_open_message(native_server):
    """A WebSocket connection first receives an open message with its session, its secret key, the newest
    position and the heartbeat interval."""
    server = native_server()
    server.publish("/a", "x")
    ws = await server.ws()
    hello = ws.messages[0]
    assert hello == {"type": "open", "session": hello["session"], "position": f"{server.epoch}:1",
                     "heartbeat": 0.3, "session_key": hello["session_key"]}
    assert len(hello["session_key"]) >= 22 and hello["session_key"] != hello["session"]
    assert server.sessions[hello["session"]].format == "json"


@pytest_twisted.ensureDeferred
async def test_ws_subscribe_with_ack_then_events(native_server):
    """A subscribe message is acked with its ref, and events on the subject then arrive as event frames with
    ids."""
    server = native_server()
    ws = await server.ws()
    ws.send({"type": "subscribe", "subject": "/w", "ref": "s1"})
    await ws.until(1, "ack")
    assert of_type(ws.messages, "ack") == [{"type": "ack", "ref": "s1", "op": "subscribe", "subject": "/w"}]
    event_id = server.publish("/w/x", "hi")
    server.publish("/v", "not mine")
    message = events(await ws.until(1))[0]
    assert message == {"type": "event", "subject": "/w/x", "id": event_id,
                       "fields": message["fields"]}
    assert message["fields"]["text"] == "hi"


@pytest_twisted.ensureDeferred
async def test_ws_subject_in_the_query(native_server):
    """Subjects given in the WebSocket URL query are subscribed at open."""
    server = native_server()
    ws = await server.ws(subject="/q1,/q2")
    ids = [server.publish("/q2", "b"), server.publish("/q1", "a")]
    assert [m["id"] for m in events(await ws.until(2))] == ids


@pytest_twisted.ensureDeferred
async def test_ws_publish_acked_with_the_event_id(native_server):
    """A publish is acked with the stored event's id, which is the id other subscribers receive, with the
    sender as p_from."""
    server = native_server()
    listener = await server.ws(subject="/chat")
    sender = await server.ws()
    sender.send({"type": "publish", "subject": "/chat", "ref": 7,
                 "fields": {"text": "中文 </script>", "n": 1.5}})
    ack = of_type(await sender.until(1, "ack"), "ack")[0]
    assert ack == {"type": "ack", "ref": 7, "op": "publish", "id": f"{server.epoch}:1"}
    message = events(await listener.until(1))[0]
    assert message["id"] == ack["id"]
    assert message["fields"]["text"] == "中文 </script>" and message["fields"]["n"] == "1.5"
    assert message["fields"]["p_from"] == sender.messages[0]["session"]
    assert "</script>" not in "".join(listener.frames)
    assert events(sender.messages) == []


@pytest_twisted.ensureDeferred
async def test_ws_unicast_publish_reaches_only_the_target(native_server):
    """A publish with `to` reaches only that session, with its id (unicasts are kept for its resumes)."""
    server = native_server()
    target = await server.ws()
    other = await server.ws(subject="/u")
    sender = await server.ws()
    sender.send({"type": "publish", "subject": "/u", "to": target.messages[0]["session"],
                 "fields": {"text": "psst"}, "ref": 1})
    ack = of_type(await sender.until(1, "ack"), "ack")[0]
    assert ack["id"] is not None
    message = events(await target.until(1))[0]
    assert message["id"] == ack["id"] and texts([message]) == ["psst"]
    sender.send({"type": "hb", "ref": 2})
    await sender.until(2, "ack")
    assert events(other.messages) == []


@pytest_twisted.ensureDeferred
async def test_ws_nacks_garbage_and_unknown_types(native_server):
    """Frames that are not JSON objects with a string type, and unknown types, are nacked; the connection
    stays usable."""
    server = native_server()
    ws = await server.ws()
    ws.send_raw(b"this is not json")
    ws.send_raw(json.dumps([1, 2]).encode())
    ws.send_raw(b'{"type": 5}')
    ws.send({"type": "teleport", "ref": 3})
    ws.send({"type": "subscribe", "ref": 4})
    ws.send({"type": "hb", "ref": 5})
    await ws.until(5, "nack")
    await ws.until(1, "ack")
    nacks = of_type(ws.messages, "nack")
    assert nacks[0] == {"type": "nack", "reason": "message is not valid UTF-8 JSON"}
    assert nacks[1]["reason"] == nacks[2]["reason"] == "message must be a JSON object with a string 'type'"
    assert nacks[3] == {"type": "nack", "ref": 3, "reason": "unknown message type: teleport"}
    assert nacks[4] == {"type": "nack", "ref": 4, "reason": "no subject provided"}
    assert of_type(ws.messages, "ack") == [{"type": "ack", "ref": 5, "op": "hb"}]
    assert not ws.finished


@pytest_twisted.ensureDeferred
async def test_ws_events_of_one_turn_arrive_as_one_json_array(native_server):
    """Events published in one reactor turn reach a WebSocket client as one frame holding a JSON array, in
    order."""
    server = native_server()
    ws = await server.ws(subject="/b")
    ids = [server.publish("/b", str(i)) for i in range(3)]
    await ws.until(3)
    frame = json.loads(ws.frames[-1])
    assert isinstance(frame, list) and [m["id"] for m in frame] == ids
    single = server.publish("/b", "alone")
    await ws.until(4)
    assert json.loads(ws.frames[-1])["id"] == single


@pytest_twisted.ensureDeferred
async def test_ws_batch_larger_than_the_request_limit_arrives_whole(native_server):
    """A frame of several large events may exceed limit.request.bytes (a limit on what clients send): it is
    still sent, every event arrives."""
    server = native_server()
    ws = await server.ws(subject="/big")
    ids = [server.publish("/big", str(i) * 30_000) for i in range(3)]
    received = events(await ws.until(3))
    assert [m["id"] for m in received] == ids
    assert [m["fields"]["text"] for m in received] == [str(i) * 30_000 for i in range(3)]


@pytest_twisted.ensureDeferred
async def test_ws_heartbeats(native_server):
    """A quiet WebSocket gets a {"type":"hb"} frame after every read timeout."""
    server = native_server(queue_read_timeout_millis=200)
    ws = await server.ws(subject="/h")
    await ws.wait(lambda c: c.heartbeats >= 2, timeout=1.5)
    assert ws.frames.count('{"type":"hb"}') == ws.heartbeats


@pytest_twisted.ensureDeferred
async def test_ws_shutdown_sends_close(native_server):
    """Stopping the server sends a close message with reason shutdown and closes the WebSocket with 1001."""
    server = native_server()
    ws = await server.ws(subject="/s")
    server.push.stopService()
    await ws.wait(lambda c: c.finished)
    assert of_type(ws.messages, "close") == [{"type": "close", "reason": "shutdown"}]
    assert ws.close_code == 1001


@pytest_twisted.ensureDeferred
async def test_ws_refused_connect_sends_close_with_reason(native_server):
    """A WebSocket whose query cannot be honoured gets a close message with the reason and a 1008 close, and
    leaves no session."""
    server = native_server()
    ws = await server.ws_raw(subject=",,,")
    await ws.wait(lambda c: c.finished)
    assert of_type(ws.messages, "close") == [{"type": "close", "reason": "no subject provided"}]
    assert ws.close_code == 1008
    assert server.sessions == {}
