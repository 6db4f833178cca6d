"""The npm package socket.io-client (v4) under Node against pushpy's Socket.IO endpoint.

Each test runs one scenario of ``js/scenarios.js`` (see there for what it
does step by step) and checks what the client saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sio_support import SioServer
from sio_support import scenario as run_scenario


def scenario(js: Path, name: str, server: SioServer) -> dict[str, Any]:
    return run_scenario(js, name, server.origin)


def test_connect_upgrade_rooms_acks_binary_namespaces(socketio_js, sio_server):
    r = scenario(socketio_js, "basic", sio_server)
    assert r["first"] == "polling" and r["upgraded"] == "websocket"
    assert r["rooms"][1:] == ["/chat/room1"]
    assert r["sayAck"] == "ok"
    assert r["said"] == r["saidToo"] == [{"text": "hi"}, 2]
    assert r["echo"] == [1, "two", {"three": [3]}, None]
    assert r["binary"] == [[1, 2, 3], "xyz"]
    assert r["everyone"] == ["all!"]
    assert r["ask"] == "asked" and r["answered"] == [["answer-what?"]]
    assert r["afterLeave"] == 0
    assert r["admin"] == {"sid": r["adminId"], "namespace": "/admin"}
    assert r["unknownNamespace"] == "Invalid namespace"
    assert r["refused"] == ["refused by test", {"why": "yes"}]


def test_polling_only_client(socketio_js, sio_server):
    r = scenario(socketio_js, "polling", sio_server)
    assert r["transport"] == "polling"
    assert r["sayAck"] == "ok" and r["said"] == ["over polling"]
    assert r["binary"] == "bytes"
    published = r["published"][0]
    assert published["price"] == "42" and published["p_subject"] == "/chat/poll"


def test_falls_back_to_polling_when_websocket_is_refused(socketio_js, polling_server):
    r = scenario(socketio_js, "fallback", polling_server)
    assert r["fallback"] == "polling" and r["echo"] == ["still works"]
    assert r["defaultClient"] == "polling" and r["echoDefault"] == ["polling only"]


def test_reconnect_recovers_missed_room_events(socketio_js, recovery_server):
    r = scenario(socketio_js, "recover", recovery_server)
    assert r["offset"].endswith(":1")
    assert r["reason"] == "transport close"
    assert r["recovered"] is True and r["sameId"] is True
    assert r["seen"] == ["0", "1", "2", "3"]
    assert r["after"] == "4"


def test_socketio_room_and_sse_subscriber_see_the_same_events(socketio_js, sio_server):
    r = scenario(socketio_js, "cross", sio_server)
    assert r["heard"] == [["said", [{"text": "from socket.io"}]], ["data", "from pushpy"]]
    assert [fields["text"] for fields in r["sse"]] == ["from socket.io", "from pushpy"]
    assert r["sse"][0]["sio_event"] == "said" and json.loads(r["sse"][0]["sio_args"]) == [
        {"text": "from socket.io"}]
