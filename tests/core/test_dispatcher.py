"""The dispatcher: sessions, leases, subscriptions and routing (spec 2.3, 7.5, 7.6, 8, 9, 14).

Time is passed explicitly: the numbers below play the clock.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from zope.interface import implementer

from pushpy import protocol as P
from pushpy.config import Config
from pushpy.core.dispatcher import Dispatcher, select_mode
from pushpy.core.events import Event, Route, data_event, make_event
from pushpy.core.ids import CONSONANTS, VOWELS
from pushpy.core.sessions import EndReason, SessionState
from pushpy.errors import ClientError
from pushpy.interfaces import ISessionIdPolicy
from pushpy.wire.pushlet import CODECS


class FakeChannel:
    """A data channel that records what the core asks of it."""

    def __init__(self) -> None:
        self.wakes = 0
        self.ended: list[EndReason] = []

    def wake(self) -> None:
        self.wakes += 1

    def end(self, reason: EndReason) -> None:
        self.ended.append(reason)


def listening(d: Dispatcher, now: float = 0.0, mode: str = P.MODE_PULL, **kw):
    session = d.join(now, **kw)
    d.listen(session, mode, now)
    return session


def publish(d: Dispatcher, subject: str, now: float = 0.0, **fields: str) -> int:
    return d.deliver(data_event(subject, fields, now), now)


def taken_names(session, now: float = 0.0) -> list[str]:
    return [event.name for event, _ in session.take(now)]


# -- join, require, limits ----------------------------------------------------

def test_join_registers_a_joined_session_with_a_lease():
    """``join`` registers a JOINED session with the given format, agent and address, leased for 5 minutes."""
    d = Dispatcher()
    s = d.join(100.0, format=P.FORMAT_XML, user_agent="java/1.6", address="10.0.0.1")
    assert d.sessions == {s.id: s}
    assert s.state is SessionState.JOINED and not s.listening
    assert (s.format, s.user_agent, s.address) == ("xml", "java/1.6", "10.0.0.1")
    assert s.expires_at == 400.0
    assert d.next_deadline() == 400.0
    assert d.find(s.id) is s and d.require(s.id) is s
    assert d.stats.joined == 1


def test_default_session_ids_are_long_and_url_safe():
    """Default ids carry 128 random bits in URL-safe characters and differ between sessions."""
    d = Dispatcher()
    ids = {d.join(0.0).id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) >= 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


def test_randomstring_ids_have_the_original_shape():
    """``session.id.generation=randomstring`` gives the original consonant-vowel ids."""
    d = Dispatcher(Config(session_id_generation="randomstring", session_id_size=10))
    sid = d.join(0.0).id
    assert len(sid) == 10
    assert all(c in (VOWELS if i % 2 else CONSONANTS) for i, c in enumerate(sid))


def test_subscription_ids_have_five_letters():
    """Subscription ids are 5 letters in the original alphabet."""
    d = Dispatcher()
    s = d.join(0.0)
    sid = d.subscribe(s, "/a").sid
    assert len(sid) == 5
    assert all(c in (VOWELS if i % 2 else CONSONANTS) for i, c in enumerate(sid))


@implementer(ISessionIdPolicy)
class FixedIds:
    def __init__(self, *ids: str) -> None:
        self.ids = list(ids)
        self.seen: list[dict] = []

    def session_id(self, params):
        self.seen.append(dict(params))
        return self.ids.pop(0)

    def subscription_id(self):
        return "sub" + str(len(self.ids))


def test_id_policy_chooses_the_session_id():
    """The id policy gets the join parameters and its id is used."""
    ids = FixedIds("user-42")
    d = Dispatcher(ids=ids)
    s = d.join(0.0, params={"uniqueId": "42"})
    assert s.id == "user-42"
    assert ids.seen == [{"uniqueId": "42"}]


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 129, "é"])
def test_invalid_policy_id_is_refused(bad):
    """An id that is not URL-safe or too long is refused with 400 and nothing is registered."""
    d = Dispatcher(ids=FixedIds(bad))
    with pytest.raises(ClientError) as e:
        d.join(0.0)
    assert e.value.status == 400
    assert d.sessions == {}


def test_id_in_use_is_refused():
    """A policy id that clashes with a live session is refused and the live session is kept."""
    d = Dispatcher(ids=FixedIds("same", "same"))
    first = d.join(0.0)
    with pytest.raises(ClientError) as e:
        d.join(0.0)
    assert e.value.status == 400 and e.value.reason == "Session id in use: same"
    assert d.sessions == {"same": first}


def test_maxsessions_limit():
    """``sessionmanager.maxsessions`` refuses joins with 503 until a session ends."""
    d = Dispatcher(Config(sessionmanager_maxsessions=2))
    a = d.join(0.0)
    d.join(0.0)
    with pytest.raises(ClientError) as e:
        d.join(0.0)
    assert e.value.status == 503
    assert len(d.sessions) == 2
    d.end(a, EndReason.LEAVE)
    d.join(0.0)
    assert len(d.sessions) == 2


def test_per_address_limit():
    """``limit.sessions.per.address`` refuses a third join from one address with 429, not others."""
    d = Dispatcher(Config(limit_sessions_per_address=2))
    a = d.join(0.0, address="1.1.1.1")
    d.join(0.0, address="1.1.1.1")
    with pytest.raises(ClientError) as e:
        d.join(0.0, address="1.1.1.1")
    assert e.value.status == 429
    d.join(0.0, address="2.2.2.2")
    d.end(a, EndReason.LEAVE)
    d.join(0.0, address="1.1.1.1")
    assert len(d.sessions) == 3


def test_require_errors_use_the_spec_messages():
    """``require`` answers a missing or unknown id with the exact 400 messages of spec 2.3."""
    d = Dispatcher()
    for missing in (None, ""):
        with pytest.raises(ClientError) as e:
            d.require(missing)
        assert (e.value.status, e.value.reason) == (400, "No id specified")
    with pytest.raises(ClientError) as e:
        d.require("nosuchid")
    assert (e.value.status, e.value.reason) == (400, "Invalid or expired id: nosuchid")
    s = d.join(0.0)
    d.end(s, EndReason.LEAVE)
    with pytest.raises(ClientError) as e:
        d.require(s.id)
    assert e.value.reason == f"Invalid or expired id: {s.id}"
    assert d.find(s.id) is None and d.find(None) is None


# -- subscribe / unsubscribe --------------------------------------------------

def snapshot(d: Dispatcher, session):
    return dict(session.subscriptions), sorted(d.index.subjects())


def test_subscribe_adds_an_indexed_subscription():
    """A subscription gets a fresh sid, keeps its subject and label, and is indexed."""
    d = Dispatcher()
    s = d.join(0.0)
    sub = d.subscribe(s, "/a,/b", "lbl")
    assert s.subscriptions == {sub.sid: sub}
    assert (sub.subject, sub.label, sub.prefixes) == ("/a,/b", "lbl", ("/a", "/b"))
    assert d.index.match("/b/1") == {s: sub}
    again = d.subscribe(s, "/a,/b")
    assert again.sid != sub.sid and again.label is None
    assert len(s.subscriptions) == 2


@pytest.mark.parametrize("subject, reason", [
    (None, "no subject provided"),
    ("", "no subject provided"),
    (",", "no subject provided"),
    (",,,", "no subject provided"),
    ("/" + "x" * 256, "subject too long (at most 256 characters)"),
    (",".join(["/a"] * 33), "too many subjects in one subscription (at most 32)"),
    ("/" + "x" * 8192, "subject list too long"),
])
def test_subscribe_nacks_leave_state_unchanged(subject, reason):
    """A refused subscribe raises a ``nack`` reason (no HTTP status) and changes nothing."""
    d = Dispatcher()
    s = d.join(0.0)
    d.subscribe(s, "/keep")
    before = snapshot(d, s)
    with pytest.raises(ClientError) as e:
        d.subscribe(s, subject, "lbl")
    assert e.value.reason == reason
    assert e.value.status is None
    assert snapshot(d, s) == before


def test_subject_at_the_length_limit_is_accepted():
    """A part of exactly ``limit.subject.length`` characters and 32 parts are accepted."""
    d = Dispatcher()
    s = d.join(0.0)
    d.subscribe(s, "/" + "x" * 255)
    d.subscribe(s, ",".join(f"/{i}" for i in range(32)))
    assert len(s.subscriptions) == 2


def test_too_many_subscriptions():
    """Past ``limit.subscriptions`` a subscribe is refused and the existing ones stay."""
    d = Dispatcher(Config(limit_subscriptions=3))
    s = d.join(0.0)
    for i in range(3):
        d.subscribe(s, f"/s{i}")
    before = snapshot(d, s)
    with pytest.raises(ClientError) as e:
        d.subscribe(s, "/more")
    assert e.value.reason == "too many subscriptions (at most 3)"
    assert snapshot(d, s) == before


def test_unsubscribe_by_sid():
    """Unsubscribing one sid removes only it, from the session and from the index."""
    d = Dispatcher()
    s = d.join(0.0)
    a = d.subscribe(s, "/a")
    b = d.subscribe(s, "/b")
    assert d.unsubscribe(s, a.sid) == [a]
    assert s.subscriptions == {b.sid: b}
    assert d.index.match("/a") == {}
    assert d.index.match("/b") == {s: b}


def test_unsubscribe_all():
    """Unsubscribing without sid removes every subscription of the session only."""
    d = Dispatcher()
    s, other = d.join(0.0), d.join(0.0)
    subs = [d.subscribe(s, "/a"), d.subscribe(s, "/b")]
    keep = d.subscribe(other, "/a")
    assert d.unsubscribe(s) == subs
    assert s.subscriptions == {}
    assert d.index.match("/a") == {other: keep}
    assert d.unsubscribe(s) == []


def test_unsubscribe_unknown_sid_is_a_nack():
    """An unknown sid gives the spec's nack reason and leaves the subscriptions alone."""
    d = Dispatcher()
    s = d.join(0.0)
    a = d.subscribe(s, "/a")
    with pytest.raises(ClientError) as e:
        d.unsubscribe(s, "zzzzz")
    assert (e.value.reason, e.value.status) == ("no subscription for sid=zzzzz", None)
    assert s.subscriptions == {a.sid: a}
    assert d.index.match("/a") == {s: a}


