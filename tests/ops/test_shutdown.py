"""Graceful shutdown: every client gets its close, connections drain, the process exits in bounded time."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest_twisted
from ops_support import (
    WSWatcher,
    free_port,
    line_client,
    listen_tcp,
    open_body,
    open_ws,
    start_twistd,
    wait_listening,
)
from server_support import eventually
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool

from pushpy.shutdown import drain


class FakeTransport:
    """A transport that closes when told to, or never (a client that stopped reading)."""

    def __init__(self, closes: bool) -> None:
        self.closes = closes
        self.disconnected = False
        self.aborted = False
        self.lose_calls = 0

    def loseConnection(self) -> None:
        self.lose_calls += 1
        if self.closes:
            self.disconnected = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnected = True


def test_drain_fires_once_every_connection_closed():
    """HTTP connections are closed after their bytes; drain fires as soon as every connection is gone."""
    clock = Clock()
    http, ws = FakeTransport(closes=True), FakeTransport(closes=False)
    d = drain({http: True, ws: False}, clock, timeout=5)
    assert http.lose_calls == 1 and ws.lose_calls == 0  # a WebSocket finishes its own closing handshake
    assert not d.called
    clock.advance(0.1)
    ws.disconnected = True
    clock.advance(0.05)
    assert d.called and not http.aborted and not ws.aborted
    assert not clock.getDelayedCalls()


def test_drain_is_bounded_by_the_timeout():
    """A connection still open after the timeout is aborted and drain fires anyway."""
    clock = Clock()
    stuck = FakeTransport(closes=False)
    d = drain({stuck: True}, clock, timeout=2)
    clock.advance(1.9)
    assert not d.called
    clock.pump([0.05] * 4)
    assert d.called and stuck.aborted
    assert not clock.getDelayedCalls()


@pytest_twisted.ensureDeferred
async def test_stop_service_sends_every_client_its_close_then_drains(pushpy_server):
    """stopService ends a Pushlet stream with abort, an SSE stream and a TCP connection with a close
    message, a WebSocket with code 1001 and the reason, and fires once they are all closed."""
    server = pushpy_server()
    tcp_port = listen_tcp(server)
    query = "pushlet.srv?p_event=join-listen&p_format=xml&p_subject=/a"
    pushlet = await open_body(server.agent, server.url + query)
    sse = await open_body(server.agent, server.url + "sse?subject=/a")
    ws = await open_ws(server.url.replace("http://", "ws://") + "ws?subject=/a")
    tcp = await line_client(tcp_port, {"subject": "/a"})
    await tcp.until("open")
    await eventually(lambda: sum(len(s.channels) for s in server.push.dispatcher.sessions.values()) == 4)
    await server.port.stopListening()
    await server.push.stopService()
    assert b'p_event="abort"' in pushlet.data
    assert b'data: {"type":"close","reason":"shutdown"}' in sse.data
    assert {"type": "close", "reason": "shutdown"} in ws.messages
    assert tcp.messages[-1] == {"type": "close", "reason": "shutdown"}
    assert pushlet.closed and sse.closed and tcp.closed
    await eventually(lambda: ws.closed)
    assert (ws.close_code, ws.close_reason) == (1001, "shutdown")


class EngineWSWatcher(WSWatcher):
    """A raw Engine.IO WebSocket client: records text packets as they are."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(payload.decode())


async def engine_ws(url: str) -> EngineWSWatcher:
    return await open_ws(url, EngineWSWatcher)


