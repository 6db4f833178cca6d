"""Pushlet-protocol and native clients share sessions, subjects and events."""

from __future__ import annotations

import re

import pytest_twisted
from native_client import events, of_type, xml_events

pytest_plugins = ("native_fixtures",)


@pytest_twisted.ensureDeferred
async def test_pushlet_publish_reaches_sse_and_websocket(native_server):
    """A Pushlet `GET pushlet.srv?p_event=publish` reaches SSE and WebSocket subscribers with the same id and
    fields."""
    server = native_server()
    sse = await server.opened("sse", subject="/cross")
    ws = await server.ws(subject="/cross")
    join = await server.pushlet(p_event="join", p_format="xml")
    pushlet_id = re.search(rb'p_id="([^"]+)"', join).group(1).decode()
    ack = await server.pushlet(p_event="publish", p_id=pushlet_id, p_subject="/cross/news",
                               text="héllo <b>", price="1.5")
    assert b'p_event="publish-ack"' in ack
    by_sse = events(await sse.until(1))[0]
    by_ws = events(await ws.until(1))[0]
    assert by_sse == {**by_ws, "_sse_id": by_ws["id"]}
    assert by_ws["id"] == f"{server.epoch}:1" and by_ws["subject"] == "/cross/news"
    fields = by_ws["fields"]
    assert fields["text"] == "héllo <b>" and fields["price"] == "1.5"
    assert fields["p_from"] == pushlet_id and fields["p_event"] == "data"


@pytest_twisted.ensureDeferred
async def test_websocket_publish_reaches_pushlet_xml_stream(native_server):
    """A WebSocket publish reaches a Pushlet xml stream subscriber as a data event with the same fields."""
    server = native_server()
    stream = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_mode="stream",
                                         p_subject="/cross2")
    await stream.wait(lambda s: b'p_event="hb"' in s.raw)
    ws = await server.ws()
    ws.send({"type": "publish", "subject": "/cross2/a", "ref": 1,
             "fields": {"text": 'say "hi" 中文', "n": 2}})
    ack = of_type(await ws.until(1, "ack"), "ack")[0]
    assert ack["id"] == f"{server.epoch}:1"
    await stream.wait(lambda s: b'p_event="data"' in s.raw)
    data = [e for e in xml_events(stream.raw) if e["p_event"] == "data"]
    assert len(data) == 1
    assert data[0]["p_subject"] == "/cross2/a" and data[0]["text"] == 'say "hi" 中文'
    assert data[0]["n"] == "2" and data[0]["p_from"] == ws.messages[0]["session"]


@pytest_twisted.ensureDeferred
async def test_native_publish_via_send_reaches_pushlet_and_websocket(native_server):
    """A publish through `POST send` reaches a Pushlet stream and a WebSocket subscriber alike."""
    server = native_server()
    stream = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_mode="stream",
                                         p_subject="/mix")
    ws = await server.ws(subject="/mix")
    code, first = await server.get_json("poll")
    code, replies = await server.send(first["session"], {"type": "publish", "subject": "/mix",
                                                         "fields": {"text": "both"}})
    assert code == 200 and replies[0]["op"] == "publish"
    assert events(await ws.until(1))[0]["id"] == replies[0]["id"]
    await stream.wait(lambda s: b'text="both"' in s.raw)


@pytest_twisted.ensureDeferred
async def test_pushlet_requests_naming_a_native_session_are_refused(native_server):
    """A native session's id (its unicast address, so not secret) in a Pushlet request is an unknown
    Pushlet session (400): the request neither fails inside nor touches the native session."""
    server = native_server()
    sse = await server.opened("sse", subject="/own")
    session_id = sse.messages[0]["session"]
    for params in ({"p_event": "subscribe", "p_subject": "/x"}, {"p_event": "refresh"},
                   {"p_event": "listen", "p_subject": "/x"}, {"p_event": "leave"}):
        response = await server.client.get(server.url("pushlet.srv", {"p_id": session_id, **params}),
                                           timeout=5)
        body = await response.content()
        assert response.code == 400 and session_id.encode() in body, (params, response.code, body)
    assert [s.subject for s in server.sessions[session_id].subscriptions.values()] == ["/own"]
    server.publish("/own", "still here")
    assert [e["fields"]["text"] for e in events(await sse.until(1))] == ["still here"]
