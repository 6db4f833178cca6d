"""The plain TCP transport (JSON lines) over loopback: raw clients and the Python client."""

from __future__ import annotations

import json

import pytest_twisted
from ops_support import line_client, listen_tcp
from server_support import eventually

from pushpy.auth import mint_token


@pytest_twisted.ensureDeferred
async def test_connect_subscribe_publish_and_events(pushpy_server):
    """After a connect line the client gets open; subscribe and publish are acked; events arrive as lines."""
    server = pushpy_server()
    client = await line_client(listen_tcp(server), {"subject": "/a"})
    [hello] = await client.until("open")
    assert hello["session"] in server.push.dispatcher.sessions
    assert server.push.dispatcher.sessions[hello["session"]].format == "json"
    client.send({"type": "subscribe", "subject": "/b", "ref": 1})
    client.send({"type": "publish", "subject": "/b/x", "fields": {"text": "hi"}, "ref": 2})
    acks = await client.until("ack", 2)
    assert acks[0] == {"type": "ack", "ref": 1, "op": "subscribe", "subject": "/b"}
    assert acks[1]["op"] == "publish" and acks[1]["id"] == server.push.backplane.position
    server.push.publish("/a/y", {"text": "there"})
    events = await client.until("event", 2)
    assert [(e["subject"], e["fields"]["text"]) for e in events] == [("/b/x", "hi"), ("/a/y", "there")]


@pytest_twisted.ensureDeferred
async def test_events_of_one_turn_come_one_per_line(pushpy_server):
    """Events flushed together are written one JSON object per line, never as an array."""
    server = pushpy_server()
    client = await line_client(listen_tcp(server), {"subject": "/a"})
    await client.until("open")
    ids = [server.push.publish("/a", {"n": str(n)}).position for n in range(3)]
    events = await client.until("event", 3)
    assert [e["id"] for e in events] == ids
    assert all(line.startswith(b"{") for line in client.lines)


@pytest_twisted.ensureDeferred
async def test_connect_with_last_event_id_resumes(pushpy_server):
    """A connect with last_event_id gets a recovery message and exactly the events after that id."""
    server = pushpy_server()
    first = server.push.publish("/r", {"n": "1"}).position
    later = [server.push.publish("/r", {"n": str(n)}).position for n in (2, 3)]
    client = await line_client(listen_tcp(server), {"subject": "/r", "last_event_id": first})
    [recovery] = await client.until("recovery")
    assert recovery == {"type": "recovery", "recovered": True, "count": 2}
    assert [e["id"] for e in await client.until("event", 2)] == later


@pytest_twisted.ensureDeferred
async def test_heartbeats_both_ways(pushpy_server):
    """The server sends hb lines after each quiet read timeout; a client hb is acked."""
    server = pushpy_server(queue_read_timeout_millis=200)
    client = await line_client(listen_tcp(server), {})
    await client.until("open")
    await client.until("hb", 2)
    client.send({"type": "hb", "ref": "h"})
    assert (await client.until("ack"))[0] == {"type": "ack", "ref": "h", "op": "hb"}


@pytest_twisted.ensureDeferred
async def test_first_line_may_be_a_message(pushpy_server):
    """A first line that is not connect opens a session without parameters, then is handled."""
    server = pushpy_server()
    client = await line_client(listen_tcp(server))
    client.send({"type": "subscribe", "subject": "/s", "ref": 9})
    await client.until("open")
    assert (await client.until("ack"))[0]["ref"] == 9


@pytest_twisted.ensureDeferred
async def test_bad_lines_are_nacked_and_long_lines_close(pushpy_server):
    """A line that is not JSON is nacked; a line over limit.request.bytes closes with the reason."""
    server = pushpy_server(limit_request_bytes=1000)
    client = await line_client(listen_tcp(server), {})
    await client.until("open")
    client.send(b"this is not json")
    assert (await client.until("nack"))[0]["reason"] == "message is not valid UTF-8 JSON"
    client.send(json.dumps({"type": "publish", "subject": "/x", "fields": {"t": "x" * 2000}}).encode())
    await eventually(lambda: client.closed)
    assert client.messages[-1] == {"type": "close", "reason": "message too large (at most 1000 bytes)"}