# -- routing --------------------------------------------------------------------

def test_multicast_reaches_matching_listening_sessions_once():
    """A multicast is queued once per matching listening session, with the matching subscription."""
    d = Dispatcher()
    a, b, c = listening(d), listening(d), listening(d)
    sa = d.subscribe(a, "/stocks")
    d.subscribe(a, "/stocks/aex")
    sb = d.subscribe(b, "/stocksXYZ,/x")
    d.subscribe(c, "/weather")
    assert publish(d, "/stocksXYZ/1") == 2
    (event, sub), = a.take(0.0)
    assert event.subject == "/stocksXYZ/1" and sub is sa
    assert [sub for _, sub in b.take(0.0)] == [sb]
    assert c.take(0.0) == []
    assert d.stats.received == 1 and d.stats.delivered == 2


def test_same_event_object_is_shared_between_sessions():
    """Sessions share the published event; per-copy fields are not written into it."""
    d = Dispatcher()
    a, b = listening(d), listening(d)
    d.subscribe(a, "/a", "la")
    d.subscribe(b, "/a", "lb")
    event = data_event("/a", {"k": "v"}, 0.0)
    fields = dict(event.fields)
    d.deliver(event, 0.0)
    (ea, _), = a.take(0.0)
    (eb, _), = b.take(0.0)
    assert ea is eb is event
    assert event.fields == fields


