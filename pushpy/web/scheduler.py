"""One reactor timer for every data-channel deadline, and write coalescing.

Channels with a heartbeat or a pull wait set a deadline here instead of
keeping a ``callLater`` each; the scheduler keeps a single delayed call for
the earliest one.  Channels woken by new events ask for :meth:`soon`: they
are flushed together once the reactor has finished the current turn and
polled once more, so events published in one turn reach a connection in one
write.

Why the extra poll: the answers to the publish requests of a turn are
written in that poll.  Flushing before it would keep the publishers waiting
for their answers until every connection was written, and their next
requests would arrive one by one after it, each flushed on its own; flushing
after it lets them send the next requests while the flush writes, and those
are then published together (bench/RESULTS.md: from 2 to 4 events per write
with 4 publishes in flight, a third less CPU per delivery).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pushpy.core.deadlines import Deadlines


class Timed(Protocol):
    deadline: float | None
    queued_deadline: float | None

    def fire(self, now: float) -> None: ...


class Flushable(Protocol):
    def flush(self) -> None: ...


class Scheduler:
    """Deadlines and deferred flushes of many channels on one clock.

    Deadlines less than :attr:`SLACK` apart fire in one timer call (a deadline
    fires up to ``SLACK`` early): the heartbeats of thousands of streams,
    spread over time as they connected, share a few reactor wakeups a second
    instead of one each.
    """

    log = Logger()
    #: Seconds a deadline may fire early to share the timer call of an earlier one.
    SLACK = 0.05

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._deadlines = Deadlines()
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._pending: dict[Any, None] = {}
        self._flush_call: IDelayedCall | None = None

    def set(self, item: Timed, when: float | None) -> None:
        """Call ``item.fire(now)`` at ``when`` (``None`` cancels)."""
        self._deadlines.set(item, when)
        if when is None:
            if self._timer is not None and self._deadlines.next() is None:
                self._arm()  # nothing left to wait for: cancel the timer
        elif self._timer_at is None or when < self._timer_at:
            self._arm()

    def postpone(self, item: Timed, when: float) -> None:
        """:meth:`set`, cheaper when ``when`` is later than ``item``'s queued deadline.

        The common case of a channel that wrote and pushes its heartbeat back:
        the heap entry stays and is moved when it comes due.
        """
        deadline = item.deadline
        if deadline is not None and item.queued_deadline is not None and when >= deadline:
            item.deadline = when
        else:
            self.set(item, when)

    def soon(self, item: Flushable) -> None:
        """Call ``item.flush()`` once, after the current reactor turn and the next poll."""
        self._pending[item] = None
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._after_poll)

    def _after_poll(self) -> None:
        # A call scheduled by a delayed call runs in the reactor's next iteration, after its poll.
        self._flush_call = self.clock.callLater(0, self.flush_pending)

    def flush_pending(self) -> None:
        """Flush every channel waiting for :meth:`soon` now."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        while self._pending:
            pending = self._pending
            self._pending = {}
            for item in pending:
                try:
                    item.flush()
                except Exception:
                    self.log.failure("flushing {item!r} failed", item=item)

    def stop(self) -> None:
        """Cancel the reactor timers (pending deadlines stay recorded)."""
        for call in (self._timer, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._timer_at = self._flush_call = None

    def _arm(self) -> None:
        nxt = self._deadlines.next()
        if self._timer is not None and self._timer.active():
            if nxt is not None and self._timer_at == nxt:
                return
            self._timer.cancel()
        self._timer = self._timer_at = None
        if nxt is None:
            return
        self._timer_at = nxt
        self._timer = self.clock.callLater(max(0.0, nxt - self.clock.seconds()), self._run)

    def _run(self) -> None:
        self._timer = self._timer_at = None
        now = self.clock.seconds()
        for item in self._deadlines.due(now + self.SLACK):
            try:
                item.fire(now)
            except Exception:
                self.log.failure("timer of {item!r} failed", item=item)
        self._arm()
