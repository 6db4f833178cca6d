"""A TCP proxy that buffers HTTP responses, as some corporate proxies and antivirus filters do.

Requests go upstream at once.  Response bytes are held back until a response
is complete (``Content-Length`` reached, last chunk of a chunked body, or a
body-less status), until 64 KB are waiting, or until the server closes the
connection.  Streaming responses (SSE, XHR streaming, iframe) therefore stay
silent, and a WebSocket upgrade (``101``) is never answered; complete
answers (long-poll, poll, ``send``, static files) pass unchanged.
"""

from __future__ import annotations

from twisted.internet import protocol, reactor

HOLD_LIMIT = 64 * 1024


def complete_response(data: bytes, start: int) -> int | None:
    """Where the HTTP response starting at ``start`` ends, or ``None`` while incomplete or endless."""
    head_end = data.find(b"\r\n\r\n", start)
    if head_end < 0:
        return None
    body = head_end + 4
    lines = data[start:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 101:
        return None  # an upgrade: a stream, held forever
    if status in (204, 304) or 100 <= status < 200:
        return body
    if "content-length" in headers:
        end = body + int(headers["content-length"])
        return end if len(data) >= end else None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        position = body
        while True:
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(data[position:line_end].split(b";")[0], 16)
            if size == 0:
                end = data.find(b"\r\n\r\n", line_end)  # after optional trailers
                if data[line_end:line_end + 4] == b"\r\n\r\n":
                    end = line_end
                return end + 4 if end >= 0 else None
            position = line_end + 2 + size + 2
            if position > len(data):
                return None
    return None  # ends when the connection does


class Upstream(protocol.Protocol):
    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream

    def connectionMade(self) -> None:
        self.downstream.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.downstream.hold(data)

    def connectionLost(self, reason: object) -> None:
        self.downstream.upstream_lost()


class Downstream(protocol.Protocol):
    """One browser connection; bytes from the server wait in ``data``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.upstream: Upstream | None = None
        self.pending = b""
        self.data = b""      # response bytes not yet forwarded
        self.framed = True   # ``data`` starts at a response's status line

    def connectionMade(self) -> None:
        protocol.ClientCreator(reactor, Upstream, self).connectTCP(self.host, self.port).addErrback(
            lambda failure: self.transport.loseConnection())

    def upstream_ready(self, upstream: Upstream) -> None:
        self.upstream = upstream
        if self.pending:
            upstream.transport.write(self.pending)
            self.pending = b""

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending += data
        else:
            self.upstream.transport.write(data)

    def hold(self, data: bytes) -> None:
        self.data += data
        while self.framed and self.data:
            end = complete_response(self.data, 0)
            if end is None:
                break
            self.transport.write(self.data[:end])
            self.data = self.data[end:]
        if len(self.data) >= HOLD_LIMIT:
            # Too much to hold: let it go, and keep holding what follows of this response.
            self.transport.write(self.data)
            self.data = b""
            self.framed = False

    def upstream_lost(self) -> None:
        if self.data:
            self.transport.write(self.data)
            self.data = b""
        self.transport.loseConnection()

    def connectionLost(self, reason: object) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class BufferingProxyFactory(protocol.Factory):
    """Listens for browsers; each connection gets its own upstream connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def buildProtocol(self, addr: object) -> Downstream:
        return Downstream(self.host, self.port)
