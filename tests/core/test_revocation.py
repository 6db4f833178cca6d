"""Server-side revocation (``PushServer.unsubscribe``/``disconnect``) in one process, on a Clock.

The revocation goes through the in-process backplane like any event, so the
order of events decides what it removes; the dispatcher applies it to the
sessions of a user or to one session.
"""

from __future__ import annotations

import pytest
from test_dispatcher import FakeChannel
from twisted.internet.testing import MemoryReactorClock

from pushpy import protocol as P
from pushpy.config import Config
from pushpy.core.events import Event, Route
from pushpy.core.revocation import Remembered, overlaps, predates, revocation
from pushpy.core.sessions import EndReason, SessionState
from pushpy.errors import UsageError
from pushpy.server import PushServer
from pushpy.wire.native import event_message, session_closed


@pytest.fixture
def server() -> PushServer:
    return PushServer(Config(), reactor=MemoryReactorClock())


def session(server: PushServer, user: str | None, *subjects: str, native: bool = True):
    """A listening session of ``user`` subscribed to each of ``subjects`` (one subscription each)."""
    d = server.dispatcher
    now = server.clock.seconds()
    s = d.join(now, format=P.FORMAT_JSON if native else P.FORMAT_JS, user=user)
    for subject in subjects:
        d.subscribe(s, subject)
    d.listen(s, P.MODE_STREAM, now)
    return s


def subjects_of(s) -> list[str]:
    return sorted(sub.subject for sub in s.subscriptions.values())


def taken(s) -> list[tuple[str, str | None]]:
    return [(event.name, event.subject) for event, _ in s.take(0.0)]


def test_overlap_is_the_prefix_rule_both_ways():
    """A prefix at, under or above the subject overlaps it (Pushlet's plain string prefixes)."""
    assert overlaps("/chat/room1", "/chat/room1")
    assert overlaps("/chat/room1/typing", "/chat/room1")
    assert overlaps("/chat", "/chat/room1")
    assert overlaps("/chat/room10", "/chat/room1")  # a string prefix, as subscriptions match
    assert not overlaps("/chat/room10", "/chat/room1/")
    assert not overlaps("/chat/room2", "/chat/room1")
    assert not overlaps("/stocks", "/chat/room1")


def test_unsubscribe_removes_the_subject_from_every_session_of_the_user(server):
    """At, under and above the subject go from all of ann's sessions; bob and other subjects stay."""
    tab = session(server, "ann", "/chat/room1", "/chat/room1/typing", "/news")
    phone = session(server, "ann", "/chat")
    pushlet = session(server, "ann", "/chat/room1", native=False)
    bob = session(server, "bob", "/chat/room1")
    stored = server.unsubscribe("/chat/room1", user="ann")
    assert stored.name == P.UNSUBSCRIBED and stored.position
    assert subjects_of(tab) == ["/news"]
    assert subjects_of(phone) == [] and subjects_of(pushlet) == []
    assert subjects_of(bob) == ["/chat/room1"]
    # Native sessions are told (the event is queued), the Pushlet one is not.
    assert taken(tab) == taken(phone) == [(P.UNSUBSCRIBED, "/chat/room1")]
    assert taken(pushlet) == [] and taken(bob) == []
    server.publish("/chat/room1", text="after")
    server.publish("/news", text="news")
    assert taken(tab) == [(P.DATA, "/news")]
    assert taken(phone) == taken(pushlet) == []
    assert taken(bob) == [(P.DATA, "/chat/room1")]
    assert list(server.dispatcher.index.match("/chat/room1")) == [bob]


def test_a_comma_list_keeps_its_other_subjects_and_its_sid(server):
    """Only the overlapping parts of a comma list go; the subscription keeps its sid and label."""
    s = session(server, "ann")
    sub = server.dispatcher.subscribe(s, "/a,/chat/room1,/b", label="mine")
    server.unsubscribe("/chat/room1", user="ann")
    assert s.subscriptions == {sub.sid: sub}
    assert (sub.subject, sub.prefixes, sub.label) == ("/a,/b", ("/a", "/b"), "mine")
    server.publish("/chat/room1", text="x")
    server.publish("/b", text="y")
    assert [(e.subject, item) for e, item in s.take(0.0)][1:] == [("/b", sub)]


def test_queued_events_of_the_subject_are_dropped(server):
    """What was queued and not yet written for the removed subject goes; the rest stays, in order."""
    s = session(server, "ann", "/chat/room1", "/news")
    server.publish("/chat/room1", text="queued")
    server.publish("/news", text="kept")
    server.unsubscribe("/chat/room1", session=s.id)
    assert taken(s) == [(P.DATA, "/news"), (P.UNSUBSCRIBED, "/chat/room1")]


def test_unsubscribe_of_one_session_leaves_the_users_other_sessions(server):
    one = session(server, "ann", "/chat/room1")
    other = session(server, "ann", "/chat/room1")
    channel = FakeChannel()
    one.attach(channel)
    server.unsubscribe("/chat/room1", session=one.id, reason="moved")
    assert subjects_of(one) == [] and subjects_of(other) == ["/chat/room1"]
    assert channel.wakes == 1
    [(notice, _)] = one.take(0.0)
    assert event_message(notice) == {"type": "unsubscribed", "subject": "/chat/room1",
                                     "id": notice.position, "reason": "moved"}


