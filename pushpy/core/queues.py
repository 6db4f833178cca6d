"""Bounded per-session event queues.

A queue holds what was delivered to a session and not yet written to one of
its data channels.  It never blocks and never ends a session: when full it
drops its oldest item and counts the drop; the session applies the overflow
policy (spec 14.2 fix 7) and the count goes into one ``nack`` per episode.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class EventQueue:
    """A FIFO of at most ``capacity`` items that drops the oldest when full."""

    __slots__ = ("_items", "capacity", "dropped")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[Any] = deque()
        #: Items dropped since the last :meth:`drain`.
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Append ``item``; return ``False`` when the oldest item was dropped."""
        items = self._items
        items.append(item)
        if len(items) > self.capacity:
            items.popleft()
            self.dropped += 1
            return False
        return True

    def refill(self, items: list[Any]) -> None:
        """Replace the contents with ``items``, beyond ``capacity`` if need be.

        A resume queues the whole recovered history at once (bounded by the
        history limits); dropping part of it would turn a recovery into a gap.
        Later puts drop oldest again until the queue is back within capacity.
        """
        self._items.clear()
        self._items.extend(items)

    def drain(self) -> list[Any]:
        """Take every queued item, oldest first (the drop count stays)."""
        items = list(self._items)
        self._items.clear()
        return items

    def clear(self) -> None:
        """Forget every item and the drop count."""
        self._items.clear()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items) or bool(self.dropped)
