"""Socket.IO long-polling across real nodes behind a balancer without sticky sessions.

Three ``twistd pushpy`` nodes on one Redis; a round-robin balancer
(:class:`RoundRobinProxy`) sends each HTTP request to the next node, so the
polls and posts of one Engine.IO session land on every node and are relayed
through Redis to the node holding the session.  Real clients: python-socketio
(polling only) and socket.io-client under Node; raw HTTP for the edge cases
(a dropped relayed poll, close packets, oversized bodies, WebSocket upgrades on
the wrong node, and nodes killed during a relayed poll).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
import websocket
from cluster_support import Node, RoundRobinProxy, http, publish, running_cluster, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "socketio"))
from sio_support import ensure_js, scenario  # noqa: E402

EIO = "/socket.io/?EIO=4&transport=polling"
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}


@pytest.fixture
def balancer(cluster: list[Node]) -> Iterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(lambda: [node.port for node in cluster])
    yield proxy
    proxy.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., socketio.Client]]:
    made: list[socketio.Client] = []

    def make(**options: Any) -> socketio.Client:
        client = socketio.Client(**{"reconnection": False, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def owner(nodes: list[Node], sid: str) -> Node:
    """The node an Engine.IO sid names."""
    by_id = {node.stats()["backplane"]["node"]: node for node in nodes if node.process.poll() is None}
    return by_id[sid.rpartition(".")[2]]


def sessions(nodes: list[Node]) -> int:
    return sum(node.stats()["sessions"]["total"] for node in nodes if node.process.poll() is None)


# -- real clients ---------------------------------------------------------------


def test_python_client_polls_through_a_round_robin_balancer(cluster, balancer, clients):
    listener, talker = clients(), clients()
    heard: list[Any] = []
    pushed: list[Any] = []
    listener.on("said", lambda *args: heard.append(list(args)))
    listener.on("data", lambda fields: pushed.append(fields))
    listener.connect(balancer.origin, transports=["polling"], wait_timeout=10)
    assert listener.call("subscribe", "/chat/rr", timeout=10) == {"ok": True}
    talker.connect(balancer.origin, transports=["polling"], wait_timeout=10)
    ack = talker.call("publish", ("/chat/rr", "said", {"text": "hi"}, b"\x00\x01\xffbin"), timeout=10)
    assert ack["ok"] is True
    wait_until(lambda: heard)
    assert heard == [[{"text": "hi"}, b"\x00\x01\xffbin"]]  # the binary attachment, unchanged
    publish(cluster[2].port, "/chat/rr", text="from the api")
    wait_until(lambda: pushed)
    assert pushed[0]["text"] == "from the api"

    sid = listener.eio.sid
    home = owner(cluster, sid)
    assert sessions(cluster) == 2
    listener.disconnect()
    talker.disconnect()
    wait_until(lambda: sessions(cluster) == 0)
    mine = [entry for entry in balancer.served if f"sid={sid}" in entry[1]]
    assert {port for _, _, port, _ in mine} == {node.port for node in cluster}  # every node served it
    assert any(port != home.port for _, _, port, _ in mine)
    wait_until(lambda: all(status for _, _, _, status in mine))  # the last poll, answered
    assert [entry for entry in mine if entry[3] != 200] == []


def test_python_client_reconnects_when_the_node_holding_its_session_is_killed(cluster, balancer, clients):
    client = clients(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
    connects: list[str] = []
    pushed: list[str] = []
    client.on("connect", lambda: connects.append(client.eio.sid))
    client.on("data", lambda fields: pushed.append(fields["n"]))
    client.connect(balancer.origin, transports=["polling"], wait_timeout=10)
    assert client.call("subscribe", "/chat/kill", timeout=10) == {"ok": True}
    publish(cluster[0].port, "/chat/kill", n="before")
    wait_until(lambda: pushed == ["before"])

    home = owner(cluster, connects[0])
    home.kill()
    live = [node for node in cluster if node is not home]
    wait_until(lambda: len(connects) == 2, timeout=40)
    assert owner(live, connects[1]) in live  # a new session, on a live node
    assert client.call("subscribe", "/chat/kill", timeout=10) == {"ok": True}
    publish(live[0].port, "/chat/kill", n="after")
    wait_until(lambda: "after" in pushed)

    # Killing a node that relays the session's requests: the client goes on (or reconnects) and works.
    other = next(node for node in live if node is not owner(live, connects[-1]))
    other.kill()
    time.sleep(1.0)
    survivor = next(node for node in live if node is not other)
    deadline = time.monotonic() + 40
    while True:
        try:
            if client.connected and client.call("subscribe", "/chat/kill", timeout=10) == {"ok": True}:
                break
        except socketio.exceptions.SocketIOError:
            pass  # not connected (again) yet
        assert time.monotonic() < deadline, "the client never worked again"
        time.sleep(0.2)
    publish(survivor.port, "/chat/kill", n="last")
    wait_until(lambda: "last" in pushed)


def test_node_client_through_the_balancer(cluster, balancer):
    r = scenario(ensure_js(), "cluster", balancer.origin)
    assert r["subscribed"] == {"ok": True} and r["published"]["ok"] is True
    assert r["said"] == [{"text": "hi"}, [0, 1, 255]]
    assert r["defaultTransport"] in ("polling", "websocket")
    assert r["defaultSubscribed"] == {"ok": True} and r["defaultHeard"] == ["to both"]
    served = [entry for entry in balancer.served if f"sid={r['sid']}" in entry[1]]
    assert len({port for _, _, port, _ in served}) == 3
    assert all(status == 200 for _, _, _, status in served), served


@pytest.fixture
def recovering(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes with connection state recovery (``socketio.recovery=true``)."""
    with running_cluster(tmp_path, settings={"socketio.recovery": "true"}) as nodes:
        yield nodes