@pytest_twisted.ensureDeferred
async def test_stop_service_closes_socketio_polls_and_websockets_then_drains(pushpy_server):
    """A Socket.IO poll waiting at shutdown is answered with the close packet ``1``; a polling client
    between two polls gets it on its next poll (a keep-alive connection still can), and shutdown waits
    for that, a second at most; a WebSocket gets the close packet and a close frame 1001."""
    server = pushpy_server(shutdown_timeout_secs=10)
    root = server.url + "socket.io/?EIO=4&transport="

    async def text(method: str, query: str, body: bytes | None = None) -> str:
        response = await server.http.request(method, root + query, data=body, timeout=5)
        assert response.code == 200, response.code
        return await response.text("utf-8")

    async def polling_socket() -> str:
        sid = json.loads((await text("GET", "polling"))[1:])["sid"]
        assert await text("POST", f"polling&sid={sid}", b"40") == "ok"
        assert (await text("GET", f"polling&sid={sid}")).startswith("40{")
        return sid

    waiting_sid, between_sid, gone_sid = [await polling_socket() for _ in range(3)]
    waiting = server.http.get(root + f"polling&sid={waiting_sid}", timeout=5)
    ws = await engine_ws(root.replace("http://", "ws://") + "websocket")
    ws.sendMessage(b"40")
    await eventually(lambda: any(m.startswith("40{") for m in ws.messages))
    await eventually(lambda: sum(len(s.channels) for s in server.push.dispatcher.sessions.values()) == 4)
    started = time.monotonic()
    stopped = server.push.stopService()
    response = await waiting
    assert response.code == 200 and (await response.text("utf-8")).endswith("1")
    await eventually(lambda: ws.closed)
    assert ws.messages[-1] == "1" and ws.close_code == 1001
    assert not stopped.called  # the client between polls has not had its close yet
    assert await text("GET", f"polling&sid={between_sid}") == "1"
    assert list(server.push.socketio.engine.farewells) == [gone_sid]
    await eventually(lambda: stopped.called)  # the client that never polls again is given up on
    assert 0.8 < time.monotonic() - started < 3 and not server.push.socketio.engine.farewells
    assert (await server.http.get(root + f"polling&sid={between_sid}", timeout=5)).code == 400


@pytest_twisted.ensureDeferred
async def test_sigterm_under_twistd_closes_every_client_and_exits_promptly(tmp_path):
    """On SIGTERM, twistd pushpy sends each client its close (Pushlet abort, SSE and TCP close messages,
    WebSocket close 1001) and exits well within shutdown.timeout.secs, logging each session's end."""
    http_port, tcp_port = free_port(), free_port()
    process = start_twistd(tmp_path, "--listen", f"tcp:{http_port}:interface=127.0.0.1",
                           "--tcp", f"tcp:{tcp_port}:interface=127.0.0.1",
                           "--set", "shutdown.timeout.secs=4", "--log-level", "info")
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        await wait_listening(http_port, process)
        await wait_listening(tcp_port, process)
        agent = Agent(reactor, pool=pool)
        root = f"http://127.0.0.1:{http_port}/pushlet/"
        pushlet = await open_body(agent, root + "pushlet.srv?p_event=join-listen&p_format=xml&p_subject=/a")
        sse = await open_body(agent, root + "sse?subject=/a")
        ws = await open_ws(f"ws://127.0.0.1:{http_port}/pushlet/ws?subject=/a")
        tcp = await line_client(tcp_port, {"subject": "/a"})
        await tcp.until("open")
        await eventually(lambda: b"<event " in pushlet.data and b'"open"' in sse.data, timeout=10)
        started = time.monotonic()
        os.kill(process.transport.pid, signal.SIGTERM)
        await process.ended.addTimeout(10, reactor)
        elapsed = time.monotonic() - started
        await eventually(lambda: ws.closed)
    finally:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
        await pool.closeCachedConnections()
    assert elapsed < 3.0, elapsed
    log = (tmp_path / "twistd.log").read_text()
    assert process.signal == signal.SIGTERM, (process.code, process.signal, log)  # twistd's way to exit
    assert b'p_event="abort"' in pushlet.data and pushlet.closed
    assert b'"reason":"shutdown"' in sse.data and sse.closed
    assert (ws.close_code, ws.close_reason) == (1001, "shutdown")
    assert tcp.messages[-1] == {"type": "close", "reason": "shutdown"} and tcp.closed
    assert "joined (pushlet/xml)" in log and "ended: shutdown" in log
    assert "shutdown: 4 connections closed" in log
