"""The presence tracker and the query API of PushServer, on an injected reactor.

A backplane that answers presence and history with Deferreds (as a clustered
one does) checks that every caller waits for them.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, succeed
from webfakes import make_server

from pushpy import protocol as P
from pushpy.backplane import MemoryBackplane
from pushpy.core.events import Route
from pushpy.core.presence import ONLINE
from pushpy.core.sessions import EndReason
from pushpy.errors import BackplaneUnavailable, UsageError
from pushpy.server import PushServer


def result(d: Deferred):
    box = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def presence_events(server: PushServer, subject: str) -> list[tuple[str, str]]:
    return [(e.fields["user"], e.fields["action"])
            for e in result(server.history("/presence" + subject, 100))]


def join(server: PushServer, user: str | None, *subjects: str):
    session = server.dispatcher.join(server.clock.seconds(), format=P.FORMAT_JSON, user=user)
    server.dispatcher.listen(session, P.MODE_STREAM, server.clock.seconds())
    for subject in subjects:
        server.dispatcher.subscribe(session, subject)
    return session


def test_presence_follows_subscriptions_and_session_ends():
    """join/leave on the companion subject only for a user's first and last session."""
    server, _ = make_server()
    tab1 = join(server, "ann", "/chat/room1")
    tab2 = join(server, "ann", "/chat/room1")
    bob = join(server, "bob", "/chat/room1,/chat/room2")
    join(server, None, "/chat/room1")  # anonymous: no presence
    assert result(server.presence("/chat/room1")) == {"ann": 2, "bob": 1}
    assert result(server.presence()) == {"ann": 2, "bob": 1}
    server.dispatcher.unsubscribe(tab1)
    server.dispatcher.end(tab2, EndReason.EXPIRED)
    server.dispatcher.end(bob, EndReason.DISCONNECT)
    assert result(server.presence("/chat/room1")) == {}
    assert presence_events(server, "/chat/room1") == [
        ("ann", "join"), ("bob", "join"), ("ann", "leave"), ("bob", "leave")]
    assert presence_events(server, "/chat/room2") == [("bob", "join"), ("bob", "leave")]
    # tab1 only unsubscribed: ann is still online.
    assert presence_events(server, ONLINE) == [("ann", "join"), ("bob", "join"), ("bob", "leave")]
    assert result(server.is_online("ann")) is True and result(server.is_online("bob")) is False
    server.dispatcher.end(tab1, EndReason.LEAVE)
    assert presence_events(server, ONLINE)[-1] == ("ann", "leave")


def test_subscribing_to_a_companion_subject_is_not_presence():
    server, _ = make_server()
    join(server, "ann", "/presence/chat/room1", ONLINE)
    assert result(server.presence("/presence/chat/room1")) == {}
    assert result(server.presence()) == {"ann": 1}


def test_send_to_user_and_history_api():
    server, _ = make_server()
    session = join(server, "ann")
    event = server.send_to_user("ann", "/dm", {"text": "hi"})
    assert event.route is Route.USER and event.position is not None  # kept for resumes
    assert [e.fields["text"] for e, _ in session.take(0.0)] == ["hi"]
    assert result(server.history("/dm", 10)) == []  # not in the subject's history
    server.publish("/chat", n=1)
    server.publish("/chat", n=2)
    assert [e.fields["n"] for e in result(server.history("/chat", 1))] == ["2"]
    with pytest.raises(UsageError):
        server.history("/chat", -1)
    with pytest.raises(UsageError):
        server.send_to_user("", "/dm")


