"""The python-socketio baseline: python-socketio on aiohttp, as a user would set it up.

A client connects with ``/socket.io/?EIO=4&transport=websocket&room=NAME`` and
is put in room ``NAME`` on connect; ``POST /publish?channel=NAME`` (body: the
message) emits event ``m`` with the body to that room.  Engine.IO pings
every ``--heartbeat`` seconds (clients must answer, the load client does).

Run: ``python bench/sio_server.py --port 8000 [--heartbeat 5]``; prints
``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
from urllib.parse import parse_qs

import socketio
from aiohttp import web


def build(heartbeat: float) -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=heartbeat,
                               ping_timeout=max(20.0, 2 * heartbeat), logger=False,
                               engineio_logger=False, cors_allowed_origins="*")
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict, auth: object = None) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        await sio.enter_room(sid, query.get("room", ["bench"])[0])

    async def publish(request: web.Request) -> web.Response:
        await sio.emit("m", await request.text(), to=request.query.get("channel", "bench"))
        return web.Response(text="ok")

    app.router.add_post("/publish", publish)
    return app


async def serve(port: int, heartbeat: float) -> None:
    runner = web.AppRunner(build(heartbeat), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:  # ends with its parent (run.py)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=25.0, help="seconds between Engine.IO pings")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.port, args.heartbeat))


if __name__ == "__main__":
    main()
