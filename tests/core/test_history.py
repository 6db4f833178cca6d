"""Per-subject history with one offset sequence and an epoch (lossless resume)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.core.events import data_event
from pushpy.core.history import History, parse_position


def publish(history: History, subject: str, now: float, **fields: str):
    return history.append(data_event(subject, fields, now), now)


def prefix(*prefixes: str):
    return lambda subject: subject.startswith(prefixes)


def offsets(recovery) -> list[int]:
    return [event.offset for event in recovery.events]


def test_offsets_increase_across_subjects():
    """Every stored event gets the next offset of one counter shared by all subjects."""
    h = History("ep")
    stored = [publish(h, s, 10.0) for s in ("/a", "/b", "/a", "/c")]
    assert [e.offset for e in stored] == [1, 2, 3, 4]
    assert all(e.epoch == "ep" for e in stored)
    assert stored[2].position == "ep:3"
    assert h.last_offset == 4
    assert h.position == "ep:4"


def test_append_returns_a_copy_and_keeps_fields():
    """The stored copy carries the offset; the published event is left untouched."""
    h = History("ep")
    event = data_event("/a", {"k": "v"}, 5.0)
    stored = h.append(event, 5.0)
    assert stored is not event
    assert event.offset is None and event.position is None
    assert stored.fields == event.fields


def test_empty_history_position():
    """An empty history's position is ``epoch:0`` and resuming from it recovers nothing, losslessly."""
    h = History("ep")
    assert h.position == "ep:0"
    rec = h.since("ep:0", prefix("/"), 0.0)
    assert rec.recovered and rec.events == [] and rec.reason is None


def test_since_returns_exact_missed_events_in_order():
    """``since`` gives every matching event after the position, in offset order, once."""
    h = History("ep")
    for i, subject in enumerate(["/a/1", "/b", "/a/2", "/c", "/a/1", "/b/x", "/a/2"]):
        publish(h, subject, 10.0 + i, n=str(i))
    rec = h.since("ep:2", prefix("/a", "/b"), 20.0)
    assert rec.recovered and rec.reason is None
    assert offsets(rec) == [3, 5, 6, 7]
    assert [e.fields["n"] for e in rec.events] == ["2", "4", "5", "6"]
    assert h.since("ep:7", prefix("/"), 20.0).events == []
    assert offsets(h.since("ep:0", prefix("/c"), 20.0)) == [4]


def test_trimmed_by_count_is_not_recovered():
    """A resume behind events dropped by ``max_events`` on a matching subject reports 'history trimmed'."""
    h = History("ep", max_events=2)
    for _ in range(4):
        publish(h, "/a", 1.0)  # offsets 1..4, 1 and 2 dropped
    publish(h, "/b", 1.0)  # 5
    rec = h.since("ep:1", prefix("/a"), 2.0)
    assert not rec.recovered and rec.reason == "history trimmed"
    assert offsets(rec) == [3, 4]
    ok = h.since("ep:2", prefix("/a"), 2.0)
    assert ok.recovered and offsets(ok) == [3, 4]
    # Drops on a subject the client does not match do not matter.
    other = h.since("ep:0", prefix("/b"), 2.0)
    assert other.recovered and offsets(other) == [5]


def test_expired_by_age_is_not_recovered():
    """Events older than ``max_age`` are dropped; resuming behind them is not recovered."""
    h = History("ep", max_age=60.0)
    publish(h, "/a", 0.0)  # 1
    publish(h, "/a", 50.0)  # 2
    publish(h, "/b", 0.0)  # 3: its subject is forgotten when it expires
    rec = h.since("ep:0", prefix("/a"), 100.0)
    assert not rec.recovered
    assert offsets(rec) == [2]
    assert h.subject_count() == 1
    # A forgotten subject leaves one history-wide mark (offset 3): a resume behind it cannot
    # prove it lost nothing, even on /a; a resume at or after it can.
    assert h.since("ep:3", prefix("/a"), 100.0).reason is None
    late = h.since("ep:2", prefix("/a"), 100.0)
    assert not late.recovered and late.reason == "history expired"
    gone = h.since("ep:0", prefix("/a"), 200.0)
    assert not gone.recovered and gone.events == []
    assert len(h) == 0


def test_age_limit_is_inclusive():
    """An event exactly ``max_age`` old is still kept."""
    h = History("ep", max_age=60.0)
    publish(h, "/a", 0.0)
    rec = h.since("ep:0", prefix("/a"), 60.0)
    assert rec.recovered and offsets(rec) == [1]


