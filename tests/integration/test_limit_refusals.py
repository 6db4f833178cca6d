"""Limits over loopback, each refused with a clear reason naming its key."""

from __future__ import annotations

import pytest_twisted
import treq
from native_client import xml_events
from pushlet_client import raw_exchange
from server_support import sleep

pytest_plugins = ("native_fixtures",)


async def join(server, **params: str) -> str:
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml", **params))
    return ack["p_id"]


@pytest_twisted.ensureDeferred
async def test_fields_and_bytes_per_event_are_limited(native_server):
    """A Pushlet or native publish over ``limit.fields`` or ``limit.event.bytes`` is a ``nack`` naming it."""
    server = native_server(limit_fields=6, limit_event_bytes=300)
    sid = await join(server)
    fields = {f"f{i}": "1" for i in range(6)}
    [nack] = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/a", **fields))
    assert nack["p_event"] == "nack" and "limit.fields" in nack["p_reason"]
    [nack] = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/a", t="x" * 300))
    assert "limit.event.bytes" in nack["p_reason"]
    [ok] = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/a", t="x" * 100))
    assert ok["p_event"] == "publish-ack"
    feed = await server.opened("sse", subject="/a")
    session_id = feed.messages[0]["session"]
    code, [reply] = await server.send(session_id, {"type": "publish", "subject": "/a",
                                                   "fields": {"t": "é" * 200}})
    assert code == 200 and reply["type"] == "nack" and "limit.event.bytes" in reply["reason"]


@pytest_twisted.ensureDeferred
async def test_publish_rate_is_limited_per_session(native_server):
    """Past the burst, publishes faster than ``limit.publish.rate`` are ``nack``ed; other sessions are not."""
    server = native_server(limit_publish_rate=0.5, limit_publish_burst=3)
    sid = await join(server)
    answers = [xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/a", n=str(i)))[0]
               for i in range(4)]
    assert [a["p_event"] for a in answers] == ["publish-ack"] * 3 + ["nack"]
    reason = answers[3]["p_reason"]
    assert "publish rate exceeded" in reason and "limit.publish.rate" in reason
    other = await join(server)
    assert xml_events(await server.pushlet(p_event="publish", p_id=other, p_subject="/a"))[0]["p_event"] \
        == "publish-ack"
    ws = await server.ws(subject="/b")
    for i in range(4):
        ws.send({"type": "publish", "subject": "/b", "fields": {"n": str(i)}, "ref": i})
    await ws.wait(lambda c: len([m for m in c.messages if "ref" in m]) >= 4)
    assert [m["type"] for m in ws.messages if "ref" in m] == ["ack"] * 3 + ["nack"]


@pytest_twisted.ensureDeferred
async def test_open_data_channels_per_session_are_limited(native_server):
    """A Pushlet session cannot hold more than ``limit.channels.per.session`` open responses."""
    server = native_server(limit_channels_per_session=1, queue_read_timeout_millis=5_000)
    stream = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/a")
    await stream.wait(lambda f: b"join-listen-ack" in f.raw)
    [ack] = xml_events(stream.raw)[:1]
    [nack] = xml_events(await server.pushlet(p_event="listen", p_id=ack["p_id"], p_mode="stream"))
    assert nack["p_event"] == "nack" and "limit.channels.per.session" in nack["p_reason"]
    server.publish("/a", "still flowing")
    await stream.wait(lambda f: b"still flowing" in f.raw)


@pytest_twisted.ensureDeferred
async def test_sessions_per_address_are_limited(native_server):
    """Past ``limit.sessions.per.address`` a client address gets 429 (with loopback not exempt)."""
    server = native_server(limit_sessions_per_address=2, limit_sessions_per_address_exempt=())
    await join(server)
    await join(server)
    response = await server.client.get(server.url("pushlet.srv", {"p_event": "join"}), timeout=5)
    assert response.code == 429
    assert b"Too many sessions from 127.0.0.1" in await treq.content(response)
    code, _ = await server.get_json("poll", subject="/a")
    assert code == 429


@pytest_twisted.ensureDeferred
async def test_large_bodies_are_refused_before_they_are_read(native_server):
    """A body over ``limit.body.bytes`` is a 413, by its Content-Length or as chunks arrive."""
    server = native_server(limit_body_bytes=1_000)
    port = server.host_port
    answer = await raw_exchange(port, b"POST /pushlet/send?session=x HTTP/1.1\r\nHost: a\r\n"
                                      b"Content-Length: 5000000\r\n\r\n" + b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"limit.body.bytes" in answer
    chunk = b"%x\r\n%s\r\n" % (20_000, b"y" * 20_000)
    answer = await raw_exchange(port, b"POST /pushlet/send?session=x HTTP/1.1\r\nHost: a\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 5)
    assert answer.startswith(b"HTTP/1.1 413 ")
    await sleep(0)
    code, _ = await server.get_json("poll", subject="/a")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_join_listen_with_a_subject_over_the_limits_is_a_nack(native_server):
    """A ``join-listen`` whose subject breaks a limit gets a ``nack`` in its session's format, as before."""
    server = native_server(limit_subject_length=8)
    [nack] = xml_events(await server.pushlet(p_event="join-listen", p_format="xml", p_subject="/" + "a" * 20))
    assert nack["p_event"] == "nack" and "subject too long" in nack["p_reason"]
    assert nack["p_id"] in server.sessions
