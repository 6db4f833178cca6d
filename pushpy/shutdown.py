# test-case-name: tests.ops.test_shutdown
"""Graceful shutdown: every client gets its close, then the connections drain.

:meth:`PushServer.stopService <pushpy.server.PushServer.stopService>` takes
the connections of the open data channels (:func:`open_transports`) before
it ends every session with ``shutdown`` (Pushlet streams get ``abort``,
native streams and long-polls a ``close`` message, WebSockets a close frame
with code 1001 and the reason; Socket.IO polls the close packet ``1``, or
the client's next poll within a second, Socket.IO WebSockets ``1`` and a
close frame 1001: :mod:`pushpy.web.engineio`).  :func:`drain` then closes the HTTP
connections once their last bytes are written, lets WebSocket closing
handshakes finish, and fires when every connection is gone, or after
``shutdown.timeout.secs``, dropping what is left: twistd then exits.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pushpy.core.dispatcher import Dispatcher

log = Logger()

#: How often :func:`drain` looks whether the connections are gone, in seconds.
POLL = 0.02


def channel_connection(channel: Any) -> tuple[Any, bool] | None:
    """The transport of a data channel, and whether it is an HTTP connection."""
    request = getattr(channel, "request", None)
    if request is not None:
        http = getattr(request, "channel", None)
        transport = getattr(http, "transport", None)
        return (transport, True) if transport is not None else None
    connection = getattr(channel, "connection", None)
    transport = getattr(connection, "transport", None)
    return (transport, False) if transport is not None else None


def open_transports(dispatcher: Dispatcher) -> dict[Any, bool]:
    """The transports of every open data channel: ``{transport: is_http}``."""
    found: dict[Any, bool] = {}
    for session in dispatcher.sessions.values():
        for channel in session.channels:
            pair = channel_connection(channel)
            if pair is not None and is_open(pair[0]):
                found[pair[0]] = pair[1]
    return found


def is_open(transport: Any) -> bool:
    return not getattr(transport, "disconnected", True)


def drain(transports: dict[Any, bool], clock: IReactorTime, timeout: float) -> Deferred[None]:
    """Close ``transports`` gracefully; fire when all are gone or ``timeout`` passed.

    Call it after the sessions ended (the closing bytes are written): HTTP
    connections are closed after their buffered bytes are sent; the others
    (WebSocket, TCP) close themselves once their closing handshake is done.
    Whatever is still open after ``timeout`` seconds is aborted.
    """
    for transport, http in transports.items():
        if http and is_open(transport):
            transport.loseConnection()
    done: Deferred[None] = Deferred()
    started = clock.seconds()

    def check() -> None:
        still = [t for t in transports if is_open(t)]
        if still and clock.seconds() - started < timeout:
            return
        if still:
            log.warn("shutdown: {count} connections did not close within {timeout}s; dropping them",
                     count=len(still), timeout=timeout)
            for transport in still:
                transport.abortConnection()
        else:
            log.info("shutdown: {count} connections closed in {elapsed:.2f}s", count=len(transports),
                     elapsed=clock.seconds() - started)
        loop.stop()

    loop = LoopingCall(check)
    loop.clock = clock
    loop.start(POLL, now=True).addCallback(lambda _: done.callback(None))
    return done
