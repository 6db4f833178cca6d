"""Stream recycling, slow consumers and session leases of the native transports, over loopback."""

from __future__ import annotations

import socket
import time

import pytest
import pytest_twisted
from native_client import NativeHarness, events, of_type, texts
from server_support import eventually, sleep
from twisted.internet.defer import Deferred
from twisted.web.client import ResponseDone

pytest_plugins = ("native_fixtures",)


def _idle(server: NativeHarness) -> bool:
    """Whether the server's scheduler holds no deadline, timer or pending flush."""
    scheduler = server.push.scheduler
    return (scheduler._deadlines.next() is None and scheduler._timer is None
            and not scheduler._pending and scheduler._flush_call is None)


@pytest.mark.parametrize("kind", ["sse", "xhr", "iframe"])
@pytest_twisted.ensureDeferred
async def test_stream_recycles_after_max_bytes_and_loses_nothing(native_server, kind):
    """After stream.max.bytes a stream writes a reconnect message and ends cleanly; its session survives and
    reconnecting with it and the last id loses nothing."""
    server = native_server(stream_max_bytes=1000)
    feed = await server.opened(kind, subject="/s")
    session = feed.messages[0]["session"]
    sent = []
    for i in range(40):
        sent.append(str(i))
        server.publish("/s", str(i))
        await sleep(0.005)
        if feed.finished:
            break
    await feed.end()
    assert feed.reason.check(ResponseDone)
    assert feed.messages[-1]["type"] == "reconnect" and feed.messages[-1].get("_sse_id") is None
    received = events(feed.messages)
    assert received and texts(received) == sent[:len(received)]
    assert len(feed.raw) < 1000 + 4000  # recycled soon after the limit (padding included)
    assert session in server.sessions
    missed = sent[len(received):] + [str(i) for i in range(40, 43)]
    for text in missed[len(sent) - len(received):]:
        server.publish("/s", text)
    last_id = received[-1]["id"]
    options = {"headers": {"Last-Event-ID": last_id}} if kind == "sse" else {"last_event_id": last_id}
    again = await server.opened(kind, subject="/s", session=session, **options)
    assert again.messages[0]["session"] == session and again.messages[0]["position"] == last_id
    server.publish("/s", "live")
    after = events(await again.until(len(missed) + 1))
    assert texts(after) == [*missed, "live"]
    assert of_type(again.messages, "recovery") == []


@pytest_twisted.ensureDeferred
async def test_slow_consumer_gets_a_gap_while_others_receive_everything(native_server):
    """A client that stops reading overflows its small queue and gets a gap with the dropped count when it
    reads again, while another client on the subject receives every event promptly."""
    server = native_server(native_queue_size=5, queue_read_timeout_millis=5000)
    slow = await server.raw_stream("xhr", subject="/slow")
    fast = await server.opened("xhr", subject="/slow")
    session = server.sessions[slow.messages[0]["session"]]
    channel = session.channels[-1]
    channel.request.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow.pause()
    sent: list[str] = []
    big = "x" * 16_000
    calm = 0
    while calm < 5:  # publish until the server has stopped writing to the slow client for good
        assert len(sent) < 400, "the slow client's connection never filled up"
        sent.append(server.publish("/slow", str(len(sent)), pad=big))
        await sleep(0.002)
        calm = calm + 1 if channel.paused else 0
    for _ in range(12):
        sent.append(server.publish("/slow", str(len(sent))))
    assert session.queue.dropped > 0
    started = time.monotonic()
    await fast.until(len(sent), timeout=5)
    assert time.monotonic() - started < 2.0
    assert [m["id"] for m in events(fast.messages)] == sent
    assert of_type(fast.messages, "gap") == []
    assert channel.paused
    slow.resume()
    await slow.until(1, "gap", timeout=5)
    await slow.wait(lambda s: events(s.messages) and events(s.messages)[-1]["id"] == sent[-1], timeout=5)
    gap = of_type(slow.messages, "gap")
    assert len(gap) == 1
    dropped = gap[0]["dropped"]
    assert gap[0] == {"type": "gap", "recovered": False,
                      "reason": f"queue overflow: {dropped} events dropped", "dropped": dropped}
    received = [m["id"] for m in events(slow.messages)]
    assert len(received) + dropped == len(sent)
    at = slow.messages.index(gap[0]) - 1  # the open message precedes the events
    assert received[:at] == sent[:at] and received[at:] == sent[at + dropped:]
    assert len(received[at:]) == 5  # the queue's capacity


