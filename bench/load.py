"""The load client and the publisher: one implementation for every target.

A *worker* process holds many connections on one asyncio loop.  Connections
bind to 127.0.0.x source addresses before connecting (``IP_BIND_ADDRESS_NO_PORT``),
so the ephemeral-port limit is per source address, and workers are separate
processes, so the open-files limit is per worker.  What a connection sends
comes from the target's recipe (see ``targets.py``): a list of ``send``/``wait``
steps until the subscription is confirmed, auto-replies (Engine.IO pongs), or
a request/response loop for pull transports.

Delivered events are counted, not parsed: every published message carries
:data:`MARK`, and a connection counts its occurrences in the byte stream
(``bytes.count``, with the few bytes spanning two reads checked apart).  A few
connections per worker also read the send timestamp after the marker, for
latency.  Each worker reports its own CPU (``getrusage``) so a saturated
client shows.

The publisher is one more process: ``count`` messages of
:data:`PAYLOAD_SIZE` bytes over HTTP/1.1 keep-alive POSTs, ``concurrency``
requests in flight, optionally paced at ``rate`` per second.

Every loop here is bounded by a count and a deadline and ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import resource
import socket
import time
from dataclasses import dataclass, field
from typing import Any

#: Marks one delivered message in any wire format (letters only: no format escapes it).
MARK = b"QXBMARK"
_L1 = len(MARK) - 1
#: Digits of the send timestamp (ns since the epoch) right after the marker.
TS_DIGITS = 19
_LT = len(MARK) + TS_DIGITS
PAYLOAD_SIZE = 100
IP_BIND_ADDRESS_NO_PORT = 24
#: Latency samples kept per worker at most.
MAX_SAMPLES = 300_000
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")


def payload(seq: int) -> bytes:
    """A 100-byte message: marker, send time in ns, sequence number, padding."""
    head = b"%s%019d.%08d." % (MARK, time.time_ns(), seq)
    return head + b"x" * (PAYLOAD_SIZE - len(head))


def source_addresses(count: int, first: int = 2) -> list[str]:
    """``count`` loopback source addresses from ``127.0.0.<first>`` on (spills into 127.0.x.y)."""
    out = []
    for n in range(first, first + count):
        out.append(f"127.0.{n // 254}.{n % 254 + 1}" if n > 254 else f"127.0.0.{n}")
    return out


def raise_nofile() -> int:
    """Raise this process's open-files soft limit to the hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- recipes ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRecipe:
    """How to open one streaming subscription.

    :param steps: ``("send", bytes)`` and ``("wait", marker)`` in order;
        ``{channel}`` in sent bytes is replaced.  After the last step the
        connection is subscribed and counting starts.
    :param replies: ``(pattern, reply)``: send ``reply`` for each ``pattern`` seen.
    """

    steps: tuple[tuple[str, bytes], ...]
    replies: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True)
class PullRecipe:
    """A request/response loop: ``first``, then ``next`` after each response.

    :param id_pattern: a regex whose group 1 in the first response is the
        session id put for ``{sid}`` in ``next`` (a named group ``(?P<key>...)``
        fills ``{key}``); without one, the first response already counts as a cycle.
    """

    first: bytes
    next: bytes
    id_pattern: bytes | None = None


@dataclass(frozen=True)
class PublishRecipe:
    """How the publisher sends one message (an HTTP POST).

    ``{channel}`` and ``{pid}`` are replaced in ``path`` and ``body``;
    ``{payload}`` in ``body`` is the message.  With ``setup``, that request
    is sent once first and ``setup_id`` (regex group 1) of its answer is ``{pid}``.
    """

    path: bytes
    body: bytes = b"{payload}"
    content_type: bytes = b"text/plain"
    setup: bytes | None = None
    setup_id: bytes | None = None
    #: In an answer's body, marks a message the server refused (counted as ``rejected``).
    reject: bytes | None = None


def http_get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pushpy-bench\r\n" + extra + b"\r\n"


def _fill(template: bytes, **values: bytes) -> bytes:
    for key, value in values.items():
        template = template.replace(b"{" + key.encode() + b"}", value)
    return template


# -- connections ----------------------------------------------------------------