def test_unknown_epoch():
    """A token from another epoch is not recovered and returns no events."""
    h = History("ep")
    publish(h, "/a", 0.0)
    rec = h.since("other:0", prefix("/a"), 0.0)
    assert rec == type(rec)(events=[], recovered=False, reason="unknown epoch")


def test_position_ahead_of_history():
    """A token naming an offset not yet issued (an id from the future) is not recovered."""
    h = History("ep")
    publish(h, "/a", 0.0)
    rec = h.since("ep:2", prefix("/a"), 0.0)
    assert not rec.recovered and rec.reason == "position ahead of history" and rec.events == []
    assert h.since("ep:1", prefix("/a"), 0.0).recovered


@pytest.mark.parametrize("token", [
    None, "", "ep", "ep:", ":5", "ep:-1", "ep:+1", "ep:1.0", "ep: 1", "ep:1 ", "ep:x",
    "ep:" + "9" * 19, "ep:\u00b2", "ep:\u0663", "ep:\uff11",
])
def test_malformed_tokens(token):
    """Malformed tokens (including non-ASCII digits) are refused without raising."""
    h = History("ep")
    publish(h, "/a", 0.0)
    assert parse_position(token) is None
    rec = h.since(token, prefix("/"), 0.0)
    assert not rec.recovered and rec.reason == "malformed position" and rec.events == []


def test_parse_position_splits_at_last_colon():
    """An epoch may itself contain colons; the offset follows the last one."""
    assert parse_position("a:b:12") == ("a:b", 12)
    assert parse_position("ep:007") == ("ep", 7)
    assert parse_position("ep:" + "9" * 18) == ("ep", 10**18 - 1)


def test_last_returns_newest_events_of_exactly_one_subject():
    """``last(subject, n)`` gives the newest n events of that exact subject, oldest first."""
    h = History("ep", max_age=100.0)
    for i in range(5):
        publish(h, "/a", float(i), n=str(i))
        publish(h, "/a/sub", float(i))
    assert [e.fields["n"] for e in h.last("/a", 3, 10.0)] == ["2", "3", "4"]
    assert [e.fields["n"] for e in h.last("/a", 50, 10.0)] == ["0", "1", "2", "3", "4"]
    assert h.last("/a", 0, 10.0) == []
    assert h.last("/nothing", 3, 10.0) == []
    # Age applies: at t=102.5 only events stamped 3 and 4 are young enough.
    assert [e.fields["n"] for e in h.last("/a", 5, 102.5)] == ["3", "4"]


def test_max_subjects_forgets_least_recently_used_subject():
    """Past ``max_subjects`` the least recently published subject is forgotten, and resumes behind it fail."""
    h = History("ep", max_subjects=2)
    publish(h, "/a", 0.0)  # 1
    publish(h, "/b", 0.0)  # 2
    publish(h, "/a", 0.0)  # 3: /a is now the most recent
    publish(h, "/c", 0.0)  # 4: /b is forgotten
    assert h.subject_count() == 2
    assert h.last("/b", 5, 0.0) == []
    assert [e.offset for e in h.last("/a", 5, 0.0)] == [1, 3]
    rec = h.since("ep:1", prefix("/a", "/c"), 0.0)
    assert not rec.recovered and rec.reason == "history expired"
    assert offsets(rec) == [3, 4]
    fine = h.since("ep:2", prefix("/"), 0.0)
    assert fine.recovered and offsets(fine) == [3, 4]


def test_max_subjects_zero_keeps_the_current_subject():
    """``max_subjects=0`` acts as 1: the subject appended to is kept and no event is lost silently."""
    h = History("ep", max_subjects=0)
    publish(h, "/a", 0.0)
    publish(h, "/a", 0.0)
    rec = h.since("ep:0", prefix("/a"), 0.0)
    assert rec.recovered and offsets(rec) == [1, 2]
    publish(h, "/b", 0.0)
    rec = h.since("ep:0", prefix("/a", "/b"), 0.0)
    assert not rec.recovered and offsets(rec) == [3]


def test_max_events_zero_keeps_nothing_and_says_so():
    """With ``max_events=0`` no event is kept and any resume behind the head is not recovered."""
    h = History("ep", max_events=0)
    publish(h, "/a", 0.0)
    assert len(h) == 0
    rec = h.since("ep:0", prefix("/a"), 0.0)
    assert not rec.recovered and rec.events == []
    assert h.since("ep:1", prefix("/a"), 0.0).recovered