def test_node_client_recovers_its_session_on_another_node_after_a_kill(recovering):
    proxy = RoundRobinProxy(lambda: [node.port for node in recovering])
    node_bin = shutil.which("node")
    assert node_bin, "node (20) is needed"
    js = ensure_js()
    client = subprocess.Popen([node_bin, str(js / "scenarios.js"), "clusterRecover", proxy.origin],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=js)
    try:
        ready = client.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        home = owner(recovering, ready[1])
        home.kill()
        live = [node for node in recovering if node is not home]
        for n in ("1", "2", "3"):  # missed: the client learns of the kill about a second later
            publish(live[0].port, "/chat/crec", n=n)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
        proxy.close()
    assert client.returncode == 0, (out, err)
    r = json.loads(out.strip().splitlines()[-1])
    assert r["recovered"] is True and r["sameId"] is True, (r, err)
    assert r["seen"] == ["0", "1", "2", "3", "4"]
    assert owner(live, r["engine"]) in live


# -- raw Engine.IO requests -------------------------------------------------------


def handshake(node: Node) -> str:
    status, body = http(node.port, "GET", EIO)
    assert status == 200 and body.startswith(b'0{"sid"'), body
    return json.loads(body[1:])["sid"]


def poll(node: Node, sid: str, timeout: float = 40) -> tuple[int, bytes]:
    return http(node.port, "GET", f"{EIO}&sid={sid}", timeout=timeout)


def post(node: Node, sid: str, body: bytes) -> tuple[int, bytes]:
    return http(node.port, "POST", f"{EIO}&sid={sid}", body, {"Content-Type": "text/plain;charset=UTF-8"})


class Pending:
    """A poll waiting in a thread."""

    def __init__(self, node: Node, sid: str) -> None:
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, args=(node, sid), daemon=True)
        self.thread.start()

    def _run(self, node: Node, sid: str) -> None:
        try:
            self.result = poll(node, sid)
        except OSError as e:
            self.result = e

    def get(self, timeout: float = 15) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the poll was not answered"
        return self.result


def unknown(answer: tuple[int, bytes]) -> bool:
    return answer[0] == 400 and json.loads(answer[1]) == UNKNOWN_SID


def test_relayed_requests_and_their_edge_cases(cluster):
    a, b, c = cluster
    sid = handshake(a)
    assert owner(cluster, sid) is a and "." in sid
    assert post(b, sid, b"40") == (200, b"ok")  # CONNECT, relayed to a
    status, body = poll(c, sid)
    assert status == 200 and body.startswith(b'40{"sid"'), body
    # A relayed poll waits for packets, like a local one: the ack of an event posted on another node.
    waiting = Pending(b, sid)
    time.sleep(0.3)
    assert post(c, sid, b'421["subscribe","/chat/raw"]') == (200, b"ok")
    assert waiting.get() == (200, b'431[{"ok":true}]')

    # A WebSocket upgrade on a node that does not hold the session is refused; polling goes on.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{b.port}/socket.io/?EIO=4&transport=websocket&sid={sid}",
                                    timeout=10)
    assert refused.value.status_code == 400
    assert post(c, sid, b'422["subscribe","/chat/raw2"]') == (200, b"ok")
    assert poll(b, sid) == (200, b'432[{"ok":true}]')

    # The client's close packet, posted on one node, answers the poll waiting on another.
    waiting = Pending(c, sid)
    time.sleep(0.3)
    assert post(b, sid, b"1") == (200, b"ok")
    assert waiting.get()[1].split(b"\x1e")[-1] == b"1"
    assert unknown(poll(b, sid))
    # A sid naming no live node, or this node, is unknown at once.
    assert unknown(poll(b, "x" * 20 + ".0123456789ab"))
    assert unknown(poll(a, sid))


def test_oversized_relayed_body_is_refused_and_closes_the_session(cluster):
    a, b, c = cluster
    sid = handshake(a)
    status, _ = post(b, sid, b"4" + b"x" * 1_000_001)  # over socketio.max.http.buffer.size
    assert status == 413
    assert unknown(poll(c, sid))


def test_a_dropped_relayed_poll_is_cancelled_on_the_owner(cluster):
    a, b, _ = cluster
    sid = handshake(a)
    assert post(b, sid, b"40") == (200, b"ok")
    assert poll(b, sid)[1].startswith(b"40")
    assert sessions(cluster) == 1
    with socket.create_connection(("127.0.0.1", b.port)) as raw:
        raw.sendall(f"GET {EIO}&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.5)  # relayed and held on a
    # The owner hears of it (a lost poll ends the session, as on one node), without another request.
    wait_until(lambda: sessions(cluster) == 0)
    assert unknown(poll(a, sid))


def test_a_node_killed_during_a_relayed_poll(cluster):
    a, b, c = cluster
    # The asking node dies: the client's next poll (elsewhere) is refused, it does not hang.
    sid = handshake(a)
    waiting = Pending(b, sid)
    time.sleep(0.5)
    b.kill()
    assert isinstance(waiting.get(), OSError)
    status, _ = poll(c, sid)  # the owner still holds the dead node's poll: overlapping polls
    assert status == 400
    assert unknown(poll(c, sid))
    # The owner dies: the relayed poll is answered as for an unknown sid, long before the ping interval.
    sid = handshake(a)
    waiting = Pending(c, sid)
    time.sleep(0.5)
    a.kill()
    assert unknown(waiting.get(timeout=15))
