"""A Socket.IO chat on pushpy: rooms are pushpy subjects.

Run from the repository: ``python examples/socketio/chat.py --port 8080``, then
connect any socket.io client (v4) to ``http://127.0.0.1:8080``: emit ``join``
with a room name (``/chat/lobby``), ``say`` with a text; everyone in the room
gets ``said``.  A Pushlet or SSE client subscribed to ``/chat/lobby`` (for
example ``curl -N 'http://127.0.0.1:8080/pushlet/sse?subject=/chat/lobby'``)
sees the same events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from pushpy import Config, PushServer
from pushpy.web.site import build_site


def build(server: PushServer) -> None:
    """The chat's handlers on ``server.socketio``."""
    sio = server.socketio

    @sio.on("connect")
    def connect(sid: str, environ: dict, auth: dict | None) -> None:
        print(f"connected {sid} ({environ['pushpy.transport']})", flush=True)

    @sio.on("join")
    def join(sid: str, room: str) -> object:
        sio.enter_room(sid, room)
        sio.emit("said", {"from": "server", "text": f"{sid} joined"}, to=room)
        return {"rooms": sio.rooms(sid)}

    @sio.on("say")
    def say(sid: str, room: str, text: str) -> str:
        sio.emit("said", {"from": sid, "text": text}, to=room)
        return "delivered"

    @sio.on("disconnect")
    def disconnect(sid: str, reason: str) -> None:
        print(f"disconnected {sid}: {reason}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--recovery", action="store_true", help="Socket.IO connection state recovery")
    args = parser.parse_args()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    server = PushServer(Config(socketio_recovery=args.recovery), reactor=reactor)
    build(server)
    server.startService()
    reactor.listenTCP(args.port, build_site(server), interface="127.0.0.1")
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
