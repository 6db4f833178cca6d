"""pushpy as a benchmark target: the default site plus one bench-only publish endpoint.

Serves pushpy's ready site (``/pushlet/pushlet.srv`` and the native
transports) with default settings, except the stream heartbeat
(``queue.read.timeout.millis``), which follows ``--heartbeat`` so every target
heartbeats alike, ``stream.max.bytes`` (no recycling: the load client does
not reconnect) and ``limit.publish.rate`` (off: one publisher session sends
thousands of messages a second).  ``POST
/bench/publish?channel=NAME`` (body: the message) calls
``server.publish('/NAME', m=body)``: the in-process API, used when the bench
runs with ``--pushlet-publish api``; the default publishes with the Pushlet
protocol itself (``p_event=publish`` from a joined session).

Run: ``python bench/pushpy_server.py --port 8000 [--heartbeat 5] [--src DIR]``;
prints ``READY <port>`` once listening.

``--backplane redis://127.0.0.1:6379/0`` serves on the Redis backplane (a
fresh key prefix per run, deleted at exit); with ``--workers N`` this script
opens the port and runs N copies of itself on it (the socket passed down and
adopted, as ``twistd pushpy --workers`` does), so every event crosses Redis.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.resource import Resource
from twisted.web.server import Request

REPO = Path(__file__).resolve().parent.parent


class SocketIOPublish(Resource):
    """``POST /publish?channel=NAME``: ``sio.emit('m', body, to=NAME)``, as ``sio_server.py`` does."""

    isLeaf = True

    def __init__(self, sio: Any) -> None:
        super().__init__()
        self.sio = sio

    def render_POST(self, request: Request) -> bytes:
        channel = request.args.get(b"channel", [b"bench"])[0].decode()
        self.sio.emit("m", request.content.read().decode(), to=channel)
        request.setHeader(b"content-type", b"text/plain")
        return b"ok"


def socketio_app(server: Any) -> Any:
    """The same application as ``sio_server.py``: a client joins the room named by ``?room=``."""
    from urllib.parse import parse_qs

    sio = server.socketio

    @sio.on("connect")
    def connect(sid: str, environ: dict, auth: object = None) -> None:
        sio.enter_room(sid, parse_qs(environ.get("QUERY_STRING", "")).get("room", ["bench"])[0])

    return sio


class BenchPublish(Resource):
    """``POST /bench/publish?channel=NAME``: publish the body as field ``m`` on ``/NAME``."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.push = server  # not .server: putChild overwrites that

    def render_POST(self, request: Request) -> bytes:
        channel = request.args.get(b"channel", [b"bench"])[0].decode()
        self.push.publish("/" + channel, m=request.content.read().decode())
        request.setHeader(b"content-type", b"text/plain")
        return b"ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds between stream heartbeats")
    parser.add_argument("--src", help="folder holding the pushpy package to serve (default: this repository)")
    parser.add_argument("--backplane", default="", help="redis://host:port/db: serve on the Redis backplane")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--adopt-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backplane and not args.prefix:
        args.prefix = "pushpy-bench-" + os.urandom(4).hex()
    if args.workers > 1:
        supervise(args)
        return
    sys.path.insert(0, args.src or str(REPO))
    from pushpy import Config, PushServer
    from pushpy.web.site import build_site

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])],
        redirectStandardIO=False)

    # The load client does not reconnect, so native streams are never recycled (stream.max.bytes), and
    # the one publisher session sends thousands of messages a second (no limit.publish.rate). Settings
    # that the served revision does not know are left out.
    settings = {"queue_read_timeout_millis": int(args.heartbeat * 1000), "stream_max_bytes": 2**62,
                "limit_publish_rate": 0.0, "socketio_ping_interval_millis": int(args.heartbeat * 1000),
                "socketio_ping_timeout_millis": int(max(20.0, 2 * args.heartbeat) * 1000)}
    if args.backplane:
        settings.update(backplane=args.backplane, backplane_prefix=args.prefix)
    config = Config(**{k: v for k, v in settings.items() if k in Config.__dataclass_fields__})
    server = PushServer(config, reactor=reactor)
    site = build_site(server)
    bench = Resource()
    bench.putChild(b"publish", BenchPublish(server))
    site.resource.putChild(b"bench", bench)
    if hasattr(server, "socketio"):  # the Socket.IO endpoint (the pushpy-socketio target)
        site.resource.putChild(b"publish", SocketIOPublish(socketio_app(server)))
    server.startService()
    try:  # as twistd pushpy does (gc.freeze); revisions before it have no pushpy.heap
        from pushpy.heap import freeze_startup_heap
    except ImportError:
        pass
    else:
        reactor.callWhenRunning(freeze_startup_heap)
    if args.adopt_fd is not None:
        import socket

        port = reactor.adoptStreamPort(args.adopt_fd, socket.AF_INET, site)
        os.close(args.adopt_fd)
    else:
        port = reactor.listenTCP(args.port, site, backlog=4096, interface="127.0.0.1")
    parent = os.getppid()
    LoopingCall(lambda: os.getppid() != parent and reactor.stop()).start(1.0, now=False)

    def ready() -> None:
        print(f"READY {port.getHost().port}", flush=True)

    start = getattr(server.backplane, "start", None)
    if start is not None:  # Redis: ready once connected
        start().addCallback(lambda _: ready())
    else:
        ready()
    reactor.run()
    if args.backplane and args.adopt_fd is None:
        delete_prefix(args.backplane, args.prefix)


def supervise(args: argparse.Namespace) -> None:
    """Open the port, run ``args.workers`` servers on it, stop them when we are told or orphaned."""
    import signal
    import socket
    import subprocess
    import time

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    sock.setblocking(False)  # shared by the workers: a blocking accept() would freeze the loser of a race
    argv = [sys.executable, __file__, "--port", "0", "--heartbeat", str(args.heartbeat),
            "--adopt-fd", str(sock.fileno()), "--prefix", args.prefix]
    if args.src:
        argv += ["--src", args.src]
    if args.backplane:
        argv += ["--backplane", args.backplane]
    workers = [subprocess.Popen(argv, stdout=subprocess.PIPE, pass_fds=(sock.fileno(),))
               for _ in range(args.workers)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().startswith(b"READY")
    sock.close()
    print(f"READY {args.port}", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    parent = os.getppid()
    while not stopping and os.getppid() == parent and all(w.poll() is None for w in workers):
        time.sleep(0.5)
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        worker.wait(10)
    if args.backplane:
        delete_prefix(args.backplane, args.prefix)


def delete_prefix(url: str, prefix: str) -> None:
    """Delete this run's keys (``prefix:*``) with SCAN and DEL, over a plain socket."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)

    def command(*words: str) -> bytes:
        return b"".join([b"*%d\r\n" % len(words)] +
                        [b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words])

    with socket.create_connection((parts.hostname, parts.port or 6379), timeout=5) as conn:
        reader = conn.makefile("rb")

        def reply() -> object:
            line = reader.readline().rstrip(b"\r\n")
            if line[:1] == b"*":
                return [reply() for _ in range(int(line[1:]))]
            if line[:1] == b"$":
                size = int(line[1:])
                return None if size < 0 else reader.read(size + 2)[:-2].decode()
            return line[1:].decode()

        cursor = "0"
        while True:
            conn.sendall(command("SCAN", cursor, "MATCH", prefix + ":*", "COUNT", "1000"))
            cursor, keys = reply()  # type: ignore[misc]
            if keys:
                conn.sendall(command("DEL", *keys))
                reply()
            if cursor == "0":
                break


if __name__ == "__main__":
    main()
