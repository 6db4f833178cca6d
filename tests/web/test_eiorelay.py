"""The Engine.IO relay between nodes, on a fake clock: two servers joined by an in-memory "Redis".

:class:`Net` stands for the backplane's direct channels (``send_direct``,
``listening``): a message is delivered on the next reactor turn, to a node
that is on the net.  The real thing, with Redis and real processes, is
``tests/cluster/test_cluster_socketio.py``; here every failure path is
driven deterministically.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from webfakes import FakeReactor, open_request

from pushpy.backplane import MemoryBackplane
from pushpy.config import Config
from pushpy.server import PushServer
from pushpy.web.eiorelay import CHECK_EVERY, RELAY_MARGIN, pack_body, unpack_body
from pushpy.web.socketio import socketio_resource

UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}


class Link:
    up = True


class Net:
    """The direct channels of the nodes on it."""

    def __init__(self, reactor: FakeReactor) -> None:
        self.reactor = reactor
        self.nodes: dict[str, NetBackplane] = {}
        #: Nodes that receive messages but never handle them (a stuck owner).
        self.mute: set[str] = set()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, node: str, kind: str, message: str) -> Deferred:
        target = self.nodes.get(node)
        if target is None:
            return succeed(0)
        self.sent.append((node, json.loads(message)))
        if node not in self.mute:
            self.reactor.callLater(0, target.direct_handlers[kind], message)
        return succeed(1)


class NetBackplane(MemoryBackplane):
    """The in-process backplane plus direct messages over a :class:`Net`."""

    def __init__(self, net: Net, node: str) -> None:
        super().__init__()
        self.net = net
        self.node = node
        self.link = Link()
        self.direct_handlers: dict[str, Any] = {}
        net.nodes[node] = self

    def send_direct(self, node: str, kind: str, message: str) -> Deferred:
        if not self.link.up:
            return fail(ConnectionError("redis is not connected"))
        return self.net.send(node, kind, message)

    def listening(self, nodes: list[str]) -> Deferred:
        return succeed({node: node in self.net.nodes for node in nodes})


class Node:
    def __init__(self, net: Net, node: str) -> None:
        self.backplane = NetBackplane(net, node)
        self.server = PushServer(Config(), reactor=net.reactor, backplane=self.backplane)
        self.resource = socketio_resource(self.server)
        self.engine = self.resource.engine

    def request(self, sid: str | None = None, method: bytes = b"GET", body: bytes = b"") -> Any:
        query = "EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
        return open_request(self.server, query, resource=self.resource, method=method, body=body)


@pytest.fixture
def net() -> Net:
    return Net(FakeReactor())


@pytest.fixture
def nodes(net: Net) -> tuple[Node, Node]:
    return Node(net, "aaaa"), Node(net, "bbbb")


def handshake(node: Node) -> str:
    exchange = node.request()
    assert exchange.finished and exchange.body.startswith(b'0{"sid"')
    return json.loads(exchange.body[1:])["sid"]


def unknown(exchange: Any) -> bool:
    return exchange.finished and exchange.code == 400 and json.loads(exchange.body) == UNKNOWN_SID


def test_sids_name_their_node_and_polls_elsewhere_are_relayed(net, nodes):
    a, b = nodes
    sid = handshake(a)
    assert sid.endswith(".aaaa")
    waiting = b.request(sid)
    net.reactor.advance(0)
    assert not waiting.finished  # held on a, like a local poll
    posted = b.request(sid, b"POST", b"40")
    net.reactor.advance(0)
    net.reactor.advance(0)
    assert posted.finished and posted.body == b"ok"
    net.reactor.advance(0)
    net.reactor.advance(0)
    assert waiting.finished and waiting.code == 200 and waiting.body.startswith(b'40{"sid"')
    assert waiting.header(b"Content-Type") == [b"text/plain; charset=UTF-8"]
    assert b"no-cache" in b" ".join(waiting.header(b"Cache-Control") or [])
    assert waiting.header(b"Content-Length") == [str(len(waiting.body)).encode()]
    assert not b.engine.sessions and len(a.engine.sessions) == 1


def test_a_stuck_owner_times_out_as_an_unknown_sid_and_is_cancelled(net, nodes):
    a, b = nodes
    sid = handshake(a)
    net.mute.add("aaaa")
    waiting = b.request(sid)
    net.reactor.advance(a.engine.ping_interval + RELAY_MARGIN - 0.1)
    assert not waiting.finished
    net.reactor.advance(0.2)
    assert unknown(waiting)
    assert net.sent[-1] == ("aaaa", {"k": "cancel", "id": net.sent[0][1]["id"], "from": "bbbb"})


def test_a_gone_owner_is_noticed_while_the_poll_waits(net, nodes):
    a, b = nodes
    sid = handshake(a)
    waiting = b.request(sid)
    net.reactor.advance(0)
    del net.nodes["aaaa"]  # killed: its channel has no subscriber
    net.reactor.advance(CHECK_EVERY)
    assert unknown(waiting)
    assert unknown(b.request(sid))  # PUBLISH reaches nobody: answered at once


def test_a_client_dropping_a_relayed_poll_ends_the_session_on_the_owner(net, nodes):
    a, b = nodes
    sid = handshake(a)
    waiting = b.request(sid)
    net.reactor.advance(0)
    assert a.engine.sessions[sid].poll is not None
    waiting.disconnect()
    net.reactor.advance(0)
    assert sid not in a.engine.sessions  # as a lost local poll: transport error
    again = b.request(sid)
    net.reactor.advance(0)
    assert unknown(again)


def test_an_answer_the_asking_node_cannot_get_closes_the_session(net, nodes):
    a, b = nodes
    sid = handshake(a)
    b.request(sid)
    net.reactor.advance(0)
    del net.nodes["bbbb"]  # the asking node died
    a.engine.sessions[sid].send(["4hello"])
    net.reactor.advance(0)
    assert sid not in a.engine.sessions


def test_bodies_pass_exactly_and_the_size_limit_applies_on_the_owner(net, nodes):
    a, b = nodes
    for body in (b"4\xc3\xa9t\xc3\xa9\x1ebAAH/", b"\xff\xfe not utf-8"):
        assert unpack_body(pack_body(body)) == body
    sid = handshake(a)
    bad = b.request(sid, b"POST", b"4\xff")
    net.reactor.advance(0)
    net.reactor.advance(0)
    assert bad.code == 400 and json.loads(bad.body)["message"] == "Bad request"
    assert sid not in a.engine.sessions  # parse error, on the owner
    sid = handshake(a)
    big = b.request(sid, b"POST", b"4" + b"x" * a.engine.max_payload)
    assert "b" not in net.sent[-1][1] and net.sent[-1][1]["over"] is True  # not sent through Redis
    net.reactor.advance(0)
    net.reactor.advance(0)
    assert big.code == 413 and sid not in a.engine.sessions


def test_without_redis_the_relay_fails_at_once(net, nodes):
    a, b = nodes
    sid = handshake(a)
    b.backplane.link.up = False
    assert unknown(b.request(sid))


def test_websocket_and_own_sids_are_not_relayed(net, nodes):
    a, b = nodes
    sid = handshake(a)
    exchange = open_request(b.server, f"EIO=4&transport=websocket&sid={sid}", resource=b.resource)
    assert unknown(exchange) and not net.sent
    a.engine.sessions[sid].close("transport close")
    assert unknown(a.request(sid)) and not net.sent


def test_the_in_process_backplane_has_no_relay():
    server = PushServer(Config(), reactor=FakeReactor())
    resource = socketio_resource(server)
    assert resource.engine.relay is None
    exchange = open_request(server, "EIO=4&transport=polling", resource=resource)
    sid = json.loads(exchange.body[1:])["sid"]
    assert "." not in sid
    assert unknown(open_request(server, "EIO=4&transport=polling&sid=abc.aaaa", resource=resource))
