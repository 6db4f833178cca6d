"""The Python client against a real server over loopback: every transport, resume, reconnect."""

from __future__ import annotations

import pytest
import pytest_twisted
from server_support import eventually
from twisted.internet.defer import maybeDeferred

from pushpy.client import Client, ClientEvent, Refused
from pushpy.core.sessions import EndReason

TRANSPORTS = ["websocket", "sse", "longpoll"]


def collect(client: Client, subject: str) -> list[ClientEvent]:
    got: list[ClientEvent] = []
    client.subscribe(subject, got.append)
    return got


def drop_connections(push, session_id: str) -> int:
    """Abort the TCP connections of a session's open channels (the session stays)."""
    count = 0
    for channel in list(push.dispatcher.sessions[session_id].channels):
        request = getattr(channel, "request", None)
        transport = request.channel.transport if request is not None else channel.connection.transport
        transport.abortConnection()
        count += 1
    return count


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_subscribe_and_receive_events(pushpy_server, transport):
    """A client subscribed before connecting receives the events published on its subject, with their ids."""
    server = pushpy_server()
    client = server.client(transport=transport)
    got = collect(client, "/stocks")
    await client.connect()
    assert client.session in server.push.dispatcher.sessions
    first = server.push.publish("/stocks/aex", {"price": "1"}).position
    server.push.publish("/other", {"price": "x"})
    second = server.push.publish("/stocks/dow", {"price": "2"}).position
    await eventually(lambda: len(got) >= 2)
    assert [(e.subject, e.id, e.fields["price"]) for e in got] == [
        ("/stocks/aex", first, "1"), ("/stocks/dow", second, "2")]
    assert client.last_event_id == second


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_publish_fires_with_the_event_id(pushpy_server, transport):
    """publish() fires with the id of the stored event, the id its subscribers receive."""
    server = pushpy_server()
    listener = server.client()
    got = collect(listener, "/chat")
    await listener.connect()
    sender = server.client(transport=transport)
    await sender.connect()
    event_id = await sender.publish("/chat", {"text": "hi", "n": 3})
    await eventually(lambda: got)
    assert got[0].id == event_id and got[0].fields["text"] == "hi" and got[0].fields["n"] == "3"
    assert got[0].fields["p_from"] == sender.session


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_subscribe_after_open_is_acked_then_delivers(pushpy_server, transport):
    """A subscription made on an open client fires once the server has it; events follow."""
    server = pushpy_server()
    client = server.client(transport=transport)
    await client.connect()
    got: list[ClientEvent] = []
    await client.subscribe("/late", got.append)
    server.push.publish("/late", {"text": "x"})
    await eventually(lambda: got)
    assert [e.fields["text"] for e in got] == ["x"]


@pytest_twisted.ensureDeferred
async def test_unsubscribe_stops_delivery(pushpy_server):
    """After unsubscribe the server drops the subscription and the handler gets nothing more."""
    server = pushpy_server()
    client = server.client()
    got = collect(client, "/a")
    kept = collect(client, "/b")
    await client.connect()
    client.unsubscribe("/a")
    session = server.push.dispatcher.sessions[client.session]
    await eventually(lambda: [s.subject for s in session.subscriptions.values()] == ["/b"])
    server.push.publish("/a", {"text": "no"})
    server.push.publish("/b", {"text": "yes"})
    await eventually(lambda: kept)
    assert got == [] and kept[0].fields["text"] == "yes"


@pytest_twisted.ensureDeferred
async def test_refused_publish_fails_with_the_reason(pushpy_server):
    """A publish the server refuses fails with Refused carrying the nack's reason."""
    server = pushpy_server()
    client = server.client()
    await client.connect()
    with pytest.raises(Refused) as info:
        await client.publish("/a", {"bad name": "x"})
    assert "invalid field name" in info.value.reason


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_reconnects_and_resumes_after_the_server_drops_the_connection(pushpy_server, transport):
    """When the server side drops the connection, the client reconnects and gets exactly the events it missed,
    in order, once."""
    server = pushpy_server()
    client = server.client(transport=transport)
    got = collect(client, "/r")
    opens: list[dict] = []
    client.on("open", opens.append)
    await client.connect()
    server.push.publish("/r", {"n": "1"})
    await eventually(lambda: len(got) == 1)
    await eventually(lambda: server.push.dispatcher.sessions[client.session].channels)
    assert drop_connections(server.push, client.session) == 1
    for n in range(2, 6):
        server.push.publish("/r", {"n": str(n)})
    await eventually(lambda: len(opens) >= 2 and len(got) >= 5)
    server.push.publish("/r", {"n": "6"})
    await eventually(lambda: len(got) >= 6)
    assert [e.fields["n"] for e in got] == ["1", "2", "3", "4", "5", "6"]


@pytest_twisted.ensureDeferred
async def test_session_closed_by_the_server_resumes_in_a_new_session(pushpy_server):
    """A close message makes the client reconnect in a new session and resume from its last event id."""
    server = pushpy_server()
    client = server.client()
    got = collect(client, "/s")
    closes: list[dict] = []
    client.on("close", closes.append)
    await client.connect()
    server.push.publish("/s", {"n": "1"})
    await eventually(lambda: got)
    old = client.session
    server.push.dispatcher.end(server.push.dispatcher.sessions[old], EndReason.EXPIRED)
    server.push.publish("/s", {"n": "2"})
    await eventually(lambda: client.state == "open" and client.session not in (None, old))
    await eventually(lambda: len(got) >= 2)
    assert [e.fields["n"] for e in got] == ["1", "2"]
    assert closes[0]["reason"] == "closed by server: expired" and closes[0]["reconnecting"]