@pytest.mark.parametrize("kind", ["sse", "xhr", "iframe", "ws", "longpoll"])
@pytest_twisted.ensureDeferred
async def test_disconnect_keeps_the_session_until_its_lease_ends(native_server, kind):
    """A native client that disconnects leaves its session (queueing events) for native.session.timeout.secs,
    then it expires; no scheduler timer is left."""
    server = native_server(native_session_timeout_secs=0.6, session_check_millis=50,
                           queue_read_timeout_millis=200)
    if kind == "ws":
        client = await server.ws(subject="/d")
        session_id = client.messages[0]["session"]
        client.disconnect()
    elif kind == "longpoll":
        _, first = await server.get_json("poll", subject="/d")
        session_id = first["session"]
        url = server.url("longpoll", {"session": session_id, "last_event_id": first["position"]})
        pending: Deferred = server.agent.request(b"GET", url.encode())
        pending.addErrback(lambda failure: None)
        await eventually(lambda: server.sessions[session_id].channels)
        pending.cancel()
    else:
        client = await server.opened(kind, subject="/d")
        session_id = client.messages[0]["session"]
        client.disconnect()
    left = time.monotonic()
    session = server.sessions[session_id]
    await eventually(lambda: not session.channels)
    assert _idle(server)
    server.publish("/d", "while away")
    await sleep(0.3)
    assert session_id in server.sessions and len(session.queue) == 1
    await eventually(lambda: session_id not in server.sessions, timeout=2.0)
    assert time.monotonic() - left >= 0.55
    assert _idle(server)
    assert server.push.dispatcher.index.match("/d") == {}
    stats = server.push.dispatcher.stats
    delivered = stats.delivered
    server.publish("/d", "nobody")
    assert stats.delivered == delivered


@pytest_twisted.ensureDeferred
async def test_open_stream_keeps_its_session_past_the_lease(native_server):
    """A connected stream renews its session with every heartbeat, so it outlives native.session.timeout.secs.
    """
    server = native_server(native_session_timeout_secs=0.4, session_check_millis=50,
                           queue_read_timeout_millis=150)
    feed = await server.opened("sse", subject="/k")
    await sleep(1.0)
    assert feed.messages[0]["session"] in server.sessions and not feed.finished
    event_id = server.publish("/k", "still here")
    assert events(await feed.until(1))[0]["id"] == event_id


@pytest_twisted.ensureDeferred
async def test_expired_session_cannot_be_continued(native_server):
    """After its lease ended, a session id starts a new session, and send answers 404 for it."""
    server = native_server(native_session_timeout_secs=0.2, session_check_millis=50)
    code, first = await server.get_json("poll", subject="/e")
    await eventually(lambda: first["session"] not in server.sessions)
    code, text = await server.send(first["session"], {"type": "hb"})
    assert code == 404 and "Invalid or expired session" in text
    code, again = await server.get_json("poll", session=first["session"], subject="/e")
    assert again["session"] != first["session"]


@pytest.mark.parametrize("kind", ["sse", "xhr", "iframe", "longpoll"])
@pytest_twisted.ensureDeferred
async def test_shutdown_ends_open_responses_with_close(native_server, kind):
    """Stopping the server ends every open native response with a close message whose reason is shutdown."""
    server = native_server(queue_read_timeout_millis=5000)
    if kind == "longpoll":
        _, first = await server.get_json("poll", subject="/x")
        pending = Deferred.fromCoroutine(server.get_json(
            "longpoll", session=first["session"], last_event_id=first["position"]))
        await eventually(lambda: server.sessions[first["session"]].channels)
        await server.push.stopService()
        code, body = await pending
        assert code == 200 and body["messages"] == [{"type": "close", "reason": "shutdown"}]
        return
    feed = await server.opened(kind, subject="/x")
    await server.push.stopService()
    await feed.end()
    assert feed.reason.check(ResponseDone)
    assert [m["type"] for m in feed.messages] == ["open", "close"]
    assert feed.messages[-1]["reason"] == "shutdown"
