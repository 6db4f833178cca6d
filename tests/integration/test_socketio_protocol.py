"""The Engine.IO / Socket.IO endpoint over real loopback HTTP: handshake, pings, bad input.

The real clients (Node, Chromium, python-socketio) are in ``tests/socketio``;
here raw requests check the protocol's answers to what no client library sends.
"""

from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher

SEP = "\x1e"


def url(harness, query: str, path: str = "/socket.io/") -> str:
    return f"{harness.origin}{path}?EIO=4&{query}"


async def get(harness, query: str, path: str = "/socket.io/"):
    response = await harness.client.get(url(harness, query, path), timeout=5)
    return response.code, await response.text("utf-8")


async def post(harness, query: str, body: bytes):
    response = await harness.client.post(url(harness, query), data=body, timeout=5)
    return response.code, await response.text("utf-8")


async def handshake(harness, path: str = "/socket.io/") -> tuple[str, dict]:
    code, body = await get(harness, "transport=polling", path)
    assert code == 200 and body.startswith('0{"sid"')
    info = json.loads(body[1:])
    return info["sid"], info


async def connect_namespace(harness, sid: str) -> str:
    assert await post(harness, f"transport=polling&sid={sid}", b"40") == (200, "ok")
    code, body = await get(harness, f"transport=polling&sid={sid}")
    assert code == 200 and body.startswith('40{"sid"'), body
    return json.loads(body[2:])["sid"]


@pytest_twisted.ensureDeferred
async def test_handshake_at_the_default_path_and_under_the_root(serve):
    harness = serve(socketio_ping_interval_millis=25_000)
    sid, info = await handshake(harness)
    assert info["upgrades"] == ["websocket"] and info["pingInterval"] == 25_000
    assert info["pingTimeout"] == 20_000 and info["maxPayload"] == 1_000_000
    await handshake(harness, "/pushlet/socket.io/")
    socket_id = await connect_namespace(harness, sid)
    assert socket_id in harness.sessions


@pytest_twisted.ensureDeferred
async def test_protocol_errors(serve):
    harness = serve()
    assert await get(harness, "transport=polling&sid=nope") == (
        400, '{"code":1,"message":"Session ID unknown"}')
    response = await harness.client.get(f"{harness.origin}/socket.io/?EIO=3&transport=polling")
    assert response.code == 400 and json.loads(await response.text())["code"] == 5
    assert (await get(harness, "transport=carrier-pigeon"))[0] == 400
    code, body = await post(harness, "transport=polling", b"40")
    assert code == 400 and json.loads(body)["code"] == 2


@pytest_twisted.ensureDeferred
async def test_malformed_packets_close_only_their_session(serve):
    harness = serve()
    bad_engine, _ = await handshake(harness)
    bad_socketio, _ = await handshake(harness)
    good, _ = await handshake(harness)
    good_socket = await connect_namespace(harness, good)
    code, body = await post(harness, f"transport=polling&sid={bad_engine}", b"9nonsense")
    assert code == 400 and json.loads(body)["code"] == 3
    assert await post(harness, f"transport=polling&sid={bad_socketio}", b'42{"not":"an array"}') == (
        200, "ok")
    for sid in (bad_engine, bad_socketio):
        assert (await get(harness, f"transport=polling&sid={sid}"))[0] == 400
    # The good session still works: an event with an ack id gets its ack (built-in subscribe).
    body = '421["subscribe","/ok"]'
    assert await post(harness, f"transport=polling&sid={good}", body.encode()) == (200, "ok")
    assert await get(harness, f"transport=polling&sid={good}") == (200, '431[{"ok":true}]')
    assert harness.sessions[good_socket].subscriptions


@pytest_twisted.ensureDeferred
async def test_oversized_payload_is_413_and_closes_the_session(serve):
    harness = serve(socketio_max_http_buffer_size=1_000)
    sid, info = await handshake(harness)
    assert info["maxPayload"] == 1_000
    socket_id = await connect_namespace(harness, sid)
    code, _ = await post(harness, f"transport=polling&sid={sid}", b'42["x","' + b"a" * 2_000 + b'"]')
    assert code == 413
    assert (await get(harness, f"transport=polling&sid={sid}"))[0] == 400
    assert socket_id not in harness.sessions


@pytest_twisted.ensureDeferred
async def test_overlapping_polls_are_refused(serve):
    harness = serve()
    sid, _ = await handshake(harness)
    first = harness.client.get(url(harness, f"transport=polling&sid={sid}"), timeout=5)
    await deferLater(reactor, 0.1, lambda: None)
    code, body = await get(harness, f"transport=polling&sid={sid}")
    assert code == 400 and json.loads(body)["code"] == 3
    response = await first
    assert response.code == 200 and (await response.text()).endswith("1")  # the close packet


