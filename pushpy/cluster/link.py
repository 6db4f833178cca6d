# test-case-name: tests.cluster.test_redis_backplane
"""Connections to Redis that come back: one for commands, one for pub/sub.

:class:`RedisLink` keeps both connected, reconnecting with capped exponential
backoff and jitter, and tells its owner when the pair is up (both usable) and
when it goes down (either lost).  Commands sent while down fail at once with
:class:`txredisapi.ConnectionError`; the owner decides what to do.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet import protocol
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger

from pushpy.errors import UsageError


def parse_redis_url(url: str) -> dict[str, Any]:
    """Host, port, database and password of ``redis://[:password@]host[:port][/db]``."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise UsageError(f"backplane {url!r}: write it like redis://127.0.0.1:6379/0")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise UsageError(f"backplane {url!r}: the database must be a number (redis://host:port/0)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise UsageError(f"backplane {url!r}: bad port") from None
    return {"host": parts.hostname, "port": port, "db": int(path or 0),
            "password": unquote(parts.password) if parts.password else None}


class _Factory(protocol.Factory):
    """What txredisapi's protocols expect of their factory, minus the pooling."""

    isLazy = False
    noisy = False

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def buildProtocol(self, addr: Any) -> Any:
        proto = self.make()
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        pass

    def connectionError(self, message: str) -> None:
        Logger().error("redis: {message}", message=message)


class _Subscriber(txredisapi.SubscriberProtocol):
    on_message: Callable[[str, str], None] = staticmethod(lambda channel, message: None)

    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.on_message(channel, message)


class RedisLink:
    """A command connection and a subscriber connection to one Redis, kept up.

    :param on_up: called (no argument) each time both connections are ready.
    :param on_down: called with a reason when either is lost.
    :param on_message: called with ``(channel, message)`` for pub/sub messages.
    """

    log = Logger()
    min_delay = 0.05
    max_delay = 5.0

    def __init__(self, url: str, reactor: Any, *, on_up: Callable[[], object],
                 on_down: Callable[[str], object],
                 on_message: Callable[[str, str], None]) -> None:
        self.address = parse_redis_url(url)
        self.reactor = reactor
        self.on_up = on_up
        self.on_down = on_down
        self.on_message = on_message
        self.commands: Any = None
        self.subscriber: Any = None
        self.running = False
        self.up = False
        self.failures = 0
        self._retry: Any = None
        self._connecting = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._connect()

    def stop(self) -> None:
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        for proto in (self.commands, self.subscriber):
            if proto is not None and proto.transport is not None:
                proto.transport.loseConnection()
        self.commands = self.subscriber = None
        self.up = False

    def execute(self, *args: Any) -> Deferred:
        """Run one command; fails with ``txredisapi.ConnectionError`` while down."""
        if not self.up or self.commands is None:
            return fail(txredisapi.ConnectionError("redis is not connected"))
        return self.commands.execute_command(*args)

    def eval(self, script: Any, keys: list[str], args: list[Any]) -> Deferred:
        """Run a :class:`Script` (EVALSHA, loading it on first use)."""
        if not self.up or self.commands is None:
            return fail(txredisapi.ConnectionError("redis is not connected"))
        return script(self.commands, keys, args)

    # -- connecting --------------------------------------------------------

    def _connect(self) -> None:
        if not self.running or self._connecting:
            return
        self._connecting = True
        address = self.address

        def make(kind: type) -> Callable[[], Any]:
            return lambda: kind(password=address["password"], dbid=address["db"] or None,
                                convertNumbers=False)

        endpoint = TCP4ClientEndpoint(self.reactor, address["host"], address["port"], timeout=5)

        async def connect() -> None:
            from twisted.internet.defer import Deferred as D

            made: list[Any] = []  # closed again when the pair cannot be completed
            try:
                commands = await endpoint.connect(_Factory(make(txredisapi.RedisProtocol)))
                made.append(commands)
                subscriber = await endpoint.connect(_Factory(make(_Subscriber)))
                made.append(subscriber)
                await commands.whenConnected()
                await subscriber.whenConnected()
            except BaseException:
                for proto in made:
                    proto.transport.loseConnection()
                raise
            subscriber.on_message = self.on_message
            self.commands, self.subscriber = commands, subscriber
            for proto in (commands, subscriber):
                D.addCallback(proto.whenDisconnected(), self._lost)

        d = Deferred.fromCoroutine(connect())
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, _: object) -> None:
        self._connecting = False
        if not self.running:
            self.stop()
            return
        self.up = True
        self.failures = 0
        self.log.info("redis {host}:{port} connected", host=self.address["host"],
                      port=self.address["port"])
        self.on_up()

    def _failed(self, reason: Any) -> None:
        self._connecting = False
        self.log.warn("redis {host}:{port} unreachable: {error}", host=self.address["host"],
                      port=self.address["port"], error=reason.getErrorMessage())
        self._schedule()

    def _lost(self, proto: Any) -> None:
        if proto is not self.commands and proto is not self.subscriber:
            return  # an older pair
        for other in (self.commands, self.subscriber):
            if other is not None and other is not proto and other.transport is not None:
                other.transport.loseConnection()
        self.commands = self.subscriber = None
        if self.up:
            self.up = False
            self.log.warn("redis connection lost: reconnecting")
            self.on_down("connection lost")
        self._schedule()

    def _schedule(self) -> None:
        if not self.running or (self._retry is not None and self._retry.active()):
            return
        self.failures += 1
        delay = min(self.max_delay, self.min_delay * 2 ** min(self.failures, 16))
        delay *= 0.5 + random.random() / 2
        self._retry = self.reactor.callLater(delay, self._connect)


class Script:
    """A Lua script run with EVALSHA, loaded again after Redis forgot it."""

    def __init__(self, source: str) -> None:
        import hashlib

        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, connection: Any, keys: list[str], args: list[Any]) -> Deferred:
        def retry(failure: Any) -> Any:
            if "NOSCRIPT" not in str(failure.value):
                return failure
            return connection.execute_command("EVAL", self.source, len(keys), *keys, *args)

        d = connection.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        return d.addErrback(retry)
