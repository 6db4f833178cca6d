"""A heap of deadlines for many objects, so the reactor needs one timer.

Objects keep their own current deadline in a ``deadline`` attribute.  Moving
a deadline later costs nothing (the heap entry is checked lazily when it comes
due); moving it earlier pushes a new entry.  Cancelling is setting ``None``;
when cancelled and superseded entries make up most of the heap it is rebuilt
without them, so ended objects are not kept alive until their old deadline.
The Twisted layer keeps a single ``callLater`` for :meth:`Deadlines.next`.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Protocol


class HasDeadline(Protocol):
    deadline: float | None
    queued_deadline: float | None


class Deadlines:
    """Deadlines of many objects in one heap."""

    __slots__ = ("_counter", "_heap", "_stale")

    #: Rebuild only heaps at least this big (small heaps drain stale entries soon enough).
    COMPACT_MIN = 64

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._counter = itertools.count()
        self._stale = 0  # entries known to be cancelled or superseded (an estimate)

    def set(self, item: HasDeadline, when: float | None) -> None:
        """Give ``item`` the deadline ``when`` (``None`` cancels it)."""
        item.deadline = when
        queued = item.queued_deadline
        if when is None:
            if queued is not None:
                self._stale += 1
                if self._stale * 2 > len(self._heap) >= self.COMPACT_MIN:
                    self._compact()
            return
        if queued is None or when < queued:
            if queued is not None:
                self._stale += 1
            item.queued_deadline = when
            heapq.heappush(self._heap, (when, next(self._counter), item))

    def _compact(self) -> None:
        """Drop cancelled and superseded entries, releasing their objects."""
        kept = []
        for entry in self._heap:
            when, _, item = entry
            if item.queued_deadline != when:
                continue
            if item.deadline is None:
                item.queued_deadline = None
                continue
            kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept
        self._stale = 0

    def due(self, now: float) -> list[Any]:
        """Pop and return every item whose deadline is ``now`` or earlier, earliest first."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            when, _, item = heapq.heappop(heap)
            if item.queued_deadline != when:
                self._stale -= self._stale > 0
                continue  # a stale duplicate of an entry moved earlier
            item.queued_deadline = None
            deadline = item.deadline
            if deadline is None:
                self._stale -= self._stale > 0
                continue
            if deadline > when:  # moved later: re-queue where it belongs
                item.queued_deadline = deadline
                heapq.heappush(heap, (deadline, next(self._counter), item))
                continue
            item.deadline = None
            out.append(item)
        return out

    def next(self) -> float | None:
        """The earliest queued deadline (possibly early, never late)."""
        heap = self._heap
        while heap:
            when, _, item = heap[0]
            if item.queued_deadline != when:
                heapq.heappop(heap)
            elif item.deadline is None:
                item.queued_deadline = None
                heapq.heappop(heap)
            else:
                return when
        return None

    def __len__(self) -> int:
        return len(self._heap)