@pytest_twisted.ensureDeferred
async def test_server_pings_and_closes_a_session_without_pongs(serve):
    harness = serve(socketio_ping_interval_millis=200, socketio_ping_timeout_millis=300)
    sid, _ = await handshake(harness)
    socket_id = await connect_namespace(harness, sid)
    assert await get(harness, f"transport=polling&sid={sid}") == (200, "2")
    assert await post(harness, f"transport=polling&sid={sid}", b"3") == (200, "ok")
    assert await get(harness, f"transport=polling&sid={sid}") == (200, "2")  # the next ping
    for _ in range(100):  # no pong this time: closed after the ping timeout
        if socket_id not in harness.sessions:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert socket_id not in harness.sessions
    assert (await get(harness, f"transport=polling&sid={sid}"))[0] == 400


@pytest_twisted.ensureDeferred
async def test_websocket_only_handshake_and_unknown_sid_upgrade(serve):
    harness = serve()
    response = await treq.get(url(harness, "transport=websocket&sid=unknown"),
                              headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                       "Sec-WebSocket-Version": "13",
                                       "Sec-WebSocket-Key": "cHVzaHB5LXRlc3Qta2V5IQ=="}, timeout=5)
    assert response.code == 400 and json.loads(await response.text())["code"] == 1
    response = await treq.get(url(harness, "transport=websocket"), timeout=5)
    assert response.code == 400  # not an upgrade request


@pytest_twisted.ensureDeferred
async def test_shutdown_sends_the_close_packet(serve):
    harness = serve()
    sid, _ = await handshake(harness)
    socket_id = await connect_namespace(harness, sid)
    idle, _ = await handshake(harness)  # in no namespace: closed by the Engine.IO layer itself
    waiting = [harness.client.get(url(harness, f"transport=polling&sid={s}"), timeout=5) for s in (sid, idle)]
    await deferLater(reactor, 0.1, lambda: None)
    await harness.push.stopService()
    for pending in waiting:
        response = await pending
        assert response.code == 200 and (await response.text()).endswith("1")
    assert socket_id not in harness.sessions


@pytest_twisted.ensureDeferred
async def test_pongs_keep_an_idle_socket_alive_past_its_lease(serve):
    harness = serve(socketio_ping_interval_millis=100, socketio_ping_timeout_millis=2_000,
                    native_session_timeout_secs=0.6)
    sid, _ = await handshake(harness)
    socket_id = await connect_namespace(harness, sid)
    started = reactor.seconds()
    while reactor.seconds() - started < 1.8:  # three leases long, answering every ping
        assert await get(harness, f"transport=polling&sid={sid}") == (200, "2")
        assert await post(harness, f"transport=polling&sid={sid}", b"3") == (200, "ok")
    assert socket_id in harness.sessions


@pytest_twisted.ensureDeferred
async def test_connect_auth_payload_is_the_join_credentials(serve):
    from pushpy.auth import mint_token

    harness = serve(auth_token_secret="s3cret-long-enough-secret")
    sid, _ = await handshake(harness)
    assert await post(harness, f"transport=polling&sid={sid}", b'40{"token":"forged"}') == (200, "ok")
    code, body = await get(harness, f"transport=polling&sid={sid}")
    assert code == 200 and body.startswith('44{"message":')
    token = mint_token("s3cret-long-enough-secret", "ann", subscribe=["/chat/"])
    connect = b'40{"token":"' + token.encode() + b'"}'
    assert await post(harness, f"transport=polling&sid={sid}", connect) == (200, "ok")
    code, body = await get(harness, f"transport=polling&sid={sid}")
    socket_id = json.loads(body[2:])["sid"]
    assert harness.sessions[socket_id].user == "ann"
    packets = b'421["subscribe","/chat/a"]' + SEP.encode() + b'422["subscribe","/secret"]'
    assert await post(harness, f"transport=polling&sid={sid}", packets) == (200, "ok")
    code, body = await get(harness, f"transport=polling&sid={sid}")
    first, second = body.split(SEP)
    assert first == '431[{"ok":true}]'
    assert second.startswith('432[{"error":')
    assert [s.subject for s in harness.sessions[socket_id].subscriptions.values()] == ["#/", "/chat/a"]


@pytest_twisted.ensureDeferred
async def test_builtin_events_subscribe_and_publish_through_the_backplane(serve):
    harness = serve()
    listener, _ = await handshake(harness)
    talker, _ = await handshake(harness)
    await connect_namespace(harness, listener)
    await connect_namespace(harness, talker)
    subscribe = b'421["subscribe","/news"]'
    assert await post(harness, f"transport=polling&sid={listener}", subscribe) == (200, "ok")
    assert await get(harness, f"transport=polling&sid={listener}") == (200, '431[{"ok":true}]')
    publish = b'427["publish","/news","headline",{"title":"hi"}]'
    assert await post(harness, f"transport=polling&sid={talker}", publish) == (200, "ok")
    position = harness.push.backplane.position
    assert await get(harness, f"transport=polling&sid={talker}") == (
        200, '437[{"ok":true,"id":"' + position + '"}]')
    assert await get(harness, f"transport=polling&sid={listener}") == (200, '42["headline",{"title":"hi"}]')
    assert harness.push.backplane.history("/news", 1)[0].fields["title"] == "hi"


