"""Bounded per-session event queues.

A queue holds what was delivered to a session and not yet written to one of
its data channels.  It never blocks and never ends a session: when full it
drops its oldest item and counts the drop; the session applies the overflow
policy (spec 14.2 fix 7) and the count goes into one ``nack`` per episode.
"""

from __future__ import annotations

from typing import Any

from pushpy.core.limits import event_bytes


class EventQueue:
    """A FIFO of at most ``capacity`` items that drops the oldest when full.

    A plain list: an empty one costs a tenth of an empty deque (every idle
    session has a queue), :meth:`drain` hands it over without copying, and
    dropping from the front only happens on overflow.
    """

    __slots__ = ("_items", "capacity", "dropped")

    #: Items dropped by the last :meth:`put` that returned ``False``.
    last_drop = 1

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


class ByteBoundedQueue(EventQueue):
    """An :class:`EventQueue` of deliveries also bounded in bytes.

    Items are ``(event, subscription)`` pairs; an event's size is its fields'
    UTF-8 bytes (:func:`pushpy.core.limits.event_bytes`, cached on the shared
    event).  When either bound is passed the oldest items go, but the newest
    one always stays, so one large event is still delivered.
    """

    __slots__ = ("last_drop", "max_bytes", "size")

    def __init__(self, capacity: int, max_bytes: int) -> None:
        super().__init__(capacity)
        self.last_drop = 0
        self.max_bytes = max_bytes
        #: Bytes of the queued events.
        self.size = 0

    def put(self, item: Any) -> bool:
        items = self._items
        items.append(item)
        event = item[0]
        size = self.size + (event.wire_cache.get("bytes") or event_bytes(event))
        self.size = size
        if size <= self.max_bytes and len(items) <= self.capacity:
            return True
        dropped = self.dropped
        while len(items) > 1 and (len(items) > self.capacity or self.size > self.max_bytes):
            self.size -= event_bytes(items.pop(0)[0])
            self.dropped += 1
        self.last_drop = self.dropped - dropped
        return not self.last_drop

    def refill(self, items: list[Any]) -> None:
        super().refill(items)
        self.size = sum(event_bytes(item[0]) for item in self._items)

    def drain(self) -> list[Any]:
        self.size = 0
        return super().drain()

    def clear(self) -> None:
        super().clear()
        self.size = 0
