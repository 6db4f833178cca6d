"""The bounded per-session queue: FIFO, drop-oldest, drop count (spec 9.2, 14.2 fix 7)."""

from __future__ import annotations

from pushpy.core.queues import EventQueue


def test_fifo_order_and_drain_empties():
    """Items come out oldest first and ``drain`` empties the queue."""
    q = EventQueue(5)
    for i in range(3):
        assert q.put(i)
    assert len(q) == 3
    assert q.drain() == [0, 1, 2]
    assert len(q) == 0 and not q
    assert q.drain() == []


def test_full_queue_drops_oldest_and_counts():
    """Past capacity the oldest item is dropped, ``put`` says so and the drop is counted."""
    q = EventQueue(3)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert q.dropped == 2
    assert len(q) == 3
    assert q.drain() == [2, 3, 4]


def test_drop_count_survives_drain_until_cleared():
    """``drain`` keeps the drop count (the session reports it); ``clear`` resets it."""
    q = EventQueue(1)
    q.put("a")
    q.put("b")
    assert q.drain() == ["b"]
    assert q.dropped == 1
    assert q  # a pending drop notice makes the queue worth waking for
    q.clear()
    assert q.dropped == 0 and not q


def test_capacity_is_at_least_one():
    """A capacity below one is raised to one."""
    q = EventQueue(0)
    assert q.capacity == 1
    assert q.put("a")
    assert not q.put("b")
    assert q.drain() == ["b"]


def test_truthiness_follows_items():
    """A queue is true while it holds items."""
    q = EventQueue(2)
    assert not q
    q.put(None)
    assert q
