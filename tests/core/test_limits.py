"""Publish limits and byte-bounded queues, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushpy.config import Config
from pushpy.core.dispatcher import Dispatcher
from pushpy.core.events import Event
from pushpy.core.limits import BUCKET, TokenBucket, check_event, check_publish_rate, event_bytes, fields_bytes
from pushpy.core.queues import ByteBoundedQueue
from pushpy.core.sessions import EndReason
from pushpy.errors import ClientError


def event(size: int, n: int = 0) -> Event:
    return Event({"n": str(n), "pad": "x" * size})


def test_bucket_allows_a_burst_then_the_rate():
    """A full bucket allows ``burst`` takes at once, then one per ``1/rate`` seconds."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False
    assert bucket.take(0.5) is True
    assert bucket.take(10.0) and bucket.take(10.0) and bucket.take(10.0)
    assert bucket.take(10.0) is False  # refilled to the burst, not beyond


def test_bucket_ignores_time_going_backwards():
    """A clock that steps back neither refills nor breaks the bucket."""
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert bucket.take(11.0)


@given(st.lists(st.floats(min_value=0, max_value=0.5), max_size=200), st.integers(1, 20),
       st.floats(min_value=0.1, max_value=100))
def test_bucket_never_allows_more_than_burst_plus_rate_times_time(steps, burst, rate):
    """Over any run, takes granted <= burst + rate * elapsed."""
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    granted = 0
    for step in steps:
        now += step
        granted += bucket.take(now)
    assert granted <= burst + rate * now + 1e-6


def test_publish_rate_is_per_session_data_and_names_its_key():
    """The bucket lives in the session's data; an exceeded rate is a nack naming the key."""
    config = Config(limit_publish_rate=1.0, limit_publish_burst=2)
    data: dict = {}
    check_publish_rate(data, config, 0.0)
    check_publish_rate(data, config, 0.0)
    with pytest.raises(ClientError, match=r"limit\.publish\.rate") as e:
        check_publish_rate(data, config, 0.5)
    assert e.value.status is None
    check_publish_rate(data, config, 1.0)
    assert isinstance(data[BUCKET], TokenBucket)
    check_publish_rate({}, Config(limit_publish_rate=0), 0.0)  # 0: off


def test_event_checks_count_fields_and_utf8_bytes():
    """``limit.fields`` counts fields; ``limit.event.bytes`` counts UTF-8 bytes of names and values."""
    config = Config(limit_fields=3, limit_event_bytes=20)
    check_event({"a": "1", "b": "2", "c": "3"}, config)
    with pytest.raises(ClientError, match=r"limit\.fields"):
        check_event({"a": "1", "b": "2", "c": "3", "d": "4"}, config)
    check_event({"t": "é" * 9}, config)  # 1 + 18 bytes
    with pytest.raises(ClientError, match=r"limit\.event\.bytes"):
        check_event({"t": "é" * 10}, config)
    assert fields_bytes({"a": "\ud800"}) == 4  # a lone surrogate counts, never raises


def test_event_bytes_is_cached_on_the_event():
    """An event's size is computed once and shared by every queue it is in."""
    e = event(10)
    assert event_bytes(e) == fields_bytes(e.fields)
    e.fields["pad"] = "changed"  # events never change after publishing: the cache stands
    assert event_bytes(e) == 1 + 1 + 3 + 10


def test_byte_bounded_queue_drops_oldest_past_either_bound():
    """Past the byte bound the oldest go (counted as dropped); the newest always stays."""
    q = ByteBoundedQueue(capacity=10, max_bytes=100)
    sizes = [event_bytes(event(40, i)) for i in range(3)]
    assert q.put((event(40, 0), None)) and q.put((event(40, 1), None))
    assert q.size == sum(sizes[:2])
    assert q.put((event(40, 2), None)) is False
    assert [item[0].fields["n"] for item in q.drain()] == ["1", "2"]
    assert q.dropped == 1 and q.size == 0
    huge = event(500)
    assert q.put((huge, None)) is True and len(q) == 1  # alone, it is kept
    assert q.put((event(1), None)) is False and q.drain()[0][0].fields["pad"] == "x"


def test_byte_bounded_queue_refill_and_clear_keep_the_count():
    """``refill`` recounts the bytes; ``clear`` forgets them."""
    q = ByteBoundedQueue(capacity=2, max_bytes=1000)
    items = [(event(10, i), None) for i in range(4)]
    q.refill(items)
    assert len(q) == 4 and q.size == sum(event_bytes(e) for e, _ in items)
    q.clear()
    assert q.size == 0 and not q


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 8), st.integers(1, 600))
def test_byte_bounded_queue_stays_within_bounds(sizes, capacity, max_bytes):
    """After any puts the queue holds at most ``capacity`` items and ``max_bytes`` (or one item)."""
    q = ByteBoundedQueue(capacity, max_bytes)
    for i, size in enumerate(sizes):
        q.put((event(size, i), None))
        assert len(q) <= capacity
        assert q.size <= max_bytes or len(q) == 1
        assert q.size == sum(event_bytes(e) for e, _ in q._items)
    kept = [int(e.fields["n"]) for e, _ in q.drain()]
    assert kept == sorted(kept) and (not sizes or kept[-1] == len(sizes) - 1)


def test_sessions_get_byte_bounded_queues_and_the_overflow_policy_applies():
    """A session's queue is bounded by ``limit.queue.bytes``; drops then follow the overflow policy."""
    d = Dispatcher(Config(limit_queue_bytes=300, queue_overflow_policy="abort"))
    s = d.join(0.0, format="xml")
    d.subscribe(s, "/a")
    d.listen(s, "pull", 0.0)
    for i in range(3):
        d.deliver(Event({"p_event": "data", "p_subject": "/a", "pad": "x" * 100, "n": str(i)}), 0.0)
    assert s.id not in d.sessions  # the third event passed 300 bytes: abort ends the session
    d2 = Dispatcher(Config(limit_queue_bytes=300))
    s2 = d2.join(0.0, format="xml")
    d2.subscribe(s2, "/a")
    d2.listen(s2, "pull", 0.0)
    for i in range(5):
        d2.deliver(Event({"p_event": "data", "p_subject": "/a", "pad": "x" * 100, "n": str(i)}), 0.0)
    items = s2.take(1.0)
    assert items[0][0].fields["p_reason"] == "queue overflow: 3 events dropped"
    assert [e.fields["n"] for e, _ in items[1:]] == ["3", "4"]
    d2.end(s2, EndReason.LEAVE)


def test_per_address_limit_exempts_listed_addresses():
    """``limit.sessions.per.address.exempt`` addresses (loopback by default) are not counted."""
    d = Dispatcher(Config(limit_sessions_per_address=1))
    d.join(0.0, address="127.0.0.1")
    d.join(0.0, address="127.0.0.1")
    d.join(0.0, address="10.0.0.1")
    with pytest.raises(ClientError) as e:
        d.join(0.0, address="10.0.0.1")
    assert e.value.status == 429
    strict = Dispatcher(Config(limit_sessions_per_address=1, limit_sessions_per_address_exempt=()))
    strict.join(0.0, address="127.0.0.1")
    with pytest.raises(ClientError):
        strict.join(0.0, address="127.0.0.1")
