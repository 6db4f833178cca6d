"""One reader that never reads, among 1,000 that do, over real loopback connections.

The silent reader's queue is bounded in events and bytes (``limit.queue.bytes``)
and its connection's write buffer stays small (Twisted pauses the channel),
while every other reader gets every round of events promptly.
"""

from __future__ import annotations

import resource
import socket
import time

import pytest_twisted
from server_support import sleep
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

pytest_plugins = ("native_fixtures",)

READERS = 1_000
ROUNDS = 25
PER_ROUND = 4
PAD = "x" * 2_000
QUEUE_BYTES = 64 * 1024


class Counter(Protocol):
    """An SSE reader over HTTP/1.0 counting the events it received (cheaply: 1,000 of them run here)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.count = 0
        self.rest = b""
        self.opened: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        *blocks, self.rest = (self.rest + data).split(b"\n\n")
        for block in blocks:
            if b'"type":"event"' in block:
                self.count += 1
            elif b'"type":"open"' in block and not self.opened.called:
                self.opened.callback(self)


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def buffered(transport) -> int:
    """Bytes waiting in a Twisted TCP transport's write buffer."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


@pytest_twisted.ensureDeferred
async def test_a_silent_reader_neither_delays_a_thousand_others_nor_grows_memory(native_server):
    """1,000 SSE readers get every round of events promptly while one connection that never reads
    is paused, with its queue bounded in bytes (drop-oldest) and a small write buffer."""
    raise_file_limit(4 * READERS + 256)
    server = native_server(limit_queue_bytes=QUEUE_BYTES, queue_read_timeout_millis=30_000,
                           session_check_millis=1_000)
    slow = await server.raw_stream("sse", subject="/fan")
    session = server.sessions[slow.messages[0]["session"]]
    channel = session.channels[-1]
    channel.request.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.pause()

    request = b"GET /pushlet/sse?subject=/fan HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    readers: list[Counter] = []
    for start in range(0, READERS, 40):  # in batches: the listen backlog (50) is finite
        batch = [Counter(request) for _ in range(start, min(start + 40, READERS))]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.host_port, timeout=10)
        await gatherResults([connectProtocol(endpoint, reader) for reader in batch])
        await gatherResults([reader.opened for reader in batch])
        readers.extend(batch)
    assert len(server.sessions) == READERS + 1

    try:
        durations = []
        largest_queue = largest_buffer = 0
        for round_ in range(1, ROUNDS + 1):
            started = time.monotonic()
            for n in range(PER_ROUND):
                server.publish("/fan", f"{round_}.{n}", pad=PAD)
            expected = round_ * PER_ROUND
            while any(reader.count < expected for reader in readers):
                assert time.monotonic() - started < 10, "the readers fell behind"
                await sleep(0.005)
            durations.append(time.monotonic() - started)
            largest_queue = max(largest_queue, session.queue.size)
            largest_buffer = max(largest_buffer, buffered(channel.request.transport))
        assert channel.paused
        assert session.queue.dropped > 0  # drop-oldest applied to the silent reader only
        assert largest_queue <= QUEUE_BYTES
        # Twisted pauses a producer at 64 KiB buffered; one flush (at most a queue) may come on top.
        assert largest_buffer <= 64 * 1024 + QUEUE_BYTES + 8 * 1024
        assert sum(len(s.queue) for s in server.sessions.values() if s is not session) == 0
        # Delivery to everyone else does not slow down as the silent reader's backlog builds up.
        assert max(durations[-5:]) < max(2.0, 5 * sorted(durations)[len(durations) // 2])
    finally:
        for reader in readers:
            reader.transport.abortConnection()
        await sleep(0.05)
