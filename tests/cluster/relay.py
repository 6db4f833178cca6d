"""A TCP relay on loopback between a node and Redis that cuts a connection at a chosen request.

:meth:`Relay.cut_at` arms a cut on the first request holding a marker: the
node's side is aborted (it never gets Redis's reply) and the Redis side is
closed gracefully, after the bytes forwarded so far (so Redis runs them).
With ``forward=True`` the marked request is forwarded first (Redis runs it,
its reply is lost); otherwise only the requests before it are.  After a cut
the relay refuses connections until :meth:`Relay.reopen`, as it does after
:attr:`Relay.accepting` more connections when that is set.
"""

from __future__ import annotations

import re

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint

#: Where a RESP command starts (``*<count>`` then a bulk string).
_COMMAND = re.compile(rb"\*\d+\r\n\$")


class _Back(protocol.Protocol):
    def __init__(self, front: _Front) -> None:
        self.front = front

    def dataReceived(self, data: bytes) -> None:
        if not self.front.cut:
            self.front.transport.write(data)

    def connectionLost(self, reason: object) -> None:
        self.front.transport.loseConnection()


class _Front(protocol.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.back: _Back | None = None
        self.early: list[bytes] = []
        self.cut = False

    def connectionMade(self) -> None:
        self.relay.opened(self)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.relay.target)
        endpoint.connect(protocol.Factory.forProtocol(lambda: _Back(self))).addCallbacks(
            self._connected, lambda _: self.transport.abortConnection())

    def _connected(self, back: _Back) -> None:
        self.back = back
        for data in self.early:
            self._forward(data)
        self.early = []

    def dataReceived(self, data: bytes) -> None:
        if self.back is None:
            self.early.append(data)
        else:
            self._forward(data)

    def _forward(self, data: bytes) -> None:
        if self.cut:
            return
        relay = self.relay
        at = data.find(relay.marker) if relay.marker else -1
        if at < 0:
            self.back.transport.write(data)
            return
        if not relay.forward:  # only the commands before the marked one
            starts = [m.start() for m in _COMMAND.finditer(data, 0, at)]
            data = data[:starts[-1]] if starts else b""
        self.back.transport.write(data)
        self.cut = True
        self.transport.abortConnection()
        self.back.transport.loseConnection()  # after what was forwarded
        relay.cutting()

    def connectionLost(self, reason: object) -> None:
        self.relay.fronts.discard(self)
        if self.back is not None and not self.cut:
            self.back.transport.loseConnection()


class Relay:
    """Listens on a free loopback port and relays every connection to ``127.0.0.1:target``."""

    def __init__(self, target: int = 6379) -> None:
        self.target = target
        self.marker = b""
        self.forward = False
        self._cut: Deferred | None = None
        self.factory = protocol.Factory.forProtocol(lambda: _Front(self))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.number = self.port.getHost().port
        self.listening = True
        #: The client connections open now.
        self.fronts: set[_Front] = set()
        #: Stop listening after this many more accepted connections (None: never).
        self.accepting: int | None = None

    def opened(self, front: _Front) -> None:
        self.fronts.add(front)
        if self.accepting is not None:
            self.accepting -= 1
            if self.accepting <= 0:
                self.accepting = None
                self.listening = False
                self.port.stopListening()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.number}/0"

    def cut_at(self, marker: bytes, *, forward: bool) -> Deferred:
        """Arm one cut; the Deferred fires once it happened and the relay stopped listening."""
        self.marker, self.forward = marker, forward
        self._cut = Deferred()
        return self._cut

    def cutting(self) -> None:
        self.marker = b""
        d, self._cut = self._cut, None
        self.listening = False
        stopped = maybeDeferred(self.port.stopListening)
        if d is not None:
            stopped.addCallback(lambda _: d.callback(None))

    def reopen(self) -> None:
        """Accept connections again, on the same port."""
        self.port = reactor.listenTCP(self.number, self.factory, interface="127.0.0.1")
        self.listening = True

    def close(self) -> Deferred:
        return maybeDeferred(self.port.stopListening) if self.listening else maybeDeferred(lambda: None)
