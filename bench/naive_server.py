"""The naive baseline: a minimal hand-written twisted.web fan-out server.

What a Twisted user would write in an afternoon, and so the ceiling pushpy is
measured against.  ``GET /sse?channel=NAME`` keeps a chunked
``text/event-stream`` response open; ``POST /publish?channel=NAME`` (the body
is the message) writes ``data: <body>\\n\\n`` into every open response of that
channel; ``GET /poll?channel=NAME`` is a long-poll answered by the next
publish (no queue: what is published between two polls is missed).

``--mode request`` writes with ``Request.write``; ``--mode transport`` frames
each chunk once and writes the same bytes straight to every
``request.channel.transport``.  Heartbeats (``: hb``) go to every stream from
one shared ``LoopingCall``.

Run: ``python bench/naive_server.py --port 8000 [--mode transport] [--heartbeat 5]``;
it prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

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
from twisted.web.server import NOT_DONE_YET, Request, Site

HEARTBEAT = b": hb\n\n"


def chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Hub:
    """Open streams and waiting polls, by channel."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        #: channel -> {request: transport}
        self.streams: dict[bytes, dict[Request, object]] = {}
        self.polls: dict[bytes, list[Request]] = {}

    def publish(self, channel: bytes, message: bytes) -> int:
        frame = b"data: " + message + b"\n\n"
        streams = self.streams.get(channel)
        count = 0
        if streams:
            if self.raw:
                framed = chunk(frame)
                for transport in streams.values():
                    transport.write(framed)
            else:
                for request in streams:
                    request.write(frame)
            count = len(streams)
        waiting = self.polls.pop(channel, None)
        if waiting:
            length = str(len(frame)).encode()
            for request in waiting:
                if not request.finished and not request._disconnected:
                    request.setHeader(b"content-length", length)
                    request.write(frame)
                    request.finish()
                    count += 1
        return count

    def heartbeat(self) -> None:
        framed = chunk(HEARTBEAT)
        for streams in self.streams.values():
            if self.raw:
                for transport in streams.values():
                    transport.write(framed)
            else:
                for request in streams:
                    request.write(HEARTBEAT)


def channel_of(request: Request) -> bytes:
    return request.args.get(b"channel", [b"bench"])[0]


class Stream(Resource):
    isLeaf = True

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(b": ok\n\n")
        streams = self.hub.streams.setdefault(channel_of(request), {})
        streams[request] = request.channel.transport
        request.notifyFinish().addBoth(lambda _: streams.pop(request, None))
        return NOT_DONE_YET


class Poll(Resource):
    isLeaf = True

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/plain")
        self.hub.polls.setdefault(channel_of(request), []).append(request)
        return NOT_DONE_YET


class Publish(Resource):
    isLeaf = True

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def render_POST(self, request: Request) -> bytes:
        count = self.hub.publish(channel_of(request), request.content.read())
        request.setHeader(b"content-type", b"text/plain")
        return b"%d" % count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("request", "transport"), default="request")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds between heartbeats")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])],
        redirectStandardIO=False)

    hub = Hub(raw=args.mode == "transport")
    root = Resource()
    root.putChild(b"sse", Stream(hub))
    root.putChild(b"poll", Poll(hub))
    root.putChild(b"publish", Publish(hub))
    LoopingCall(hub.heartbeat).start(args.heartbeat, now=False)
    port = reactor.listenTCP(args.port, Site(root), backlog=4096, interface="127.0.0.1")
    parent = os.getppid()
    LoopingCall(lambda: os.getppid() != parent and reactor.stop()).start(1.0, now=False)
    print(f"READY {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