class StreamConn(asyncio.Protocol):
    """One streaming subscription: run the steps, then count markers."""

    def __init__(self, worker: Worker, steps: list[tuple[str, bytes]],
                 replies: tuple[tuple[bytes, bytes], ...], track: bool) -> None:
        self.w = worker
        self.steps = steps
        self.step = 0
        self.replies = replies
        self.track = track
        self.ready = False
        self.buf = b""
        self.tail = b""
        self.rtail = b""
        self.count = 0
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed before subscribed"))
        elif not self.w.closing:
            self.w.dropped += 1

    def data_received(self, data: bytes) -> None:
        if not self.ready:
            self.buf += data
            self._advance()
            return
        w = self.w
        w.bytes += len(data)
        w.reads += 1
        if self.track:
            n = self._timestamps(data)
        else:
            n = data.count(MARK)
            tail = self.tail
            if tail:
                n += (tail + data[:_L1]).count(MARK)
            self.tail = data[-_L1:] if len(data) >= _L1 else (tail + data)[-_L1:]
        if n:
            self.count += n
            w.delivered += n
            w.last = time.time()
        if self.replies:
            self._reply(data)

    def _advance(self) -> None:
        steps = self.steps
        while self.step < len(steps):
            kind, value = steps[self.step]
            if kind == "send":
                self.transport.write(value)
            else:
                at = self.buf.find(value)
                if at < 0:
                    return
                self.buf = self.buf[at + len(value):]
            self.step += 1
        self.ready = True
        rest, self.buf = self.buf, b""
        if not self.waiter.done():
            self.waiter.set_result(None)
        if rest:
            self.data_received(rest)

    def _reply(self, data: bytes) -> None:
        joined = self.rtail + data
        for pattern, reply in self.replies:
            for _ in range(joined.count(pattern)):
                self.transport.write(reply)
        self.rtail = joined[-(max(len(p) for p, _ in self.replies) - 1):]

    def _timestamps(self, data: bytes) -> int:
        buf = self.tail + data if self.tail else data
        now = time.time_ns()
        samples = self.w.latencies
        keep = len(samples) < MAX_SAMPLES
        n = end = 0
        size = len(buf)
        at = buf.find(MARK)
        while 0 <= at <= size - _LT:
            if keep:
                samples.append(now - int(buf[at + len(MARK):at + _LT]))
            n += 1
            end = at + _LT
            at = buf.find(MARK, end)
        self.tail = buf[max(end, size - (_LT - 1)):]
        return n


class PullConn(asyncio.Protocol):
    """A request/response loop on one keep-alive connection (Content-Length bodies)."""

    def __init__(self, worker: Worker, recipe: PullRecipe, channel: bytes) -> None:
        self.w = worker
        self.recipe = recipe
        self.channel = channel
        self.sid: bytes | None = None
        self.buf = b""
        self.need: int | None = None
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.next = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(_fill(self.recipe.first, channel=self.channel))
        if self.recipe.id_pattern is None:
            self.next = _fill(self.recipe.next, channel=self.channel)
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed before the first answer"))
        elif not self.w.closing:
            self.w.dropped += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                match = _CONTENT_LENGTH.search(self.buf, 0, end)
                if match is None:
                    self.w.errors += 1
                    self.transport.close()
                    return
                self.need = int(match.group(1))
                self.buf = self.buf[end + 4:]
            if len(self.buf) < self.need:
                return
            body, self.buf = self.buf[:self.need], self.buf[self.need:]
            self.need = None
            self._answer(body)

    def _answer(self, body: bytes) -> None:
        w = self.w
        if self.sid is None and self.recipe.id_pattern is not None:
            match = re.search(self.recipe.id_pattern, body)
            if match is None:
                w.errors += 1
                self.transport.close()
                return
            self.sid = match.group(1)
            values = {"sid": self.sid, **match.groupdict()}  # named groups fill their own {name}
            self.next = _fill(self.recipe.next, channel=self.channel, **values)
            self.waiter.set_result(None)
        else:
            w.cycles += 1
            n = body.count(MARK)
            if n:
                w.delivered += n
                w.last = time.time()
        if not w.closing and self.transport is not None:
            self.transport.write(self.next)


# -- worker process ---------------------------------------------------------------


@dataclass
class Job:
    """What one worker process does."""

    mode: str  # "stream" | "pull" | "churn"
    port: int
    channels: list[str]
    sources: list[str]
    stream: StreamRecipe | None = None
    pull: PullRecipe | None = None
    #: Every ``track_every``-th connection records latency samples (0: none).
    track_every: int = 0
    connect_concurrency: int = 200
    connect_timeout: float = 20.0
    #: churn: loops in parallel, seconds, cycles at most.
    churn_parallel: int = 50
    churn_seconds: float = 3.0
    churn_max: int = 1_000_000
    #: The worker ends by itself after this long without a command.
    max_seconds: float = 900.0
    host: str = "127.0.0.1"
    extra: dict[str, Any] = field(default_factory=dict)


