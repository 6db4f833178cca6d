"""SSE, XHR streaming and hidden-iframe streaming over real loopback HTTP."""

from __future__ import annotations

import json

import pytest_twisted
from native_client import events, texts
from server_support import eventually, sleep

pytest_plugins = ("native_fixtures",)


def _no_cache(feed) -> None:
    assert "no-cache" in " ".join(feed.header("cache-control"))
    assert feed.header("pragma") == ["no-cache"]
    assert feed.header("expires") == ["Sat, 6 May 1995 12:00:00 GMT"]
    assert feed.header("x-accel-buffering") == ["no"]


@pytest_twisted.ensureDeferred
async def test_sse_headers_padding_retry_and_open(native_server):
    """An SSE stream is text/event-stream, unbuffered and uncached, and starts with padding, retry: and an
    open message carrying an id: line."""
    server = native_server(sse_retry_millis=1500)
    server.publish("/other", "before")
    feed = await server.opened("sse", subject="/s")
    assert feed.header("content-type") == ["text/event-stream; charset=utf-8"]
    _no_cache(feed)
    assert feed.raw.startswith(b":" + b" " * 2048 + b"\nretry: 1500\n\n")
    padding = feed.parser.blocks[0]
    assert padding["comments"] == [" " * 2047] and padding["retry"] == "1500"
    assert padding["data"] is None
    hello = feed.messages[0]
    assert hello["type"] == "open" and hello["session"] in server.sessions
    assert hello["heartbeat"] == 0.3
    assert hello["position"] == f"{server.epoch}:1" == hello["_sse_id"]


@pytest_twisted.ensureDeferred
async def test_sse_events_carry_id_lines_and_json_data(native_server):
    """Each SSE event has an id: line equal to its JSON id, and its data is the event as JSON with every
    field.
    """
    server = native_server()
    feed = await server.opened("sse", subject="/s")
    ids = [server.publish("/s", "one"), server.publish("/s/deep", "two <&>", extra="x")]
    server.publish("/t", "not mine")
    messages = events(await feed.until(2))
    assert [m["_sse_id"] for m in messages] == [m["id"] for m in messages] == ids
    assert [m["subject"] for m in messages] == ["/s", "/s/deep"]
    assert messages[1]["fields"]["text"] == "two <&>" and messages[1]["fields"]["extra"] == "x"
    assert messages[1]["fields"]["p_subject"] == "/s/deep" and "p_time" in messages[1]["fields"]
    assert b"<&>" not in feed.raw and b"\\u003c\\u0026\\u003e" in feed.raw
    assert len(events(feed.messages)) == 2


@pytest_twisted.ensureDeferred
async def test_sse_heartbeat_comments_after_the_read_timeout(native_server):
    """A quiet SSE stream gets a `:hb` comment and an ``hb`` event after each read timeout, none amid events."""
    server = native_server(queue_read_timeout_millis=250)
    feed = await server.opened("sse", subject="/s")
    for i in range(8):
        server.publish("/s", str(i))
        await sleep(0.06)
    assert len(events(feed.messages)) == 8 and feed.parser.heartbeats == 0
    await feed.wait(lambda f: f.parser.heartbeats >= 2, timeout=1.5)
    beats = [b for b in feed.parser.blocks if b["comments"] == ["hb"]]
    assert len(beats) == feed.parser.heartbeats
    assert all(b["event"] == "hb" and b["id"] is None for b in beats)
    assert feed.raw.endswith(b'\n\n:hb\nevent: hb\ndata: {"type":"hb"}\n\n')


@pytest_twisted.ensureDeferred
async def test_xhr_streams_ndjson_lines_after_padding(native_server):
    """XHR streaming sends a padding line, then one JSON message per line: open, events and hb heartbeats."""
    server = native_server(queue_read_timeout_millis=200)
    feed = await server.opened("xhr", subject="/x")
    assert feed.header("content-type") == ["application/x-ndjson; charset=utf-8"]
    _no_cache(feed)
    assert feed.raw.startswith(b" " * 2048 + b"\n{\"type\":\"open\",")
    event_id = server.publish("/x", "hello")
    messages = events(await feed.until(1))
    assert messages[0]["id"] == event_id and messages[0]["fields"]["text"] == "hello"
    await feed.wait(lambda f: f.parser.heartbeats >= 1, timeout=1.0)
    lines = feed.raw[2049:].split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert b'{"type":"hb"}\n' in feed.raw