# -- property: since() against a brute-force model ----------------------------

SUBJECTS = ["/a", "/a/x", "/ab", "/b", "/b/y", "/c"]


@st.composite
def scenarios(draw):
    max_events = draw(st.integers(0, 5))
    max_age = draw(st.sampled_from([5.0, 20.0, 1000.0]))
    steps = draw(st.lists(st.tuples(st.sampled_from(SUBJECTS), st.floats(0, 4)), max_size=40))
    now_gap = draw(st.floats(0, 30))
    prefixes = tuple(draw(st.lists(st.sampled_from(["/", "/a", "/a/", "/b", "/c", "/z"]),
                                   min_size=1, max_size=3)))
    position = draw(st.integers(0, len(steps)))
    trims = draw(st.lists(st.integers(0, len(steps)), max_size=3))
    return max_events, max_age, steps, now_gap, prefixes, position, set(trims)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_since_matches_brute_force(scenario):
    """For random publishes and resume points, ``since`` returns exactly the retained matching
    events after the position, claims recovery only when nothing matching was lost, and always
    recovers a resume point within the retained history."""
    max_events, max_age, steps, now_gap, prefixes, position, trims = scenario
    h = History("ep", max_events=max_events, max_age=max_age)
    published = []  # (offset, subject, time)
    now = 0.0
    for i, (subject, gap) in enumerate(steps):
        if i in trims:
            h.trim(now)
        now += gap
        stored = publish(h, subject, now)
        published.append((stored.offset, subject, now))
    now += now_gap
    # Brute-force retention: per subject the newest max_events, none older than max_age.
    retained = set()
    for subject in SUBJECTS:
        mine = [p for p in published if p[1] == subject]
        kept = mine[-max_events:] if max_events > 0 else []
        retained.update(off for off, _, t in kept if t >= now - max_age)
    lost = [off for off, _, _ in published if off not in retained]
    matches = prefix(*prefixes)
    rec = h.since(f"ep:{position}", matches, now)
    expected = [off for off, subject, _ in published
                if off > position and off in retained and matches(subject)]
    assert offsets(rec) == expected
    assert all(matches(e.subject) for e in rec.events)
    lost_matching = [off for off, subject, _ in published
                     if off > position and off not in retained and matches(subject)]
    if rec.recovered:
        assert lost_matching == []
        assert rec.reason is None
    else:
        assert rec.reason in ("history trimmed", "history expired")
    if position >= max(lost, default=0):
        assert rec.recovered


def test_routed_events_are_kept_per_target_and_resumed_by_their_owners():
    """Unicast, user and broadcast events share the offset counter; a resume gets those addressed to
    the owners it names (its session, its user, everyone), never a subject match of their label."""
    from pushpy.core.events import Route
    from pushpy.core.history import owner_keys

    h = History("ep", max_events=2)
    publish(h, "/a", 1.0, n="0")
    mine = h.append(data_event("/a", {"n": "1"}, 1.0, route=Route.UNICAST, target="s1"), 1.0)
    h.append(data_event("/a", {"n": "2"}, 1.0, route=Route.UNICAST, target="s2"), 1.0)
    h.append(data_event("", {"n": "3"}, 1.0, route=Route.USER, target="ann"), 1.0)
    h.append(data_event("", {"n": "4"}, 1.0, route=Route.BROADCAST), 1.0)
    publish(h, "/a", 1.0, n="5")
    assert mine.offset == 2
    names = lambda rec: [e.fields["n"] for e in rec.events]  # noqa: E731
    assert names(h.since("ep:0", prefix("/a"), 1.0)) == ["0", "5"]  # no owners: multicast only
    assert names(h.since("ep:0", prefix("/a"), 1.0, owner_keys("s1", "ann"))) == ["0", "1", "3", "4", "5"]
    assert names(h.since("ep:1", prefix("/b"), 1.0, owner_keys("s2", None))) == ["2", "4"]
    assert [e.fields["n"] for e in h.last("/a", 10, 1.0)] == ["0", "5"]  # its subject history
    # A target's own log is bounded: losing s1's old unicasts is reported to s1 only.
    for n in range(3):
        h.append(data_event("", {"n": f"x{n}"}, 1.0, route=Route.UNICAST, target="s1"), 1.0)
    assert not h.since("ep:1", prefix("/a"), 1.0, owner_keys("s1", None)).recovered
    assert h.since("ep:1", prefix("/a"), 1.0, owner_keys("s2", None)).recovered