class Worker:
    """The worker process's state: connections and counters."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.conns: list[Any] = []
        self.delivered = 0
        self.bytes = 0
        self.reads = 0
        self.cycles = 0
        self.errors = 0
        self.dropped = 0
        self.failed = 0
        self.last = 0.0
        self.latencies: list[int] = []
        self.closing = False
        self.cpu0 = cpu_seconds()
        self.t0 = time.time()

    async def connect(self, index: int, factory: Any) -> Any:
        """Open one connection from source address ``index`` and wait until subscribed."""
        job = self.job
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((job.sources[index % len(job.sources)], 0))
            await asyncio.wait_for(loop.sock_connect(sock, (job.host, job.port)), job.connect_timeout)
            _, proto = await loop.create_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            await asyncio.wait_for(asyncio.shield(proto.waiter), job.connect_timeout)
        except BaseException:
            if proto.transport is not None:
                proto.transport.abort()
            raise
        return proto

    def factory(self, index: int) -> Any:
        job = self.job
        channel = job.channels[index % len(job.channels)].encode()
        if job.mode == "pull":
            return lambda: PullConn(self, job.pull, channel)
        steps = [(kind, _fill(value, channel=channel) if kind == "send" else value)
                 for kind, value in job.stream.steps]
        track = bool(job.track_every) and index % job.track_every == 0
        return lambda: StreamConn(self, steps, job.stream.replies, track)

    async def open_all(self) -> None:
        gate = asyncio.Semaphore(self.job.connect_concurrency)

        async def one(index: int) -> None:
            async with gate:
                try:
                    self.conns.append(await self.connect(index, self.factory(index)))
                except (TimeoutError, OSError, ConnectionError):
                    self.failed += 1

        await asyncio.gather(*(one(i) for i in range(len(self.job.channels))))

    async def churn(self) -> dict[str, Any]:
        """Connect, wait until subscribed, close; as often as possible for a while."""
        job = self.job
        self.closing = True  # closes are ours: not counted as dropped
        deadline = time.time() + job.churn_seconds
        counter = iter(range(job.churn_max))
        waits: list[float] = []

        async def loop_() -> None:
            for index in counter:
                if time.time() >= deadline:
                    return
                started = time.perf_counter()
                try:
                    proto = await self.connect(index, self.factory(index))
                except (TimeoutError, OSError, ConnectionError):
                    self.failed += 1
                    continue
                waits.append(time.perf_counter() - started)
                self.cycles += 1
                proto.transport.close()

        started = time.time()
        await asyncio.gather(*(loop_() for _ in range(job.churn_parallel)))
        elapsed = time.time() - started
        await asyncio.sleep(0.2)
        stats = self.stats()
        stats["seconds"] = elapsed
        waits.sort()
        stats["connect_p50_ms"] = waits[len(waits) // 2] * 1000 if waits else None
        return stats

    def reset(self) -> None:
        self.delivered = self.bytes = self.reads = self.cycles = self.errors = 0
        self.last = 0.0
        self.latencies = []
        self.cpu0 = cpu_seconds()
        self.t0 = time.time()

    def stats(self, samples: bool = False) -> dict[str, Any]:
        counts = [c.count for c in self.conns if isinstance(c, StreamConn)]
        return {
            "conns": len(self.conns), "failed": self.failed, "dropped": self.dropped,
            "delivered": self.delivered, "bytes": self.bytes, "reads": self.reads, "cycles": self.cycles,
            "errors": self.errors, "last": self.last,
            "min_count": min(counts) if counts else None,
            "cpu": cpu_seconds() - self.cpu0, "wall": time.time() - self.t0,
            "latencies": self.latencies if samples else None,
        }

    def close(self) -> None:
        self.closing = True
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()


async def _commands(pipe: Any, worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def receive() -> None:
        try:
            inbox.put_nowait(pipe.recv())
        except (EOFError, OSError):  # the parent is gone
            loop.remove_reader(pipe.fileno())
            inbox.put_nowait("exit")

    loop.add_reader(pipe.fileno(), receive)
    try:
        while True:
            try:
                command = await asyncio.wait_for(inbox.get(), worker.job.max_seconds)
            except TimeoutError:
                return
            if command == "stats":
                pipe.send(worker.stats())
            elif command == "reset":
                worker.reset()
                pipe.send("ok")
            elif command == "stop":
                pipe.send(worker.stats(samples=True))
                return
            elif command == "exit":
                return
    finally:
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(pipe.fileno())
        worker.close()


async def _work(pipe: Any, job: Job) -> None:
    worker = Worker(job)
    if job.mode == "churn":
        pipe.send(await worker.churn())
        return
    await worker.open_all()
    pipe.send({"ready": True, **worker.stats()})
    await _commands(pipe, worker)
    await asyncio.sleep(0.05)


def worker_main(pipe: Any, job: Job) -> None:
    """Entry point of a worker process."""
    raise_nofile()
    with contextlib.suppress(BrokenPipeError, EOFError, KeyboardInterrupt):
        asyncio.run(_work(pipe, job))


# -- publisher ----------------------------------------------------------------------


@dataclass
class PublishJob:
    port: int
    recipe: PublishRecipe
    channel: str
    count: int
    concurrency: int
    #: Messages per second, or ``None`` for as fast as the server answers.
    rate: float | None = None
    max_seconds: float = 300.0
    host: str = "127.0.0.1"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body, whether the server closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    match = _CONTENT_LENGTH.search(head)
    if match:
        body = await reader.readexactly(int(match.group(1)))
    elif b"transfer-encoding: chunked" in lowered:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(parts)
    else:
        body = await reader.read()
        return status, body, True
    return status, body, b"connection: close" in lowered


def _post(path: bytes, content_type: bytes, body: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pushpy-bench\r\n"
            b"Content-Type: " + content_type + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


async def _publish(job: PublishJob) -> dict[str, Any]:
    recipe = job.recipe
    channel = job.channel.encode()
    pid = b""
    if recipe.setup is not None:
        reader, writer = await asyncio.open_connection(job.host, job.port)
        writer.write(_fill(recipe.setup, channel=channel))
        _, body, _ = await read_response(reader)
        writer.close()
        pid = re.search(recipe.setup_id, body).group(1)
    path = _fill(recipe.path, channel=channel, pid=pid)
    before, _, after = _fill(recipe.body, channel=channel, pid=pid).partition(b"{payload}")
    cpu0 = cpu_seconds()
    start = time.time()
    deadline = start + job.max_seconds
    counter = iter(range(job.count))
    result = {"sent": 0, "ok": 0, "errors": 0, "rejected": 0, "start": start}

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(job.host, job.port)
        try:
            for seq in counter:
                if job.rate:
                    delay = start + seq / job.rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if time.time() > deadline:
                    return
                writer.write(_post(path, recipe.content_type, before + payload(seq) + after))
                result["sent"] += 1
                status, body, closes = await read_response(reader)
                if status >= 300:
                    result["errors"] += 1
                elif recipe.reject is not None and recipe.reject in body:
                    result["rejected"] += 1
                else:
                    result["ok"] += 1
                if closes:
                    writer.close()
                    reader, writer = await asyncio.open_connection(job.host, job.port)
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(job.concurrency)))
    result["end"] = time.time()
    result["cpu"] = cpu_seconds() - cpu0
    return result


def publisher_main(pipe: Any, job: PublishJob) -> None:
    """Entry point of the publisher process: publish, send the result, exit."""
    try:
        result = asyncio.run(_publish(job))
    except Exception as e:  # reported to the parent, which shows it
        result = {"error": repr(e)}
    with contextlib.suppress(BrokenPipeError):
        pipe.send(result)


# -- parent side ----------------------------------------------------------------------

_CTX = multiprocessing.get_context("fork")


class Handle:
    """The parent's end of a worker or publisher process."""

    def __init__(self, target: Any, job: Any) -> None:
        self.pipe, child = _CTX.Pipe()
        self.process = _CTX.Process(target=target, args=(child, job), daemon=True)
        self.process.start()
        child.close()

    def recv(self, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"no answer from pid {self.process.pid} in {timeout:.0f}s")
        return self.pipe.recv()

    def ask(self, command: str, timeout: float = 30.0) -> Any:
        self.pipe.send(command)
        return self.recv(timeout)

    def close(self) -> None:
        self.process.join(2.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        self.pipe.close()


def start_workers(job: Job, workers: int) -> list[Handle]:
    """Split ``job.channels`` over ``workers`` processes (each with its own source addresses)."""
    handles = []
    per = -(-len(job.channels) // workers)
    for w in range(workers):
        channels = job.channels[w * per:(w + 1) * per]
        if not channels and job.mode != "churn":
            continue
        sources = job.sources[w::workers] or job.sources
        part = Job(**{**job.__dict__, "channels": channels or job.channels, "sources": sources})
        handles.append(Handle(worker_main, part))
    return handles


def start_publisher(job: PublishJob) -> Handle:
    return Handle(publisher_main, job)
