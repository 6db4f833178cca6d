# test-case-name: tests.cluster.test_workers
"""``twistd pushpy --workers N``: N worker processes sharing the listening sockets.

The parent opens each ``--listen`` socket once and hands it to every worker
(file descriptors 3, 4, ... in the child), which adopts it
(``reactor.adoptStreamPort``): the kernel spreads new connections over the
workers.  Workers are ``twistd pushpy`` processes with the parent's options,
all on the Redis backplane, so any of them serves any client.  A worker that
dies is started again after a short, growing delay; on SIGTERM the parent
sends SIGTERM to every worker (each ends its sessions cleanly) and exits once
they have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from pushpy.errors import UsageError

FIRST_FD = 3


def listening_socket(description: str) -> socket.socket:
    """A bound, listening socket for ``tcp:PORT[:interface=HOST][:backlog=N]``."""
    parts = description.split(":")
    if parts[0] != "tcp" or len(parts) < 2 or not parts[1].isdigit():
        raise UsageError(f"--workers shares tcp:PORT listeners only, not {description!r}")
    options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    host = options.get("interface", "0.0.0.0")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(parts[1])))
    sock.listen(int(options.get("backlog", "511")))
    sock.setblocking(False)
    return sock


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended: Deferred = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.supervisor.ended(self, reason)


class WorkerSupervisor(Service):
    """Runs, watches and stops the worker processes.

    :param arguments: the ``twistd pushpy`` options of a worker, without listeners.
    :param listen: ``--listen`` descriptions whose sockets the workers share.
    """

    log = Logger()
    min_delay = 0.5
    max_delay = 10.0

    def __init__(self, count: int, arguments: list[str], listen: list[str],
                 reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.reactor = reactor
        self.count = count
        self.arguments = arguments
        self.listen = listen
        self.sockets: list[socket.socket] = []
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0
        self._failures: dict[int, int] = {}
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self.sockets = [listening_socket(description) for description in self.listen]
        for number in range(self.count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if self._stopping:
            return
        fds: dict[int, Any] = {0: "w", 1: 1, 2: 2}
        adopt = []
        for i, sock in enumerate(self.sockets):
            fds[FIRST_FD + i] = sock.fileno()
            adopt += ["--adopt", f"{FIRST_FD + i}:{sock.family.name}"]
        args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "--nodaemon", "--pidfile=", "pushpy", *self.arguments, *adopt]
        worker = _Worker(self, number)
        self.reactor.spawnProcess(worker, sys.executable, args, env=dict(os.environ), childFDs=fds)
        self.workers[number] = worker
        self.log.info("worker {number} started", number=number)

    def ended(self, worker: _Worker, reason: Any) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self._stopping:
            return
        failures = self._failures[worker.number] = self._failures.get(worker.number, 0) + 1
        delay = min(self.max_delay, self.min_delay * 2 ** (failures - 1))
        self.restarts += 1
        self.log.warn("worker {number} ended ({reason}); starting it again in {delay}s",
                      number=worker.number, reason=reason.getErrorMessage(), delay=delay)
        self.reactor.callLater(delay, self._spawn, worker.number)

    def stopService(self) -> Deferred:
        """SIGTERM every worker; fires once all have exited."""
        self._stopping = True
        super().stopService()
        waits = []
        for worker in list(self.workers.values()):
            waits.append(worker.ended)
            with contextlib.suppress(Exception):  # already gone
                worker.transport.signalProcess(signal.SIGTERM)
        for sock in self.sockets:
            sock.close()
        return DeferredList(waits).addCallback(lambda _: None)


def adopted_port(reactor: Any, spec: str, factory: Any) -> Any:
    """Adopt an inherited listening socket ``FD:AF_INET`` for ``factory``."""
    fd, _, family = spec.partition(":")
    return reactor.adoptStreamPort(int(fd), getattr(socket, family or "AF_INET"), factory)


class AdoptedPortService(Service):
    """Listens on a socket inherited from the supervisor."""

    def __init__(self, spec: str, factory: Any, reactor: Any = None) -> None:
        self.spec = spec
        self.factory = factory
        self.reactor = reactor
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.port = adopted_port(self.reactor, self.spec, self.factory)
        os.close(int(self.spec.partition(":")[0]))  # the port holds its own copy

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


class AfterBackplane(MultiService):
    """Starts its children (the listeners) once the backplane is connected and caught up."""

    def __init__(self, backplane: Any) -> None:
        super().__init__()
        self.backplane = backplane
        self._waiting: Deferred | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._waiting = self.backplane.start()
        self._waiting.addCallback(self._ready)

    def _ready(self, _: object) -> None:
        self._waiting = None
        if self.running:
            for service in self:
                service.startService()

    def stopService(self) -> Deferred | None:
        if self._waiting is not None:
            Service.stopService(self)
            return None
        return super().stopService()