def attributes(xml_bytes: bytes) -> list[dict[str, str]]:
    return [dict(e.attrib) for e in ET.fromstring(xml_bytes).iter("event")]


def test_label_is_set_per_copy_from_the_matching_subscription():
    """Each copy carries the sid and label of its own session's match, no label if it has none (fix 14.2.1)."""
    d = Dispatcher()
    sessions = [listening(d) for _ in range(3)]
    subs = [d.subscribe(sessions[0], "/t", "first"),
            d.subscribe(sessions[1], "/t"),
            d.subscribe(sessions[2], "/t", "third")]
    publish(d, "/t/x", 0.0, value="8")
    codec = CODECS[P.FORMAT_XML_STRICT]
    copies = []
    for session in sessions:
        (event, sub), = session.take(0.0)
        copies.append(attributes(codec.opening + codec.data(event, 1, sub) + codec.closing)[0])
    assert [c[P.P_SID] for c in copies] == [s.sid for s in subs]
    assert [c.get(P.P_LABEL) for c in copies] == ["first", None, "third"]
    assert all(c["value"] == "8" and c[P.P_SEQ] == "1" for c in copies)


def test_broadcast_reaches_every_listening_session_without_sid():
    """A broadcast reaches every listening session, whatever its subscriptions, without subscription."""
    d = Dispatcher()
    a, b = listening(d), listening(d)
    d.subscribe(a, "/a")
    joined = d.join(0.0)
    event = make_event(P.ABORT, 0.0)
    event.route = Route.BROADCAST
    assert d.deliver(event, 0.0) == 2
    assert a.take(0.0) == [(event, None)]
    assert b.take(0.0) == [(event, None)]
    assert joined.take(0.0) == []


