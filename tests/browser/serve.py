"""A pushpy server for the browser tests, run as a subprocess.

``python serve.py [--proxy] [key=value ...]`` starts a :class:`PushServer`
with :func:`build_site` on a free loopback port (config keys as in
``pushlet.properties``), prints one JSON line ``{"port": ..., "proxy": ...}``
and serves until killed.  Besides the site it mounts test-only hooks under
``/test/``:

- ``GET /test/page.html``: an empty page loading ``/pushlet/lib/pushpy.js`` and ``harness.js``;
- ``GET /test/cacheable.html``: the same page without ``Cache-Control: no-store`` (which keeps a page out of
  the browser's back/forward cache);
- ``POST /test/publish`` with ``{"subject", "fields"}`` or ``{"subject", "numbers": [first, last]}``:
  ``server.publish`` (a numbered sequence sets the field ``n``); answers the ids;
- ``POST /test/drop?session=ID``: abort the TCP connections of that session's open channels;
- ``POST /test/end?session=ID``: end the session (its client is told ``close``).

``--proxy`` also starts :class:`~buffering_proxy.BufferingProxyFactory` in front
of the site, on another port.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE)]

from buffering_proxy import BufferingProxyFactory  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Request  # noqa: E402

from pushpy.config import Config  # noqa: E402
from pushpy.core.sessions import EndReason  # noqa: E402
from pushpy.server import PushServer  # noqa: E402
from pushpy.web.site import build_site  # noqa: E402

PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pushpy browser test</title>
<script src="/pushlet/lib/pushpy.js"></script>
<script src="/test/harness.js"></script>
</head><body><p id="status">test page</p></body></html>
"""


def static(body: bytes, content_type: bytes, cache_control: bytes = b"no-store") -> Resource:
    class Static(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> bytes:
            request.setHeader(b"Content-Type", content_type)
            request.setHeader(b"Cache-Control", cache_control)
            request.setHeader(b"Content-Length", str(len(body)).encode())
            return body

    return Static()


class Hook(Resource):
    """A test-only POST endpoint answering JSON."""

    isLeaf = True

    def __init__(self, push: PushServer, action) -> None:
        super().__init__()
        self.push = push
        self.action = action

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read()
        session = request.args.get(b"session", [b""])[0].decode()
        result = self.action(self.push, json.loads(body) if body.strip() else {}, session)
        data = json.dumps(result).encode()
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(len(data)).encode())
        return data


def publish(push: PushServer, body: dict, session: str) -> list[str | None]:
    subject = body["subject"]
    if "numbers" in body:
        first, last = body["numbers"]
        events = [push.publish(subject, {**body.get("fields", {}), "n": str(n)})
                  for n in range(first, last + 1)]
    else:
        events = [push.publish(subject, body.get("fields", {}))]
    return [event.position for event in events]


def channels_of(push: PushServer, session_id: str) -> list:
    session = push.dispatcher.sessions.get(session_id)
    return list(session.channels) if session else []


def drop(push: PushServer, body: dict, session: str) -> int:
    """Cut the connections of the session's channels without ending the session."""
    count = 0
    for channel in channels_of(push, session):
        request = getattr(channel, "request", None)
        transport = request.channel.transport if request is not None else channel.connection.transport
        transport.abortConnection()
        count += 1
    return count


def end(push: PushServer, body: dict, session: str) -> bool:
    found = push.dispatcher.sessions.get(session)
    if found is not None:
        push.dispatcher.end(found, EndReason.EXPIRED)
    return found is not None


def revoke(push: PushServer, body: dict, session: str) -> str | None:
    """``push.unsubscribe(subject)`` (or ``push.disconnect()`` without one) of ``session``."""
    if body.get("subject"):
        return push.unsubscribe(body["subject"], session=session, reason="revoked by test").position
    return push.disconnect(session=session, reason="disconnected by test").position


def subscriptions(push: PushServer, body: dict, session: str) -> list[str]:
    found = push.dispatcher.sessions.get(session)
    return sorted(s.subject for s in found.subscriptions.values()) if found else []


def main(argv: list[str]) -> None:
    want_proxy = "--proxy" in argv
    settings = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    push = PushServer(Config.from_mapping(settings, strict=True), reactor=reactor)
    push.startService()
    site = build_site(push)
    test = Resource()
    test.putChild(b"page.html", static(PAGE, b"text/html; charset=utf-8"))
    test.putChild(b"cacheable.html", static(PAGE, b"text/html; charset=utf-8", b"no-cache"))
    test.putChild(b"harness.js", static((HERE / "harness.js").read_bytes(),
                                        b"application/javascript; charset=utf-8"))
    test.putChild(b"publish", Hook(push, publish))
    test.putChild(b"drop", Hook(push, drop))
    test.putChild(b"end", Hook(push, end))
    test.putChild(b"revoke", Hook(push, revoke))
    test.putChild(b"subscriptions", Hook(push, subscriptions))
    site.resource.putChild(b"test", test)
    port = reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port
    proxy = None
    if want_proxy:
        proxy = reactor.listenTCP(0, BufferingProxyFactory("127.0.0.1", port),
                                  interface="127.0.0.1").getHost().port
    print(json.dumps({"port": port, "proxy": proxy}), flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", push.stopService)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
