"""A pushpy server with a Socket.IO test application, run as a subprocess.

``python serve.py [key=value ...]`` starts a :class:`PushServer` (config keys
as in ``pushlet.properties``) with :func:`build_site` on a free loopback port,
prints one JSON line ``{"port": ...}`` and serves until killed.  Test hooks
under ``/test/``:

- ``GET /test/sio.html``: a page loading the socket.io client bundle (``/test/socket.io.js``);
- ``POST /test/publish`` ``{"subject", "fields"}``: ``server.publish`` (answers the position);
- ``POST /test/emit`` ``{"event", "data", "to"}``: ``server.socketio.emit``;
- ``POST /test/drop?sid=SOCKET_ID``: abort the connection of that socket's Engine.IO session.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent)]

from twisted.internet import reactor  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Request  # noqa: E402

from pushpy.config import Config  # noqa: E402
from pushpy.server import PushServer  # noqa: E402
from pushpy.web.site import build_site  # noqa: E402

BUNDLE = HERE / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
PAGE = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>socket.io test</title>
<script src="/test/socket.io.js"></script></head><body><p>socket.io test page</p></body></html>"""


def application(push: PushServer) -> None:
    """The handlers the tests talk to."""
    sio = push.socketio

    @sio.on("connect")
    def connect(sid, environ, auth):
        if isinstance(auth, dict) and auth.get("refuse"):
            raise ConnectionRefusedError("refused by test", {"why": auth["refuse"]})

    @sio.on("join")
    def join(sid, room):
        sio.enter_room(sid, room)
        return sio.rooms(sid)

    @sio.on("leave")
    def leave(sid, room):
        sio.leave_room(sid, room)
        return sio.rooms(sid)

    @sio.on("say")
    def say(sid, room, *args):
        sio.emit("said", tuple(args), to=room)
        return "ok"

    @sio.on("echo")
    def echo(sid, *args):
        return list(args)  # one acknowledgement argument: the list

    @sio.on("everyone")
    def everyone(sid, data):
        sio.emit("everyone", data)
        return "ok"

    @sio.on("ask")
    def ask(sid):
        sio.emit("question", "what?", to=sid,
                 callback=lambda *answer: sio.emit("answered", list(answer), to=sid))
        return "asked"

    @sio.on("connect", namespace="/admin")
    def admin_connect(sid, environ, auth):
        return None

    @sio.on("whoami", namespace="/admin")
    def whoami(sid):
        return {"sid": sid, "namespace": "/admin"}


class Hook(Resource):
    isLeaf = True

    def __init__(self, push: PushServer, action) -> None:
        super().__init__()
        self.push = push
        self.action = action

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read()
        sid = request.args.get(b"sid", [b""])[0].decode()
        result = self.action(self.push, json.loads(body) if body.strip() else {}, sid)
        data = json.dumps(result).encode()
        request.setHeader(b"Content-Type", b"application/json")
        return data


class Static(Resource):
    isLeaf = True

    def __init__(self, load, content_type: bytes) -> None:
        super().__init__()
        self.load = load
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", self.content_type)
        return self.load()


def publish(push: PushServer, body: dict, sid: str) -> str | None:
    return push.publish(body["subject"], body.get("fields", {})).position


def emit(push: PushServer, body: dict, sid: str) -> int:
    data = body.get("data")
    return len(push.socketio.emit(body["event"], tuple(data) if isinstance(data, list) else data,
                                  to=body.get("to"), namespace=body.get("namespace")))


def drop(push: PushServer, body: dict, sid: str) -> bool:
    socket = push.socketio.sockets.get(sid)
    if socket is None:
        return False
    engine = socket.connection.engine
    if engine.ws is not None:
        engine.ws.transport.abortConnection()
    elif engine.poll is not None:
        engine.poll.channel.transport.abortConnection()
    else:
        engine.close("transport error")
    return True


def main(argv: list[str]) -> None:
    settings = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    push = PushServer(Config.from_mapping(settings, strict=True), reactor=reactor)
    application(push)
    push.startService()
    site = build_site(push)
    test = Resource()
    test.putChild(b"sio.html", Static(lambda: PAGE, b"text/html; charset=utf-8"))
    test.putChild(b"socket.io.js", Static(BUNDLE.read_bytes, b"application/javascript"))
    test.putChild(b"publish", Hook(push, publish))
    test.putChild(b"emit", Hook(push, emit))
    test.putChild(b"drop", Hook(push, drop))
    site.resource.putChild(b"test", test)
    port = reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port
    print(json.dumps({"port": port}), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