def test_unicast_reaches_only_its_target_without_subject_check():
    """A unicast reaches its target even without a matching subscription; an unknown target is dropped."""
    d = Dispatcher()
    a, b = listening(d), listening(d)
    d.subscribe(b, "/x")
    event = data_event("/x", {"m": "hi"}, 0.0, route=Route.UNICAST, target=a.id)
    assert d.deliver(event, 0.0) == 1
    assert a.take(0.0) == [(event, None)]
    assert b.take(0.0) == []
    lost = data_event("", {}, 0.0, route=Route.UNICAST, target="nobody")
    assert d.deliver(lost, 0.0) == 0


def test_events_for_joined_not_listening_sessions_are_dropped():
    """A session that joined but does not listen gets nothing queued, not even later (spec 4)."""
    d = Dispatcher()
    s = d.join(0.0)
    d.subscribe(s, "/a")
    assert publish(d, "/a") == 0
    d.listen(s, P.MODE_PULL, 1.0)
    assert s.take(1.0) == []
    assert publish(d, "/a", 1.0) == 1
    assert taken_names(s, 1.0) == [P.DATA]


def test_listen_sets_mode_and_state():
    """``listen`` makes the session LISTENING in the effective mode and returns it."""
    d = Dispatcher()
    s = d.join(0.0, user_agent="mozilla/5.0 (x11) firefox/120")
    assert d.listen(s, P.MODE_POLL, 3.0) == P.MODE_POLL
    assert s.state is SessionState.LISTENING and s.mode == P.MODE_POLL
    assert s.last_alive == 3.0


# -- channels ------------------------------------------------------------------

def test_delivery_wakes_the_last_attached_channel():
    """Each delivery wakes the channel attached last; attaching with events waiting wakes at once."""
    d = Dispatcher()
    s = listening(d)
    d.subscribe(s, "/a")
    publish(d, "/a")
    first, second = FakeChannel(), FakeChannel()
    s.attach(first)
    assert first.wakes == 1
    s.take(0.0)
    s.attach(second)
    assert second.wakes == 0
    publish(d, "/a")
    assert (first.wakes, second.wakes) == (1, 1)
    s.detach(second)
    s.detach(second)
    publish(d, "/a")
    assert first.wakes == 2



def test_events_given_back_come_before_newer_ones_and_wake_the_channel():
    """Items taken for a response never written are queued again ahead of what came since."""
    d = Dispatcher()
    s = listening(d)
    d.subscribe(s, "/a")
    publish(d, "/a", n="1")
    publish(d, "/a", n="2")
    taken = s.take(0.0)
    publish(d, "/a", n="3")
    channel = FakeChannel()
    s.attach(channel)
    wakes = channel.wakes
    s.give_back(taken)
    assert channel.wakes == wakes + 1
    assert [e.fields["n"] for e, _ in s.take(1.0)] == ["1", "2", "3"]
    s.give_back([])
    assert channel.wakes == wakes + 1 and s.take(2.0) == []


# -- overflow ---------------------------------------------------------------

