"""Bounded per-session event queues.

A queue holds what was delivered to a session and not yet written to one of
its data channels.  It never blocks and never ends a session: when full it
drops its oldest item and counts the drop; the session applies the overflow
policy (spec 14.2 fix 7) and the count goes into one ``nack`` per episode.
"""

from __future__ import annotations

from typing import Any


class EventQueue:
    """A FIFO of at most ``capacity`` items that drops the oldest when full.

    A plain list: an empty one costs a tenth of an empty deque (every idle
    session has a queue), :meth:`drain` hands it over without copying, and
    dropping from the front only happens on overflow.
    """

    __slots__ = ("_items", "capacity", "dropped")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: list[Any] = []
        #: Items dropped since the last :meth:`drain`.
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Append ``item``; return ``False`` when the oldest item was dropped."""
        items = self._items
        items.append(item)
        if len(items) > self.capacity:
            del items[0]
            self.dropped += 1
            return False
        return True

    def refill(self, items: list[Any]) -> None:
        """Replace the contents with ``items``, beyond ``capacity`` if need be.

        A resume queues the whole recovered history at once (bounded by the
        history limits); dropping part of it would turn a recovery into a gap.
        Later puts drop oldest again until the queue is back within capacity.
        """
        self._items = list(items)

    def drain(self) -> list[Any]:
        """Take every queued item, oldest first (the drop count stays)."""
        items = self._items
        self._items = []
        return items

    def clear(self) -> None:
        """Forget every item and the drop count."""
        self._items = []
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items) or bool(self.dropped)