class LaterBackplane(MemoryBackplane):
    """Answers presence and history later, as a clustered backplane does."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.waiting: list[tuple[Deferred, object]] = []

    def _later(self, value: object) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append((d, value))
        return d

    def release(self) -> None:
        while self.waiting:
            d, value = self.waiting.pop(0)
            d.callback(value)

    def presence_enter(self, subject, user, member):
        return self._later(super().presence_enter(subject, user, member))

    def presence_leave(self, subject, user, member):
        return self._later(super().presence_leave(subject, user, member))

    def presence(self, subject):
        return self._later(super().presence(subject))

    def history(self, subject, count):
        return succeed(super().history(subject, count))


def test_deferred_answers_of_the_backplane_are_awaited():
    from webfakes import FakeReactor

    reactor = FakeReactor()
    backplane = LaterBackplane(now=reactor.seconds)
    server = PushServer(reactor=reactor, backplane=backplane)
    join(server, "ann", "/room")
    assert result(server.history("/presence/room", 10)) == []  # not announced yet
    backplane.release()
    assert [e.fields["action"] for e in result(server.history("/presence/room", 10))] == ["join"]
    asked = server.presence("/room")
    backplane.release()
    assert result(asked) == {"ann": 1}


def test_a_session_refused_before_it_listens_never_shows_online():
    """A join ended before its first listen (refused binding or subject) publishes no join/leave."""
    server, _ = make_server()
    refused = server.dispatcher.join(server.clock.seconds(), format=P.FORMAT_JSON, user="eve")
    server.dispatcher.end(refused, EndReason.LEAVE)
    assert presence_events(server, ONLINE) == []
    assert result(server.is_online("eve")) is False
    session = join(server, "ann")
    server.dispatcher.listen(session, P.MODE_STREAM, server.clock.seconds())  # again: no second join
    assert presence_events(server, ONLINE) == [("ann", "join")]



class ReapingBackplane(MemoryBackplane):
    """Has what a clustered backplane offers (dead nodes' users, lost members, reconnects, outages)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.departure_listeners: list = []
        self.rejoin_listeners: list = []
        self.reconnect_listeners: list = []
        self.down = False

    def presence_enter(self, subject, user, member):
        if self.down:
            raise BackplaneUnavailable("redis is not connected")
        return super().presence_enter(subject, user, member)

    def presence_leave(self, subject, user, member):
        if self.down:
            raise BackplaneUnavailable("redis is not connected")
        return super().presence_leave(subject, user, member)

    def presence_sync(self, members):
        return self.presence_store.sync(members)


def test_enters_and_leaves_failing_during_an_outage_are_made_good_on_reconnect():
    """While the backplane is unavailable, presence writes fail with a warning (no traceback);
    the reconnect sets this node's members right and announces each change once."""
    from twisted.logger import globalLogPublisher

    from webfakes import FakeReactor

    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        reactor = FakeReactor()
        backplane = ReapingBackplane(now=reactor.seconds)
        server = PushServer(reactor=reactor, backplane=backplane)
        ann = join(server, "ann", "/room")
        backplane.down = True
        server.dispatcher.end(ann, EndReason.LEAVE)  # ann leaves, bob and carol come
        join(server, "bob", "/room")
        carol = join(server, "carol", "/room")
        server.dispatcher.end(carol, EndReason.LEAVE)  # ... and carol goes, all during the outage
        assert presence_events(server, "/room") == [("ann", "join")]
        backplane.down = False
        for listener in backplane.reconnect_listeners:
            listener()
        assert result(server.presence("/room")) == {"bob": 1}
        assert presence_events(server, "/room") == [("ann", "join"), ("bob", "join"), ("ann", "leave")]
        for listener in backplane.reconnect_listeners:  # nothing failed since: nothing to do
            listener()
        assert len(presence_events(server, "/room")) == 3
    finally:
        globalLogPublisher.removeObserver(logged.append)
    levels = {e["log_level"].name for e in logged if "presence" in e.get("log_format", "")}
    assert levels == {"warn"}
    assert not any(e.get("log_failure") for e in logged)


def test_a_dead_nodes_users_leave_and_lost_members_enter_again():
    """Departures reported by the backplane are announced; a rejoin sets every live member again."""
    from webfakes import FakeReactor

    reactor = FakeReactor()
    backplane = ReapingBackplane(now=reactor.seconds)
    server = PushServer(reactor=reactor, backplane=backplane)
    ann = join(server, "ann", "/room")
    for listener in backplane.departure_listeners:
        listener("/room", "zed")  # zed was on a node that died
    assert presence_events(server, "/room") == [("ann", "join"), ("zed", "leave")]
    backplane.presence_store = type(backplane.presence_store)()  # the cluster lost this node's members
    for listener in backplane.rejoin_listeners:
        listener()
    assert result(server.presence("/room")) == {"ann": 1}
    assert presence_events(server, "/room")[-1] == ("ann", "join")
    assert presence_events(server, ONLINE) == [("ann", "join"), ("ann", "join")]
    server.dispatcher.end(ann, EndReason.DISCONNECT)
    assert result(server.presence("/room")) == {}