def test_overflow_drops_oldest_with_one_nack_per_episode():
    """A full queue drops the oldest events; the next take starts with one nack giving the count."""
    d = Dispatcher()  # queue.size 24: 23 usable
    s = listening(d)
    d.subscribe(s, "/a")
    for i in range(30):
        publish(d, "/a", 1.0, n=str(i))
    assert d.stats.dropped == 7
    items = s.take(2.0)
    nack, sub = items[0]
    assert sub is None
    assert nack.fields == {P.P_EVENT: P.NACK, P.P_TIME: "2", P.P_ID: s.id,
                           P.P_REASON: "queue overflow: 7 events dropped"}
    assert [e.fields["n"] for e, _ in items[1:]] == [str(i) for i in range(7, 30)]
    assert s.state is SessionState.LISTENING
    publish(d, "/a", 3.0)
    assert taken_names(s, 3.0) == [P.DATA]
    for _ in range(25):
        publish(d, "/a", 4.0)
    items = s.take(4.0)
    assert len(items) == 24
    assert [e.fields.get(P.P_REASON) for e, _ in items].count("queue overflow: 2 events dropped") == 1


def test_exactly_full_queue_drops_nothing():
    """23 queued events fit in the default queue without a nack."""
    d = Dispatcher()
    s = listening(d)
    d.subscribe(s, "/a")
    for _ in range(23):
        publish(d, "/a")
    assert taken_names(s) == [P.DATA] * 23


def test_overflow_abort_policy_ends_the_session():
    """With the ``abort`` policy an overflow ends the session with OVERFLOW and tells its channel."""
    d = Dispatcher(Config(queue_overflow_policy="abort", queue_size=4))
    s = listening(d)
    d.subscribe(s, "/a")
    channel = FakeChannel()
    s.attach(channel)
    ended = []
    d.on_end.append(lambda session, reason: ended.append((session, reason)))
    assert [publish(d, "/a") for _ in range(3)] == [1, 1, 1]
    assert publish(d, "/a") == 0
    assert s.state is SessionState.ENDED
    assert channel.ended == [EndReason.OVERFLOW]
    assert EndReason.OVERFLOW.aborts
    assert ended == [(s, EndReason.OVERFLOW)]
    assert s.id not in d.sessions and len(d.index) == 0
    assert publish(d, "/a") == 0


# -- leases and liveness ------------------------------------------------------

def test_lease_expires_without_activity():
    """A session not renewed for ``session.timeout.mins`` ends EXPIRED at ``expire(now)``."""
    d = Dispatcher()
    s = d.join(0.0)
    channel = FakeChannel()
    s.attach(channel)
    assert d.expire(299.9) == []
    assert d.expire(300.0) == [s]
    assert s.state is SessionState.ENDED
    assert channel.ended == [EndReason.EXPIRED]
    assert d.sessions == {} and d.next_deadline() is None


def test_touch_renews_the_lease():
    """``touch`` moves the expiry; ``expire`` at the old deadline keeps the session and re-arms."""
    d = Dispatcher()
    s = d.join(0.0)
    d.touch(s, 100.0)
    assert d.next_deadline() == 300.0  # early, never late
    assert d.expire(300.0) == []
    assert d.next_deadline() == 400.0
    assert d.expire(399.0) == []
    assert d.expire(400.0) == [s]


def test_take_renews_the_lease():
    """A data-channel cycle (``take``) renews the lease (spec 14.1.9)."""
    d = Dispatcher()
    s = listening(d)
    s.take(250.0)
    assert d.expire(300.0) == []
    assert d.expire(550.0) == [s]


def test_lease_timeout_follows_config():
    """``session.timeout.mins`` sets the lease length."""
    d = Dispatcher(Config(session_timeout_mins=1))
    s = d.join(10.0)
    assert d.expire(69.0) == []
    assert d.expire(70.0) == [s]


def test_expire_ends_many_sessions():
    """``expire`` returns every session due, and only those."""
    d = Dispatcher()
    a, b, c = d.join(0.0), d.join(10.0), d.join(20.0)
    d.touch(a, 50.0)
    assert set(d.expire(315.0)) == {b}
    assert set(d.expire(400.0)) == {a, c}


@pytest.mark.parametrize("mode, limit", [(P.MODE_PULL, 45.0), (P.MODE_STREAM, 45.0),
                                         (P.MODE_POLL, 60.0)])