@pytest_twisted.ensureDeferred
async def test_publish_while_disconnected_waits_for_the_next_connection(pushpy_server):
    """A publish made while the client is reconnecting is sent once it is open again."""
    server = pushpy_server()
    client = server.client()
    await client.connect()
    drop_connections(server.push, client.session)
    await eventually(lambda: client.state == "connecting")
    event_id = await client.publish("/later", {"text": "queued"})
    assert event_id == server.push.backplane.position


@pytest_twisted.ensureDeferred
async def test_a_restarted_server_is_reported_as_a_gap(pushpy_server):
    """After the server restarts (a new history epoch), the reconnected client reports a gap and goes on."""
    server = pushpy_server()
    client = server.client()
    got = collect(client, "/g")
    gaps: list[dict] = []
    client.on("gap", gaps.append)
    await client.connect()
    server.push.publish("/g", {"n": "1"})
    await eventually(lambda: got)
    number = server.number
    await maybeDeferred(server.port.stopListening)
    await maybeDeferred(server.push.stopService)
    await eventually(lambda: client.state == "connecting")
    again = pushpy_server(port=number)
    await eventually(lambda: client.state == "open" and client.session in again.push.dispatcher.sessions)
    assert gaps and gaps[0]["reason"] == "unknown epoch"
    again.push.publish("/g", {"n": "2"})
    await eventually(lambda: len(got) >= 2)
    assert [e.fields["n"] for e in got] == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_close_stops_reconnecting_and_fails_waiting_calls(pushpy_server):
    """After close() the client does not reconnect and calls made on it fail with Refused."""
    server = pushpy_server()
    client = server.client()
    await client.connect()
    session = client.session
    await client.close()
    await eventually(lambda: session not in server.push.dispatcher.sessions
                     or not server.push.dispatcher.sessions[session].channels)
    assert client.state == "closed"
    with pytest.raises(Refused):
        await client.publish("/a", {})


def test_url_and_transport_are_checked():
    """A URL of an unknown scheme, or a transport the URL cannot use, is refused at once."""
    with pytest.raises(ValueError):
        Client("ftp://example.org/")
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:8080/pushlet/", transport="carrier-pigeon")
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:8081", transport="sse")
    assert Client("tcp://127.0.0.1:8081").transport == "tcp"
    assert Client("http://h/pushlet").url == "http://h/pushlet/"


@pytest_twisted.ensureDeferred
async def test_a_silent_stream_is_given_up_and_reconnected(pushpy_server):
    """A streaming connection silent for longer than heartbeat_timeout counts as dead: the client
    reconnects (and keeps its session)."""
    server = pushpy_server(queue_read_timeout_millis=10_000)
    client = server.client(heartbeat_timeout=0.2)
    closes: list[dict] = []
    client.on("close", closes.append)
    await client.connect()
    session = client.session
    await eventually(lambda: closes and client.state == "open")
    assert closes[0]["reason"] == "heartbeat timeout"
    assert client.session == session


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_users_history_presence_and_the_session_key(pushpy_server, transport):
    """publish(user=...) reaches the user's session; history() and presence() answer; the client keeps
    its session_key, so a reconnect continues its session."""
    from pushpy.auth import CallbackAuthorizer

    server = pushpy_server()
    users = iter(["ann", "bob"])
    server.push.authorizer = CallbackAuthorizer(join=lambda credentials: next(users),
                                                bind=lambda credentials: "same-client")
    ann = server.client(transport=transport)
    received: list[ClientEvent] = []
    ann.on("event", received.append)
    in_room: list[ClientEvent] = []
    ann.subscribe("/room", in_room.append)
    await ann.connect()
    assert ann.session_key and server.push.dispatcher.sessions[ann.session].user == "ann"
    bob = server.client()
    await bob.connect()
    assert await bob.publish(None, {"text": "psst"}, user="ann")  # its id: kept for ann's resumes
    await eventually(lambda: received)
    assert (received[0].fields["text"], received[0].fields["p_user"]) == ("psst", "bob")
    assert await bob.publish("/room/fake", {"text": "spoof"}, user="ann")  # a label, not a room
    await eventually(lambda: len(received) == 2)
    assert received[1].to == "user" and received[1].subject == "/room/fake" and in_room == []
    with pytest.raises(Refused, match="user has no session: zed"):
        await bob.publish(None, {"text": "x"}, user="zed")
    ids = [server.push.publish("/room", {"n": str(n)}).position for n in range(3)]
    assert [m["id"] for m in await bob.history("/room", 2)] == ids[1:]
    assert await bob.presence("/room") == {"ann": 1}
    assert await bob.presence() == {"ann": 1, "bob": 1}
    session = ann.session
    await eventually(lambda: server.push.dispatcher.sessions[session].channels)
    assert drop_connections(server.push, session) == 1
    await eventually(lambda: ann.state == "connecting")
    await eventually(lambda: ann.state == "open")
    assert ann.session == session