@pytest_twisted.ensureDeferred
async def test_iframe_script_per_message_with_the_callback(native_server):
    """The iframe transport writes an HTML preamble, then one script element per message calling the chosen
    callback, heartbeats included."""
    server = native_server(queue_read_timeout_millis=200)
    feed = await server.opened("iframe", callback="parent.app.push", subject="/i")
    assert feed.header("content-type") == ["text/html; charset=utf-8"]
    _no_cache(feed)
    assert feed.raw.startswith(b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><!--")
    server.publish("/i", "</script><script>alert(1)</script>")
    messages = events(await feed.until(1))
    assert texts(messages) == ["</script><script>alert(1)</script>"]
    assert feed.raw.count(b"</script>") == feed.raw.count(b"<script>")
    await feed.wait(lambda f: f.parser.heartbeats >= 1, timeout=1.0)
    assert set(feed.parser.callbacks) == {b"parent.app.push"}


@pytest_twisted.ensureDeferred
async def test_iframe_default_callback(native_server):
    """Without a callback parameter the iframe calls parent.pushpy_message."""
    server = native_server()
    feed = await server.opened("iframe", subject="/i")
    assert b"<script>parent.pushpy_message({\"type\":\"open\"" in feed.raw


@pytest_twisted.ensureDeferred
async def test_iframe_refuses_invalid_callback_names(native_server):
    """Callback names that are not dotted identifiers are refused with 400 and create no session."""
    server = native_server()
    for name in ("alert(1)//", "a;b", "parent[0]", "x" * 101, "a.b.c.d.e.f.g"):
        feed = await server.stream("iframe", callback=name, subject="/i")
        await feed.end()
        assert feed.code == 400, name
        assert b"<script" not in feed.raw
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_stream_with_bad_subject_is_refused(native_server):
    """A stream whose subject list is empty after splitting is answered with 400 and leaves no session."""
    server = native_server()
    feed = await server.stream("sse", subject=",,,")
    await feed.end()
    assert feed.code == 400 and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_sse_unicast_and_broadcast_carry_ids_and_are_resumed(native_server):
    """Unicast and broadcast events are kept in history with their target: they carry an id like a
    multicast, and a client resuming from an earlier id gets the ones addressed to it (its session,
    its user, everyone), never those addressed to someone else."""
    server = native_server()
    feed = await server.opened("sse", subject="/s")
    session = feed.messages[0]["session"]
    start = feed.messages[0]["position"]
    unicast = server.push.unicast(session, {"text": "just you"}).position
    broadcast = server.push.broadcast({"text": "everyone"}).position
    server.push.unicast("someone-else", {"text": "not yours"})
    multicast = server.publish("/s", "all of /s")
    messages = events(await feed.until(3))
    assert [(m["id"], m["_sse_id"]) for m in messages] == [(unicast, unicast), (broadcast, broadcast),
                                                           (multicast, multicast)]
    assert texts(messages) == ["just you", "everyone", "all of /s"]
    assert feed.raw.count(b"\nid: ") == 4  # the open message's and the three events'
    # A new session resuming from the start: the broadcast and the multicast, not the old session's unicast.
    again = await server.opened("sse", subject="/s", headers={"Last-Event-ID": start})
    resumed = events(await again.until(2))
    assert texts(resumed) == ["everyone", "all of /s"]
    # The same session continued from the start (its key): its unicast too, once, in order.
    feed.disconnect()
    await eventually(lambda: not server.sessions[session].channels)
    back = await server.opened("sse", session=session, headers={"Last-Event-ID": start})
    assert texts(events(await back.until(3))) == ["just you", "everyone", "all of /s"]
