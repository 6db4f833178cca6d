"""The deadline heap: lazy moves, cancel, due order, next()."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.core.deadlines import Deadlines


class Item:
    def __init__(self, name: str) -> None:
        self.name = name
        self.deadline: float | None = None
        self.queued_deadline: float | None = None

    def __repr__(self) -> str:
        return f"Item({self.name})"


def test_due_returns_items_in_deadline_order():
    """``due(now)`` pops every item due at or before ``now``, earliest first."""
    d = Deadlines()
    a, b, c = Item("a"), Item("b"), Item("c")
    d.set(a, 3.0)
    d.set(b, 1.0)
    d.set(c, 5.0)
    assert d.next() == 1.0
    assert d.due(0.5) == []
    assert d.due(3.0) == [b, a]
    assert a.deadline is None and b.deadline is None
    assert d.next() == 5.0
    assert d.due(10.0) == [c]
    assert d.next() is None
    assert len(d) == 0


def test_moving_later_is_lazy():
    """Moving a deadline later pushes nothing; the old entry is re-queued when it comes due."""
    d = Deadlines()
    a = Item("a")
    d.set(a, 1.0)
    d.set(a, 4.0)
    assert len(d) == 1
    assert d.next() == 1.0  # early, never late
    assert d.due(1.0) == []
    assert a.deadline == 4.0
    assert d.next() == 4.0
    assert d.due(3.9) == []
    assert d.due(4.0) == [a]


def test_moving_earlier_pushes_and_ignores_stale_entry():
    """Moving a deadline earlier fires at the new time, once; the stale entry is skipped."""
    d = Deadlines()
    a = Item("a")
    d.set(a, 5.0)
    d.set(a, 2.0)
    assert d.next() == 2.0
    assert d.due(2.0) == [a]
    assert d.due(10.0) == []
    assert d.next() is None


def test_cancel():
    """Setting ``None`` cancels: the item never comes due and ``next`` skips it."""
    d = Deadlines()
    a, b = Item("a"), Item("b")
    d.set(a, 1.0)
    d.set(b, 2.0)
    d.set(a, None)
    assert a.deadline is None
    assert d.next() == 2.0
    assert d.due(5.0) == [b]


def test_rearm_after_due_and_same_time_duplicates():
    """An item set again after coming due fires again, once per arming."""
    d = Deadlines()
    a = Item("a")
    d.set(a, 5.0)
    d.set(a, 3.0)
    assert d.due(3.0) == [a]
    d.set(a, 5.0)  # the stale 5.0 entry and the new one have equal times
    assert d.due(5.0) == [a]
    assert d.due(100.0) == []


def test_cancel_then_set_again():
    """A cancelled item can be armed again later."""
    d = Deadlines()
    a = Item("a")
    d.set(a, 1.0)
    d.set(a, None)
    d.set(a, 3.0)
    assert d.due(2.0) == []
    assert d.due(3.0) == [a]


actions = st.lists(
    st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 20).map(float)),
              st.integers(0, 20).map(float)),
    max_size=60,
)


class EagerDeadlines(Deadlines):
    """Compacts even tiny heaps, so the property test exercises compaction."""

    COMPACT_MIN = 1


@settings(max_examples=300, deadline=None)
@given(actions, st.sampled_from([Deadlines, EagerDeadlines]))
def test_agrees_with_a_dict_of_deadlines(steps, kind):
    """Random set/cancel/due sequences give what a plain dict of deadlines gives."""
    d = kind()
    items = [Item(str(i)) for i in range(5)]
    model: dict[int, float] = {}
    now = 0.0
    for index, when, advance in steps:
        d.set(items[index], when)
        if when is None:
            model.pop(index, None)
        else:
            model[index] = when
        nxt = d.next()
        if model:
            assert nxt is not None and nxt <= min(model.values())
        else:
            assert nxt is None
        now = max(now, advance)
        got = d.due(now)
        expected = sorted((w, i) for i, w in model.items() if w <= now)
        assert [w for w, _ in expected] == sorted(w for w in [model[int(x.name)] for x in got])
        assert {int(x.name) for x in got} == {i for _, i in expected}
        assert [model[int(x.name)] for x in got] == sorted(model[int(x.name)] for x in got)
        for _, i in expected:
            del model[i]
    for i, item in enumerate(items):
        assert item.deadline == model.get(i)


def test_cancelled_items_are_released_before_their_old_deadline():
    """Ended sessions must not stay referenced by the heap until their lease would have run out."""
    import gc
    import weakref

    d = Deadlines()
    keep = [Item(f"k{i}") for i in range(50)]
    for item in keep:
        d.set(item, 1000.0)
    gone = [Item(f"g{i}") for i in range(500)]
    refs = [weakref.ref(item) for item in gone]
    for item in gone:
        d.set(item, 300.0)
    for item in gone:
        d.set(item, None)
    del gone, item
    gc.collect()
    assert sum(ref() is not None for ref in refs) < 100
    assert len(d) < 200
    assert d.next() == 1000.0
    assert d.due(1000.0) == sorted(keep, key=keep.index)
