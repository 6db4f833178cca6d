"""Checks of the load client's counting (run: ``python -m pytest bench/test_load.py -q``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    MARK,
    Job,
    PullConn,
    PullRecipe,
    StreamConn,
    Worker,
    payload,
    source_addresses,
)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def worker() -> Worker:
    return Worker(Job(mode="stream", port=1, channels=["c"], sources=["127.0.0.2"]))


def feed_in_pieces(conn: asyncio.Protocol, stream: bytes, size: int) -> None:
    for at in range(0, len(stream), size):
        conn.data_received(stream[at:at + size])


def stream_conn(w: Worker, track: bool = False, replies: tuple = ()) -> StreamConn:
    conn = StreamConn(w, [("send", b"GET / HTTP/1.1\r\n\r\n"), ("wait", b"READY")], replies, track)
    conn.connection_made(FakeTransport())
    return conn


def test_stream_counts_every_marker_whatever_the_read_size() -> None:
    """Markers split across reads are counted exactly once, for every read size."""
    events = b"".join(b"<event m=\"" + payload(i) + b"\"/>" for i in range(50))
    for size in (1, 2, 3, 5, 7, 64, 1000):
        async def run(size: int = size) -> int:
            w = worker()
            conn = stream_conn(w)
            feed_in_pieces(conn, b"HTTP/1.1 200 OK\r\n\r\nREADY" + events, size)
            return w.delivered
        assert asyncio.run(run()) == 50, size


def test_stream_ignores_bytes_before_the_ready_marker() -> None:
    """Nothing is counted before the subscription is confirmed, and bytes after it in the same read are."""
    async def run() -> tuple[int, bool]:
        w = worker()
        conn = stream_conn(w)
        conn.data_received(MARK + b" READY " + MARK)
        return w.delivered, conn.ready
    assert asyncio.run(run()) == (1, True)


def test_tracked_stream_reads_send_times_across_reads() -> None:
    """A tracked connection records one latency sample per marker, even when split mid-timestamp."""
    events = b"".join(b"data: " + payload(i) + b"\n\n" for i in range(20))
    for size in (1, 9, 30, 4096):
        async def run(size: int = size) -> tuple[int, int, bool]:
            w = worker()
            conn = stream_conn(w, track=True)
            feed_in_pieces(conn, b"READY" + events, size)
            return w.delivered, len(w.latencies), all(0 <= x < 60e9 for x in w.latencies)
        assert asyncio.run(run()) == (20, 20, True), size


def test_stream_answers_each_ping_once() -> None:
    """Auto-replies go out once per pattern seen, split or not."""
    ping = b"\x81\x012"
    async def run() -> int:
        w = worker()
        conn = stream_conn(w, replies=((ping, b"PONG"),))
        feed_in_pieces(conn, b"READY" + (b"x" + ping) * 5, 2)
        return conn.transport.written.count(b"PONG")
    assert asyncio.run(run()) == 5


def test_pull_parses_split_responses_and_sends_the_next_request() -> None:
    """A pull connection reads the id from the first answer, then counts cycles and markers per answer."""
    recipe = PullRecipe(first=b"FIRST {channel}", next=b"NEXT {sid}", id_pattern=rb'id="([^"]+)"')

    def response(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def run() -> tuple[int, int, list[bytes]]:
        w = worker()
        conn = PullConn(w, recipe, b"c")
        conn.connection_made(FakeTransport())
        stream = response(b'id="S1"') + response(MARK + MARK) + response(b"hb")
        feed_in_pieces(conn, stream, 3)
        return w.cycles, w.delivered, conn.transport.written
    cycles, delivered, written = asyncio.run(run())
    assert (cycles, delivered) == (2, 2)
    assert written == [b"FIRST c", b"NEXT S1", b"NEXT S1", b"NEXT S1"]


def test_payload_is_100_bytes_and_source_addresses_are_loopback() -> None:
    """Messages are exactly 100 bytes; source addresses stay in 127.0.0.0/8 and are distinct."""
    assert len(payload(12345678)) == 100
    addresses = source_addresses(600)
    assert len(set(addresses)) == 600
    assert all(a.startswith("127.") and a != "127.0.0.1" for a in addresses)


def test_publisher_counts_refusals_apart_from_acknowledgements() -> None:
    """Answers carrying the recipe's reject marker count as rejected, HTTP errors as errors, the rest ok."""
    from load import PublishJob, PublishRecipe, _publish

    answers = iter([b"200 OK", b"200 OK", b"503 Busy"] * 10)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            status = next(answers)
            body = b"nack" if seen % 2 else b"ack"
            seen += 1
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def run() -> dict:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await _publish(PublishJob(port=port, recipe=PublishRecipe(path=b"/p", reject=b"nack"),
                                             channel="c", count=6, concurrency=1))
        finally:
            server.close()

    result = asyncio.run(run())
    # answers: (200, ack) ok, (200, nack) rejected, (503, ack) error, (200, nack), (200, ack), (503, nack)
    assert (result["sent"], result["ok"], result["rejected"], result["errors"]) == (6, 2, 2, 2)