@pytest_twisted.ensureDeferred
async def test_silent_client_is_closed(pushpy_server):
    """A client that sends nothing for one read timeout is told so and closed."""
    server = pushpy_server(queue_read_timeout_millis=100)
    client = await line_client(listen_tcp(server))
    await eventually(lambda: client.closed)
    assert client.messages == [{"type": "close", "reason": "no connect message"}]
    assert not server.push.dispatcher.sessions


@pytest_twisted.ensureDeferred
async def test_same_session_limit_as_the_websocket(pushpy_server):
    """limit.sessions.per.address refuses a TCP connection exactly as it refuses a WebSocket."""
    server = pushpy_server(limit_sessions_per_address=1, limit_sessions_per_address_exempt=())
    port = listen_tcp(server)
    first = await line_client(port, {})
    await first.until("open")
    refused = await line_client(port, {})
    await eventually(lambda: refused.closed)
    assert refused.messages == [{"type": "close", "reason": "Too many sessions from 127.0.0.1"}]
    ws = server.client(reconnect_delay=5)
    errors: list[dict] = []
    ws.on("error", errors.append)
    closes: list[dict] = []
    ws.on("close", closes.append)
    ws.connect()
    await eventually(lambda: errors)
    assert len(server.push.dispatcher.sessions) == 1


@pytest_twisted.ensureDeferred
async def test_tokens_are_checked_as_for_the_websocket(pushpy_server):
    """With a token secret, a TCP connect without a token is refused; with one it opens and the token's
    grants apply to subscriptions."""
    secret = "s" * 32
    server = pushpy_server(auth_token_secret=secret)
    port = listen_tcp(server)
    anonymous = await line_client(port, {"subject": "/news"})
    await eventually(lambda: anonymous.closed)
    assert anonymous.of_type("close") and not anonymous.of_type("open")
    token = mint_token(secret, "ann", subscribe=["/news"], publish=[])
    allowed = await line_client(port, {"subject": "/news", "token": token})
    [hello] = await allowed.until("open")
    assert server.push.dispatcher.sessions[hello["session"]].user == "ann"
    allowed.send({"type": "subscribe", "subject": "/secret", "ref": 1})
    assert (await allowed.until("nack"))[0]["ref"] == 1


@pytest_twisted.ensureDeferred
async def test_python_client_over_tcp(pushpy_server):
    """The Python client with a tcp:// URL subscribes, publishes, and resumes after a dropped connection."""
    server = pushpy_server()
    url = f"tcp://127.0.0.1:{listen_tcp(server)}"
    client = server.client(url=url)
    got = []
    client.subscribe("/t", got.append)
    await client.connect()
    assert client.transport == "tcp"
    event_id = await client.publish("/t", {"n": "1"})
    await eventually(lambda: got)
    assert got[0].id == event_id
    [channel] = server.push.dispatcher.sessions[client.session].channels
    channel.connection.transport.abortConnection()
    server.push.publish("/t", {"n": "2"})
    await eventually(lambda: len(got) >= 2)
    assert [e.fields["n"] for e in got] == ["1", "2"]


def test_tap_tcp_option_adds_a_line_listener():
    """twistd pushpy --tcp adds one listener of the TCP transport per description, after the HTTP ones;
    a bad description is refused naming --tcp."""
    from twisted.python.usage import UsageError

    from pushpy import tap
    from pushpy.web.tcp import NativeLineFactory

    options = tap.Options()
    options.parseOptions(["--no-sources", "--listen", "tcp:0", "--tcp", "tcp:0:interface=127.0.0.1"])
    children = list(tap.makeService(options))
    assert len(children) == 3 and isinstance(children[2].factory, NativeLineFactory)
    assert options["tcp"] == ["tcp:0:interface=127.0.0.1"]
    try:
        tap.Options().parseOptions(["--no-sources", "--tcp", "tcp:eighty"])
    except UsageError as e:
        assert "--tcp 'tcp:eighty' is not a valid endpoint description" in str(e)
    else:
        raise AssertionError("a bad --tcp was accepted")
    plain = tap.Options()
    plain.parseOptions(["--no-sources", "--listen", "tcp:0"])
    assert len(list(tap.makeService(plain))) == 2  # off by default
