"""python-socketio's client (from PyPI) against pushpy's Socket.IO endpoint.

The synchronous client runs on its own threads, so it needs no event loop
here; the server is the ``serve.py`` subprocess.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import socketio


def until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def clients() -> Iterator[Callable[[], socketio.Client]]:
    made: list[socketio.Client] = []

    def make() -> socketio.Client:
        client = socketio.Client(reconnection=False)
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def test_connect_upgrade_join_emit_with_ack_and_broadcast(clients, sio_server):
    listener, talker = clients(), clients()
    heard: list[object] = []
    listener.on("said", lambda *args: heard.append(list(args)))
    listener.connect(sio_server.origin, namespaces=["/", "/admin"], wait_timeout=10)
    until(lambda: listener.transport() == "websocket", "the upgrade to WebSocket")
    rooms = listener.call("join", "/chat/py", timeout=10)
    assert rooms[1:] == ["/chat/py"]
    talker.connect(sio_server.origin, transports=["websocket"], wait_timeout=10)
    assert talker.call("say", ("/chat/py", {"text": "hello"}, 3), timeout=10) == "ok"
    until(lambda: heard, "the room event")
    assert heard == [[{"text": "hello"}, 3]]
    assert listener.call("echo", (b"\x00\x01", {"b": b"z"}), timeout=10) == [b"\x00\x01", {"b": b"z"}]
    admin = listener.call("whoami", namespace="/admin", timeout=10)
    assert admin["namespace"] == "/admin" and admin["sid"] == listener.get_sid("/admin")


def test_polling_when_the_server_refuses_websocket(clients, polling_server):
    client = clients()
    client.connect(polling_server.origin, wait_timeout=10)
    assert client.call("echo", "over polling", timeout=10) == ["over polling"]
    assert client.transport() == "polling"
    refused = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(polling_server.origin, transports=["websocket"], wait_timeout=5)


def test_refused_connect_and_unknown_namespace(clients, sio_server):
    refused = clients()
    errors: list[object] = []
    refused.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(sio_server.origin, auth={"refuse": "yes"}, wait_timeout=10)
    assert errors and errors[0]["message"] == "refused by test"
    with pytest.raises(socketio.exceptions.ConnectionError):
        clients().connect(sio_server.origin, namespaces=["/nope"], wait_timeout=5)


def test_server_pushes_reach_the_python_client(clients, sio_server):
    client = clients()
    got: list[object] = []
    client.on("data", lambda fields: got.append(fields))
    client.on("everyone", lambda data: got.append(data))
    client.connect(sio_server.origin, transports=["polling"], wait_timeout=10)
    client.call("join", "/chat/pushed", timeout=10)
    sio_server.hook("publish", {"subject": "/chat/pushed", "fields": {"price": "7"}})
    sio_server.hook("emit", {"event": "everyone", "data": "to all"})
    until(lambda: len(got) == 2, "both pushes")
    assert got[0]["price"] == "7" and got[1] == "to all"


def test_oversized_websocket_message_closes_only_that_connection(clients, sio_server):
    import websocket  # websocket-client, python-socketio's WebSocket transport

    bystander = clients()
    bystander.connect(sio_server.origin, transports=["websocket"], wait_timeout=10)
    ws = websocket.create_connection(
        sio_server.origin.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    try:
        assert ws.recv().startswith('0{"sid"')
        ws.send("4" + "x" * 1_000_001)  # over socketio.max.http.buffer.size
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE  # a clean close, never a reset
        assert int.from_bytes(data[:2], "big") == 1009
    finally:
        ws.close()
    assert bystander.call("echo", "still here", timeout=10) == ["still here"]
