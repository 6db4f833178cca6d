"""Pull sources: events produced on a timer (spec 11.1, upstream ``EventPullSource``).

A :class:`PullSource` asks its subclass how long to wait (:meth:`~PullSource.interval`)
and what to publish (:meth:`~PullSource.produce`), then publishes the fields as a
``data`` event on :attr:`~PullSource.subject`.  Unlike the original it runs no
thread: each source keeps at most one pending ``callLater`` on the server's clock.
As in the original, the first event comes one interval after activation.

Publishing from your own code needs no source class at all:

- in the reactor thread (a Twisted callback, a resource, a ``LoopingCall``)::

      server.publish("/stocks/aex", {"name": "kpn", "rate": "13.5"})

- from any other thread (a blocking feed reader, a worker)::

      server.publish_from_thread("/stocks/aex", {"name": "kpn", "rate": "13.5"})

  which hands the call to the reactor thread (``reactor.callFromThread``).

To run such code with the server, wrap it in any object providing
:class:`~pushpy.interfaces.IEventSource` (``activate(server)``, ``passivate()``,
``stop()``) and pass it in ``PushServer(sources=...)`` or list it in a
``sources.properties`` file (:func:`pushpy.sources.load_sources`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from pushpy.interfaces import IEventSource


@implementer(IEventSource)
class PullSource:
    """Base class of timer-driven sources.

    Subclasses set :attr:`subject` and implement :meth:`interval` and
    :meth:`produce`.  An exception in :meth:`produce` (or in publishing its
    result) is logged and the source keeps its schedule.

    :param rng: the random source handed to :meth:`interval` and kept as
        :attr:`random` for :meth:`produce` (injected for tests).
    """

    log = Logger()

    #: The subject every event of this source is published on.
    subject: str = ""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.random = rng or random.Random()
        #: The server given to :meth:`activate` (``None`` before it, and after :meth:`stop`).
        self.server: Any = None
        self._active = False
        self._call: IDelayedCall | None = None

    # -- for subclasses -------------------------------------------------------

    def interval(self, rng: random.Random) -> float:
        """Seconds until the next event (asked again before every event)."""
        raise NotImplementedError

    def produce(self, now: float) -> Mapping[str, object] | None:
        """The fields of the next event, or ``None`` to publish nothing this time."""
        raise NotImplementedError

    # -- IEventSource ---------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether the source is scheduled to produce."""
        return self._active

    def activate(self, server: Any) -> None:
        """Start (or resume) producing on ``server``'s clock; a no-op when active."""
        self.server = server
        if self._active:
            return
        self._active = True
        self._schedule()

    def passivate(self) -> None:
        """Pause: cancel the pending call; :meth:`activate` resumes."""
        self._active = False
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def stop(self) -> None:
        """Stop and forget the server (a later :meth:`activate` starts afresh)."""
        self.passivate()
        self.server = None

    # -- internals ------------------------------------------------------------

    def _schedule(self) -> None:
        self._call = self.server.clock.callLater(self.interval(self.random), self._tick)

    def _tick(self) -> None:
        self._call = None
        server = self.server
        try:
            fields = self.produce(server.clock.seconds())
            if fields is not None:
                server.publish(self.subject, fields)
        except Exception:
            self.log.failure("event source {source!r} failed on {subject}",
                             source=self, subject=self.subject)
        # produce() may have passivated, stopped or re-activated this source.
        if self._active and self._call is None:
            self._schedule()

    def __repr__(self) -> str:
        state = "active" if self._active else "idle"
        return f"<{type(self).__name__} {self.subject} {state}>"
