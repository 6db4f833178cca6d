"""Identity, presence and history in the core: the user index, user routing, the presence store.

Time is passed explicitly (the numbers play the clock); the backplane gets an injected clock.
"""

from __future__ import annotations

import pytest

from pushpy import protocol as P
from pushpy.backplane import MemoryBackplane
from pushpy.core.dispatcher import Dispatcher
from pushpy.core.events import Route, data_event
from pushpy.core.presence import ONLINE, Presence, presence_subject, presence_subjects
from pushpy.core.sessions import EndReason
from pushpy.core.subjects import Subscription
from pushpy.errors import UsageError


def listening(d: Dispatcher, user: str | None = None, now: float = 0.0):
    session = d.join(now, format=P.FORMAT_JSON, user=user)
    d.listen(session, P.MODE_STREAM, now)
    return session


def to_user(user: str, now: float = 0.0, **fields: str):
    return data_event("/dm", fields, now, route=Route.USER, target=user)


# -- the user index ----------------------------------------------------------------

def test_on_join_callbacks_see_the_user():
    """``join(user=...)`` sets the user before the ``on_join`` callbacks run."""
    d = Dispatcher()
    seen = []
    d.on_join.append(lambda session: seen.append(session.user))
    d.join(0.0, user="ann")
    d.join(0.0)
    assert seen == ["ann", None]


def test_user_event_reaches_every_session_of_the_user_only():
    """A USER event is queued for each session of its user (tabs, devices) and nobody else."""
    d = Dispatcher()
    tab1, tab2, other, anonymous = listening(d, "ann"), listening(d, "ann"), listening(d, "bob"), listening(d)
    assert d.sessions_of("ann") == [tab1, tab2]
    assert d.deliver(to_user("ann", text="hi"), 1.0) == 2
    assert [e.fields["text"] for e, _ in tab1.take(1.0)] == ["hi"]
    assert [e.fields["text"] for e, _ in tab2.take(1.0)] == ["hi"]
    assert other.take(1.0) == [] and anonymous.take(1.0) == []


def test_user_event_for_an_unknown_user_reaches_nobody():
    d = Dispatcher()
    listening(d, "ann")
    assert d.deliver(to_user("nobody"), 0.0) == 0


def test_ended_sessions_leave_the_user_index():
    """Ending a session removes it from its user's sessions; the last one removes the user."""
    d = Dispatcher()
    first, second = listening(d, "ann"), listening(d, "ann")
    d.end(first, EndReason.LEAVE)
    assert d.sessions_of("ann") == [second]
    assert d.deliver(to_user("ann"), 0.0) == 1
    d.end(second, EndReason.EXPIRED)
    assert "ann" not in d.users and d.sessions_of("ann") == []


def test_user_event_ends_a_dead_session_while_routing():
    """Liveness applies to user events too, and ending one session mid-loop is safe."""
    d = Dispatcher()
    dead, alive = listening(d, "ann", now=0.0), listening(d, "ann", now=0.0)
    assert d.deliver(to_user("ann"), dead.timeout / 2) == 2
    alive.last_alive = dead.timeout
    assert d.deliver(to_user("ann"), dead.timeout + 1) == 1
    assert d.sessions_of("ann") == [alive]


def test_user_event_needs_a_target():
    with pytest.raises(UsageError):
        data_event("/dm", {}, 0.0, route=Route.USER)


def test_subscription_changes_are_reported():
    """``on_subscriptions`` fires after a subscribe and after an unsubscribe that removed something."""
    d = Dispatcher()
    s = listening(d, "ann")
    calls = []
    d.on_subscriptions.append(
        lambda session: calls.append(sorted(x.subject for x in session.subscriptions.values())))
    sub = d.subscribe(s, "/a")
    d.subscribe(s, "/b")
    d.unsubscribe(s, sub.sid)
    d.unsubscribe(s)
    d.unsubscribe(s)  # nothing left: no call
    assert calls == [["/a"], ["/a", "/b"], ["/b"], []]


# -- the presence store --------------------------------------------------------------

def test_presence_counts_users_by_members():
    """A user enters on their first member and leaves with their last."""
    p = Presence()
    assert p.enter("/room", "ann", "s1") is True
    assert p.enter("/room", "ann", "s2") is False
    assert p.enter("/room", "ann", "s2") is False  # the same member twice is one
    assert p.enter("/room", "bob", "s3") is True
    assert p.members("/room") == {"ann": 2, "bob": 1}
    assert p.leave("/room", "ann", "s1") is False
    assert p.leave("/room", "ann", "s2") is True
    assert p.members("/room") == {"bob": 1}
    assert p.leave("/room", "bob", "s3") is True
    assert p.members("/room") == {} and len(p) == 0


def test_presence_leave_of_an_absent_member_changes_nothing():
    p = Presence()
    p.enter("/room", "ann", "s1")
    assert p.leave("/room", "ann", "other") is False
    assert p.leave("/room", "bob", "s1") is False
    assert p.leave("/elsewhere", "ann", "s1") is False
    assert p.members("/room") == {"ann": 1}


def test_presence_subjects_skip_companions_and_online():
    """Every part of every subscription counts, but not ``/presence/...`` nor the reserved ``/online``."""
    subs = [Subscription("1", "/chat/a,/chat/b"), Subscription("2", "/presence/chat/a"),
            Subscription("3", ONLINE), Subscription("4", "/chat/a")]
    assert presence_subjects(subs) == {"/chat/a", "/chat/b"}
    assert presence_subject("/chat/a") == "/presence/chat/a"
    assert presence_subject("room") == "/presence/room"


# -- the memory backplane: presence and history ------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_backplane_presence():
    """The backplane's presence methods answer at once with the store's values."""
    bp = MemoryBackplane(now=FakeClock())
    assert bp.presence_enter("/r", "ann", "s1") is True
    assert bp.presence_enter("/r", "ann", "s2") is False
    assert bp.presence("/r") == {"ann": 2}
    assert bp.presence_leave("/r", "ann", "s1") is False
    assert bp.presence_leave("/r", "ann", "s2") is True
    assert bp.presence("/r") == {}


def test_memory_backplane_history_is_newest_last_and_bounded_by_age():
    """``history(subject, count)``: the newest ``count`` of that subject, oldest first; expired ones go."""
    clock = FakeClock()
    bp = MemoryBackplane(now=clock, history_ttl=60.0, epoch="ep")
    for i in range(5):
        bp.publish(data_event("/chat/a", {"n": str(i)}, clock.now))
    bp.publish(data_event("/chat/ab", {"n": "x"}, clock.now))
    bp.publish(data_event("/dm", {}, clock.now, route=Route.USER, target="ann"))  # not stored
    last = bp.history("/chat/a", 3)
    assert [e.fields["n"] for e in last] == ["2", "3", "4"]
    assert [e.position for e in last] == ["ep:3", "ep:4", "ep:5"]
    assert bp.history("/chat/a", 0) == [] and bp.history("/nothing", 5) == []
    clock.now += 61
    assert bp.history("/chat/a", 10) == []
