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
    args = parser.parse_args()
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
    config = Config(**{k: v for k, v in settings.items() if k in Config.__dataclass_fields__})
    server = PushServer(config, reactor=reactor)
    site = build_site(server)
    bench = Resource()
    bench.putChild(b"publish", BenchPublish(server))
    site.resource.putChild(b"bench", bench)
    if hasattr(server, "socketio"):  # the Socket.IO endpoint (the pushpy-socketio target)
        site.resource.putChild(b"publish", SocketIOPublish(socketio_app(server)))
    server.startService()
    port = reactor.listenTCP(args.port, site, backlog=4096, interface="127.0.0.1")
    parent = os.getppid()
    LoopingCall(lambda: os.getppid() != parent and reactor.stop()).start(1.0, now=False)
    print(f"READY {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