def test_a_subscription_made_after_the_revocation_stays(server):
    """The application may allow the subject again: a later subscribe is not undone, not even by
    the remembered revocation applied to a copy; one made before it is (``made`` positions)."""
    s = session(server, "ann", "/chat/room1")
    old = next(iter(s.subscriptions.values()))
    server.unsubscribe("/chat/room1", user="ann")
    again = server.dispatcher.subscribe(s, "/chat/room1")
    assert not server.dispatcher.reapply(s, 0.0)
    assert s.subscriptions == {again.sid: again}
    # A copy made from an older record: the old subscription, with its old position, comes back.
    server.dispatcher.subscribe(s, "/chat/room1", sid="old", made=old.made)
    assert server.dispatcher.reapply(s, 0.0)
    assert s.subscriptions == {again.sid: again}


def test_disconnect_ends_every_session_of_the_user_with_the_reason(server):
    channels = []
    sessions = [session(server, "ann", "/a"), session(server, "ann", native=False)]
    for s in sessions:
        channels.append(FakeChannel())
        s.attach(channels[-1])
    bob = session(server, "bob", "/a")
    server.disconnect(user="ann", reason="banned")
    assert [s.state for s in sessions] == [SessionState.ENDED] * 2
    assert [c.ended for c in channels] == [[EndReason.REVOKED]] * 2
    assert session_closed(sessions[0], EndReason.REVOKED) == {"type": "close", "reason": "banned",
                                                              "reconnect": False}
    assert session_closed(bob, EndReason.SHUTDOWN) == {"type": "close", "reason": "shutdown"}
    assert bob.state is SessionState.LISTENING
    assert server.metrics.ended["revoked"] == 2
    # ann logs in again: her new session is not the revoked ones.
    later = session(server, "ann", "/a")
    assert not server.dispatcher.reapply(later, 0.0) and later.listening


def test_disconnect_of_one_session(server):
    one, other = session(server, "ann"), session(server, "ann")
    server.disconnect(session=one.id)
    assert one.state is SessionState.ENDED and other.listening
    assert session_closed(one, EndReason.REVOKED)["reason"] == "disconnected"


def test_replayed_revocations_apply_and_reach_only_sessions_made_before_them(server):
    """A resume replays the user's revocations: applied to a session older than each (and queued
    for its client), skipped for a session made after it (a new session resuming an old id)."""
    d = server.dispatcher
    stale = session(server, "ann", "/chat/room1")
    stale_subscription = next(iter(stale.subscriptions.values()))
    start = server.backplane.position
    fresh_before = server.publish("/chat/room1", text="before")
    revoked = server.unsubscribe("/chat/room1", session="elsewhere")  # another session's: ignored
    mine = server.unsubscribe("/chat/room1", user="ann")
    newer = session(server, "ann", "/chat/room1")
    replay = server.backplane.since(start, lambda subject: subject.startswith("/chat"),
                                    frozenset({("u", "ann"), ("s", stale.id)})).events
    assert [e.position for e in replay] == [fresh_before.position, mine.position]
    # As if the stale session was a copy that never saw the revocation:
    d.subscribe(stale, "/chat/room1", sid=stale_subscription.sid, made=stale_subscription.made)
    assert [e.position for e in d.replayed(stale, replay, 0.0)] == [fresh_before.position, mine.position]
    assert subjects_of(stale) == []
    assert [e.position for e in d.replayed(newer, [*replay, revoked], 0.0)] == [fresh_before.position]
    assert subjects_of(newer) == ["/chat/room1"]


def test_positions_of_another_history_compare_by_the_current_epoch():
    at = Event({P.P_EVENT: P.UNSUBSCRIBED}, route=Route.USER, target="ann", offset=5, epoch="new")
    assert predates("new:4", at, "new") and not predates("new:5", at, "new")
    assert predates("old:99", at, "new")       # made before the log was replaced
    assert not predates("old:99", at, "older")  # the revocation is of a replaced log: stale
    assert predates(None, at, "new") and predates("garbage", at, "new")  # unknown: fails closed


def test_remembered_revocations_are_kept_for_a_while_and_bounded():
    remembered = Remembered(keep=60.0, limit=2)
    events = [revocation(P.UNSUBSCRIBED, 0, user="ann", session=None, reason="r", subject="/a").stored(i, "e")
              for i in (1, 2, 3)]

    class Ann:
        id, user = "s1", "ann"

    remembered.add(events[0], 0.0)
    remembered.add(events[0], 1.0)  # once
    remembered.add(events[1], 10.0)
    assert remembered.of(Ann) == events[:2] and len(remembered) == 2
    remembered.add(events[2], 20.0)  # over the limit: the oldest goes
    assert remembered.of(Ann) == events[1:]
    remembered.trim(70.5)
    assert remembered.of(Ann) == events[2:]
    remembered.trim(81.0)
    assert remembered.of(Ann) == [] and len(remembered) == 0


def test_the_server_refuses_bad_revocations(server):
    for call in (lambda: server.unsubscribe("/a"), lambda: server.unsubscribe("/a", user="ann", session="s"),
                 lambda: server.unsubscribe("", user="ann"), lambda: server.unsubscribe("/a,/b", user="ann"),
                 lambda: server.unsubscribe("/" * 1000, user="ann"), lambda: server.disconnect(user=""),
                 lambda: server.disconnect(user="ann", reason="x" * 201), lambda: server.disconnect()):
        with pytest.raises(UsageError):
            call()
