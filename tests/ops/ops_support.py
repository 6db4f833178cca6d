"""Helpers of the operations tests: the TCP transport and observers of each transport's closing.

Servers come from the ``pushpy_server`` fixture (:mod:`server_support`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from server_support import Running, eventually
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol, Protocol

# -- the plain TCP transport ------------------------------------------------------

class LineClient(Protocol):
    """A raw TCP client of the JSON-lines transport, recording every line it reads."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.messages: list[dict[str, Any]] = []
        self.closed = False
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self.lines.append(line)
            self.messages.append(json.loads(line))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.transport.write(data + b"\n")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def until(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.of_type(kind)) >= count or self.closed, timeout)
        assert len(self.of_type(kind)) >= count, self.messages
        return self.of_type(kind)


def listen_tcp(server: Running) -> int:
    """Serve the TCP transport of ``server`` on a free loopback port; the port number."""
    from pushpy.web.tcp import tcp_factory

    port = reactor.listenTCP(0, tcp_factory(server.push), interface="127.0.0.1")
    server.extra_ports.append(port)
    return port.getHost().port


async def line_client(port: int, connect: dict[str, Any] | None = None) -> LineClient:
    """A connected :class:`LineClient`; with ``connect``, that message is sent first."""
    client = LineClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
    if connect is not None:
        client.send({"type": "connect", **connect})
    return client


# -- observers of the closing of each transport -------------------------------------

class Body(Protocol):
    """A streaming HTTP response body, kept whole, and whether the server ended it."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True


async def open_body(agent: Any, url: str) -> Body:
    """GET ``url`` and read its body as it arrives."""
    response = await agent.request(b"GET", url.encode())
    assert response.code == 200, response.code
    body = Body()
    response.deliverBody(body)
    return body


class WSWatcher(WebSocketClientProtocol):
    """A WebSocket client recording messages and how the connection closed."""

    def onConnect(self, response: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = False

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        value = json.loads(payload)
        self.messages.extend(value if isinstance(value, list) else [value])

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))


async def open_ws(url: str, protocol: type[WSWatcher] = WSWatcher) -> Any:
    """A connected :class:`WSWatcher` (or ``protocol``) for ``ws://...`` ``url``."""
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.protocol = protocol
    factory.opened = Deferred()
    port = int(url.split(":")[2].split("/")[0])
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5).connect(factory)
    return await factory.opened


# -- a real twistd ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Twistd(ProcessProtocol):
    """``twistd -n pushpy`` in a subprocess."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred = Deferred()
        self.code: int | None = None
        self.signal: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.code = reason.value.exitCode
        self.signal = reason.value.signal
        self.ended.callback(self)


def start_twistd(tmp_path: Path, *args: str) -> Twistd:
    """``twistd -n pushpy --no-sources ARGS`` of this checkout, logging to ``tmp_path/twistd.log``."""
    process = Twistd()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; "
               "from twisted.scripts.twistd import run; run()",
               "-n", "--pidfile=", "--logfile", str(tmp_path / "twistd.log"), "pushpy", "--no-sources", *args]
    reactor.spawnProcess(process, sys.executable, command, env=env, path=str(tmp_path))
    return process


async def wait_listening(port: int, process: Twistd, timeout: float = 20.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert not process.ended.called, process.output
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        d: Deferred = Deferred()
        reactor.callLater(0.1, d.callback, None)
        await d
    raise AssertionError("twistd did not start listening")