def test_liveness_rule_without_channel(mode, limit):
    """An event for a session without channel, silent past its liveness limit, ends it (LIVENESS)."""
    d = Dispatcher(Config(listen_force_pull_agents=()))
    s = listening(d, 0.0, mode)
    d.subscribe(s, "/a")
    ended = []
    d.on_end.append(lambda session, reason: ended.append(reason))
    assert publish(d, "/a", limit) == 1
    assert s.listening
    assert publish(d, "/a", limit + 0.001) == 0
    assert s.state is SessionState.ENDED and ended == [EndReason.LIVENESS]


def test_liveness_is_measured_from_the_last_take():
    """Each data-channel cycle resets the liveness clock."""
    d = Dispatcher()
    s = listening(d, 0.0, P.MODE_PULL)
    d.subscribe(s, "/a")
    s.take(40.0)
    assert publish(d, "/a", 85.0) == 1
    assert s.listening


def test_liveness_does_not_apply_with_a_channel_attached():
    """A session with an open data channel is alive however long it has been silent."""
    d = Dispatcher()
    s = listening(d, 0.0, P.MODE_PULL)
    d.subscribe(s, "/a")
    s.attach(FakeChannel())
    assert publish(d, "/a", 200.0) == 1
    assert s.listening


# -- mode selection --------------------------------------------------------------

FIREFOX = "mozilla/5.0 (x11; linux x86_64; rv:120.0) gecko/20100101 firefox/120.0"
CHROME = "mozilla/5.0 (x11; linux x86_64) applewebkit/537.36 (khtml, like gecko) chrome/120 safari/537.36"


@pytest.mark.parametrize("config, requested, agent, expected", [
    (Config(), None, FIREFOX, P.MODE_STREAM),
    (Config(), "", FIREFOX, P.MODE_STREAM),
    (Config(), "bogus", FIREFOX, P.MODE_STREAM),
    (Config(), P.MODE_STREAM, FIREFOX, P.MODE_STREAM),
    (Config(), P.MODE_PULL, FIREFOX, P.MODE_PULL),
    (Config(), P.MODE_POLL, FIREFOX, P.MODE_POLL),
    (Config(), P.MODE_STREAM, CHROME, P.MODE_PULL),
    (Config(), None, CHROME, P.MODE_PULL),
    (Config(), P.MODE_PULL, CHROME, P.MODE_PULL),
    (Config(), P.MODE_POLL, CHROME, P.MODE_PULL),
    (Config(), P.MODE_STREAM, "unknown", P.MODE_STREAM),
    (Config(listen_force_pull_all=True), P.MODE_STREAM, FIREFOX, P.MODE_PULL),
    (Config(listen_force_pull_all=True), P.MODE_POLL, FIREFOX, P.MODE_PULL),
    (Config(listen_force_pull_agents=("firefox", "opera")), P.MODE_STREAM, FIREFOX, P.MODE_PULL),
    (Config(listen_force_pull_agents=("firefox", "opera")), P.MODE_STREAM, CHROME, P.MODE_STREAM),
    (Config(listen_force_pull_agents=()), P.MODE_STREAM, CHROME, P.MODE_STREAM),
    (Config.from_mapping({"listen.force.pull.agents": "Opera, Safari"}), P.MODE_STREAM, CHROME,
     P.MODE_PULL),
])
def test_select_mode(config, requested, agent, expected):
    """Mode selection follows spec 7.5: force-all, then listed agents get pull, else p_mode or stream."""
    assert select_mode(requested, agent, config) == expected


def test_select_mode_never_forces_stream_on_pull():
    """No configuration or agent turns a requested pull into stream (spec 14.1.19)."""
    configs = [Config(), Config(listen_force_pull_all=True), Config(listen_force_pull_agents=())]
    for config in configs:
        for agent in (FIREFOX, CHROME, "unknown", "java/1.6"):
            assert select_mode(P.MODE_PULL, agent, config) == P.MODE_PULL


# -- ending ------------------------------------------------------------------------

def test_end_unregisters_and_tells_channels_once():
    """``end`` unregisters the session, its subscriptions, queue and lease; a second end does nothing."""
    d = Dispatcher()
    s = listening(d)
    d.subscribe(s, "/a")
    publish(d, "/a")
    channels = [FakeChannel(), FakeChannel()]
    for c in channels:
        s.attach(c)
    calls = []
    d.on_end.append(lambda session, reason: calls.append(reason))
    d.end(s, EndReason.LEAVE)
    d.end(s, EndReason.EXPIRED)
    assert [c.ended for c in channels] == [[EndReason.LEAVE], [EndReason.LEAVE]]
    assert calls == [EndReason.LEAVE]
    assert s.channels == [] and len(s.queue) == 0
    assert len(d.index) == 0 and d.sessions == {} and d.next_deadline() is None
    assert d.stats.ended == 1
    assert not EndReason.LEAVE.aborts