@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_answered_to_the_client_and_logged_rarely(serve):
    """Arguments a handler cannot take are the client's error: acknowledged with an error and logged at
    info once per interval, never as a failure; a handler that raises is a bug: logged as a failure, the
    client acknowledged with a generic error."""
    harness = serve()
    app = harness.push.socketio
    app.on("chat", lambda sid, message: {"got": message})
    app.on("buggy", lambda sid, message: {}["missing"])
    app.on("buggy_types", lambda sid, message: len(None))
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        sid, _ = await handshake(harness)
        await connect_namespace(harness, sid)
        flood = SEP.join(f'42{n}["chat","a","b","c"]' for n in range(1, 21)).encode()
        flood += SEP.encode() + b'42["chat"]'  # no acknowledgement asked: nothing to answer
        assert await post(harness, f"transport=polling&sid={sid}", flood) == (200, "ok")
        _, body = await get(harness, f"transport=polling&sid={sid}")
        assert body.split(SEP) == [f'43{n}[{{"error":"bad arguments for chat"}}]' for n in range(1, 21)]
        bugs = SEP.join(['4250["buggy","x"]', '4251["buggy_types","x"]', '4252["chat","ok"]']).encode()
        assert await post(harness, f"transport=polling&sid={sid}", bugs) == (200, "ok")
        _, body = await get(harness, f"transport=polling&sid={sid}")
        assert body.split(SEP) == ['4350[{"error":"internal server error"}]',
                                   '4351[{"error":"internal server error"}]', '4352[{"got":"ok"}]']
    finally:
        globalLogPublisher.removeObserver(logged.append)
    mine = [e for e in logged if "socket.io" in str(e.get("log_format", ""))]
    client = [e for e in mine if "cannot take" in e["log_format"]]
    assert len(client) == 1 and client[0]["log_level"] == LogLevel.info and "log_failure" not in client[0]
    failures = [e for e in mine if "log_failure" in e]
    assert [e["log_failure"].type for e in failures] == [KeyError, TypeError]


@pytest_twisted.ensureDeferred
async def test_one_encoding_shared_by_every_socket_honours_skip_sid_and_exact_rooms(serve):
    """An emit is encoded once for the namespace; still the skipped socket does not get it, and a socket in
    room ``a`` does not get the events of room ``a/b`` (rooms are exact, subscriptions prefixes)."""
    harness = serve()
    app = harness.push.socketio
    engines = [(await handshake(harness))[0] for _ in range(3)]
    sockets = [await connect_namespace(harness, sid) for sid in engines]
    app.enter_room(sockets[0], "a")
    app.enter_room(sockets[1], "a")
    app.enter_room(sockets[2], "a/b")
    app.emit("first", 1, skip_sid=sockets[0])  # the skipped socket flushes first
    app.emit("deep", 2, to="a/b")
    app.emit("room", 3, to="a", skip_sid=sockets[1])
    answers = [await get(harness, f"transport=polling&sid={sid}") for sid in engines]
    assert answers == [(200, '42["room",3]'), (200, '42["first",1]'),
                       (200, SEP.join(['42["first",1]', '42["deep",2]']))]


@pytest_twisted.ensureDeferred
async def test_server_side_unsubscribe_takes_sockets_out_of_rooms_and_disconnect_ends_them(serve):
    """``PushServer.unsubscribe`` of a room's subject takes a socket out of that room (and out of
    the rooms under it), without a packet; ``disconnect`` sends the socket a DISCONNECT."""
    harness = serve()
    app = harness.push.socketio
    engines = [(await handshake(harness))[0] for _ in range(2)]
    sockets = [await connect_namespace(harness, sid) for sid in engines]
    for socket in sockets:
        app.enter_room(socket, "a")
        app.enter_room(socket, "a/b")
        app.enter_room(socket, "c")
    harness.push.unsubscribe("a", session=sockets[0])
    assert app.rooms(sockets[0]) == [sockets[0], "c"]
    app.emit("gone", 1, to="a")
    app.emit("deep", 2, to="a/b")
    app.emit("kept", 3, to="c")
    answers = [await get(harness, f"transport=polling&sid={sid}") for sid in engines]
    assert answers == [(200, '42["kept",3]'),
                       (200, SEP.join(['42["gone",1]', '42["deep",2]', '42["kept",3]']))]
    harness.push.disconnect(session=sockets[1], reason="bye")
    assert await get(harness, f"transport=polling&sid={engines[1]}") == (200, "41")
    assert sockets[1] not in harness.sessions and sockets[0] in harness.sessions