def test_shutdown_ends_every_session_with_shutdown():
    """``shutdown`` ends all sessions with SHUTDOWN, which aborts their channels (spec 14.1.25)."""
    d = Dispatcher()
    sessions = [listening(d), d.join(0.0), listening(d, mode=P.MODE_STREAM)]
    channels = []
    for s in sessions:
        c = FakeChannel()
        s.attach(c)
        channels.append(c)
        d.subscribe(s, "/a")
    d.shutdown()
    assert d.sessions == {} and len(d.index) == 0
    assert all(c.ended == [EndReason.SHUTDOWN] for c in channels)
    assert all(s.state is SessionState.ENDED for s in sessions)
    assert EndReason.SHUTDOWN.aborts


def test_every_end_reason_but_leave_aborts():
    """Only ``leave`` ends without ``abort`` (spec 14.1.22)."""
    assert [r for r in EndReason if not r.aborts] == [EndReason.LEAVE]


def test_event_accessors():
    """An event exposes its subject, name and resume position."""
    e = Event({P.P_EVENT: P.DATA, P.P_SUBJECT: "/a"}, offset=3, epoch="ep")
    assert (e.subject, e.name, e.position) == ("/a", P.DATA, "ep:3")
    assert Event({}).name == "" and Event({}).subject is None and Event({}).position is None


def test_byte_bounded_overflow_counts_every_dropped_event_and_one_episode():
    """When one large event pushes out several small ones, each counts as dropped, the episode once."""
    d = Dispatcher(Config(limit_queue_bytes=1000))
    s = listening(d)
    d.subscribe(s, "/a")
    for i in range(5):
        publish(d, "/a", 1.0, n=str(i), pad="x" * 150)
    assert (d.stats.dropped, d.stats.overflows) == (0, 0)
    publish(d, "/a", 1.0, n="big", pad="y" * 900)
    assert s.queue.dropped == 5
    assert (d.stats.dropped, d.stats.overflows) == (5, 1)
    publish(d, "/a", 1.0, n="next", pad="z" * 150)
    assert (d.stats.dropped, d.stats.overflows) == (6, 1)
    s.take(2.0)
    publish(d, "/a", 2.0, n="small", pad="v" * 150)
    publish(d, "/a", 2.0, n="after", pad="w" * 900)
    assert (d.stats.dropped, d.stats.overflows) == (7, 2)


def test_an_open_connection_holds_a_native_session_past_its_lease():
    """A native session with a data channel attached does not expire, whatever its heartbeat interval."""
    d = Dispatcher(Config(native_session_timeout_secs=2.0))
    s = listening(d, format=P.FORMAT_JSON, mode=P.MODE_STREAM)
    channel = FakeChannel()
    s.attach(channel)
    assert d.expire(5.0) == [] and s.state is SessionState.LISTENING
    assert d.expire(9.0) == []
    s.detach(channel)
    assert d.expire(10.0) == []  # the lease runs from the last check it was held at
    assert d.expire(11.5) == [s]


def test_a_session_floor_skips_live_repeats_of_what_a_log_read_queued():
    """Events up to ``session.floor`` were queued by a resume from the log: their live copies are
    skipped; the first later event is delivered and lifts the floor."""
    d = Dispatcher()
    resumed, other = listening(d), listening(d)
    for session in (resumed, other):
        d.subscribe(session, "/f")
    resumed.floor = 2
    delivered = [d.deliver(data_event("/f", {"n": str(n)}, 0.0).stored(n, "e"), 0.0) for n in (1, 2, 3, 4)]
    assert delivered == [1, 1, 2, 2]
    assert [event.offset for event, _ in resumed.take(0.0)] == [3, 4]
    assert [event.offset for event, _ in other.take(0.0)] == [1, 2, 3, 4]
    assert resumed.floor is None
