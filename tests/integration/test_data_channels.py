"""Data channels over loopback HTTP: stream, pull and poll in every format (spec 7, 14.1.16-21)."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from pushlet_client import Peer
from server_support import sleep
from twisted.internet.defer import Deferred

FORMATS = ["js", "xml", "xml-strict"]
every_format = pytest.mark.parametrize("fmt", FORMATS)
#: A short read timeout for the tests of heartbeats and pull timeouts.
HB = {"queue_read_timeout_millis": 300}


def refresh_url(peer: Peer) -> str:
    return f"/pushlet/pushlet.srv?p_id={peer.id}&p_event=refresh"


def check_refresh(event: dict[str, str], peer: Peer, low: int, high: int) -> None:
    """A ``refresh`` event: ``p_wait`` an integer in range, the spec's ``p_url``, no ``p_seq``."""
    assert event["p_event"] == "refresh"
    assert event["p_wait"].isdigit() and low <= int(event["p_wait"]) <= high, event
    assert event["p_url"] == refresh_url(peer)
    assert "p_seq" not in event


# -- stream -----------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_stream_listen_ack_then_hb_seq_1(server, fmt):
    """A stream ``listen`` writes ``listen-ack`` (with ``p_sid``, ``p_label``) and then at once ``hb`` with
    ``p_seq=1``."""
    peer = Peer(server, fmt)
    await peer.join()
    stream = await peer.open("listen", p_mode="stream", p_subject="/a", p_label="L")
    ack, hb = await stream.events_until(2)
    sid = next(iter(server.sessions[peer.id].subscriptions))
    assert ack == {"p_event": "listen-ack", "p_time": ack["p_time"], "p_id": peer.id,
                   "p_mode": "stream", "p_format": fmt, "p_sid": sid, "p_label": "L"}
    assert hb == {"p_event": "hb", "p_time": hb["p_time"], "p_seq": "1"}
    assert not stream.finished


@every_format
@pytest.mark.parametrize("mode", ["stream", "pull", "poll"])
@pytest_twisted.ensureDeferred
async def test_listen_without_subject(server, fmt, mode):
    """A ``listen`` without ``p_subject`` adds no subscription and its ack has no ``p_sid``/``p_label``."""
    peer = Peer(server, fmt)
    await peer.join()
    stream = await peer.open("listen", p_mode=mode)
    ack, second = await stream.events_until(2)
    assert ack == {"p_event": "listen-ack", "p_time": ack["p_time"], "p_id": peer.id,
                   "p_mode": mode, "p_format": fmt}
    assert second["p_event"] == ("hb" if mode == "stream" else "refresh")
    assert server.sessions[peer.id].subscriptions == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_stream_join_listen(server, fmt):
    """``join-listen`` in stream mode writes ``join-listen-ack`` with ``p_id`` then ``hb``."""
    peer = Peer(server, fmt)
    stream = await peer.open("join-listen", p_mode="stream", p_subject="/j")
    ack, hb = await stream.events_until(2)
    assert ack["p_event"] == "join-listen-ack"
    assert set(ack) == {"p_event", "p_time", "p_id", "p_mode", "p_format", "p_sid"}
    assert ack["p_id"] in server.sessions and ack["p_format"] == fmt and ack["p_mode"] == "stream"
    assert hb["p_event"] == "hb" and hb["p_seq"] == "1"


@every_format
@pytest_twisted.ensureDeferred
async def test_stream_default_mode_is_stream(server, fmt):
    """A ``listen`` without ``p_mode`` streams."""
    peer = Peer(server, fmt)
    await peer.join()
    stream = await peer.open("listen", p_subject="/d")
    ack, hb = await stream.events_until(2)
    assert ack["p_mode"] == "stream" and hb["p_event"] == "hb"


@every_format
@pytest_twisted.ensureDeferred
async def test_stream_data_with_increasing_seq_then_hb_after_timeout(serve, fmt):
    """Data events follow with increasing ``p_seq``, then an ``hb`` comes after the 300 ms read timeout."""
    server = serve(**HB)
    peer = Peer(server, fmt)
    stream = await peer.stream("/s")
    publisher = Peer(server, "xml")
    await publisher.join()
    for n in range(3):
        await publisher.send("publish", p_subject="/s", n=str(n))
    await stream.wait(lambda s: len([e for e in s.events if e["p_event"] == "data"]) == 3)
    last_data = len(stream.events) - 1
    data = [e for e in stream.events if e["p_event"] == "data"]
    assert [e["n"] for e in data] == ["0", "1", "2"]
    assert [e["p_seq"] for e in stream.events[1:]] == [str(n) for n in range(1, last_data + 1)]
    started = time.monotonic()
    events = await stream.events_until(last_data + 2, timeout=4)
    hb = events[last_data + 1]
    assert hb == {"p_event": "hb", "p_time": hb["p_time"], "p_seq": str(last_data + 1)}
    assert 0.1 < time.monotonic() - started < 3.0  # loose: the machine may be loaded


@pytest_twisted.ensureDeferred
async def test_stream_repeats_hb_while_idle(serve):
    """An idle stream gets an ``hb`` after every read timeout, numbered on."""
    server = serve(**HB)
    peer = Peer(server, "xml")
    stream = await peer.stream("/idle")
    events = await stream.events_until(4, timeout=2)
    assert [(e["p_event"], e["p_seq"]) for e in events[1:4]] == [("hb", "1"), ("hb", "2"), ("hb", "3")]


@pytest_twisted.ensureDeferred
async def test_stream_hb_renews_lease(serve):
    """Each ``hb`` of an idle stream renews the session lease, so a streaming session does not expire."""
    server = serve(session_timeout_mins=0.01, **HB)  # 0.6 s lease, 0.3 s heartbeat
    peer = Peer(server, "xml")
    stream = await peer.stream("/lease")
    await stream.events_until(6, timeout=3)
    assert peer.id in server.sessions
    assert not stream.finished


# -- pull ---------------------------------------------------------------------

@every_format
@pytest.mark.parametrize("event", ["listen", "join-listen"])
@pytest_twisted.ensureDeferred
async def test_pull_listen_answers_ack_and_refresh_only(server, fmt, event):
    """The first pull response is the ack and a ``refresh`` with ``p_wait`` in [2000, 6000], then it ends."""
    peer = Peer(server, fmt)
    if event == "listen":
        await peer.join()
    reply = await peer.send(event, p_mode="pull", p_subject="/p", p_label="lab")
    if event == "join-listen":
        peer.id = reply.events[0]["p_id"]
    ack, refresh = reply.events
    sid = next(iter(server.sessions[peer.id].subscriptions))
    assert ack == {"p_event": f"{event}-ack", "p_time": ack["p_time"], "p_id": peer.id,
                   "p_mode": "pull", "p_format": fmt, "p_sid": sid, "p_label": "lab"}
    check_refresh(refresh, peer, 2000, 6000)


@every_format
@pytest_twisted.ensureDeferred
async def test_pull_refresh_waits_for_an_event(server, fmt):
    """A pull ``refresh`` stays open until an event is queued, then answers ack, data, ``refresh``."""
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/w")
    pending = Deferred.fromCoroutine(peer.send("refresh"))
    await sleep(0.15)
    assert not pending.called
    server.push.publish("/w/x", value="8")
    reply = await pending
    ack, data, refresh = reply.events
    assert ack == {"p_event": "refresh-ack", "p_time": ack["p_time"]}
    assert data["p_event"] == "data" and data["value"] == "8" and data["p_seq"] == "1"
    assert data["p_subject"] == "/w/x"
    check_refresh(refresh, peer, 2000, 6000)


@every_format
@pytest_twisted.ensureDeferred
async def test_pull_refresh_answers_hb_after_read_timeout(serve, fmt):
    """A pull ``refresh`` with nothing queued answers ack, one ``hb`` with ``p_seq=1`` and ``refresh`` after
    the read timeout."""
    server = serve(**HB)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/quiet")
    started = time.monotonic()
    reply = await peer.send("refresh")
    elapsed = time.monotonic() - started
    ack, hb, refresh = reply.events
    assert ack["p_event"] == "refresh-ack"
    assert hb == {"p_event": "hb", "p_time": hb["p_time"], "p_seq": "1"}
    check_refresh(refresh, peer, 2000, 6000)
    assert 0.25 <= elapsed < 1.5


@every_format
@pytest_twisted.ensureDeferred
async def test_pull_refresh_takes_everything_queued(server, fmt):
    """Events published between pull refreshes are queued and all returned by the next one, from 1."""
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/q")
    for n in range(3):
        server.push.publish("/q", n=n)
    reply = await peer.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "data", "data", "data", "refresh"]
    assert [(e["n"], e["p_seq"]) for e in reply.events[1:4]] == [("0", "1"), ("1", "2"), ("2", "3")]


@every_format
@pytest.mark.parametrize("via", ["post-event", "post-form"])
@pytest.mark.parametrize("mode", ["pull", "poll"])
@pytest_twisted.ensureDeferred
async def test_data_channel_by_post(server, fmt, via, mode):
    """``join-listen`` and ``refresh`` sent as POST bodies behave as by GET."""
    peer = Peer(server, fmt, via)
    reply = await peer.send("join-listen", p_mode=mode, p_subject="/post", p_label="L")
    ack, refresh = reply.events
    assert (ack["p_event"], ack["p_mode"], ack["p_label"]) == ("join-listen-ack", mode, "L")
    assert refresh["p_event"] == "refresh"
    server.push.publish("/post", n="1")
    reply = await peer.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "data", "refresh"]
    assert (reply.events[1]["n"], reply.events[1]["p_label"]) == ("1", "L")


# -- poll ---------------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_poll_listen_answers_ack_and_refresh(server, fmt):
    """The first poll response is the ack (``p_mode=poll``) and a ``refresh`` with ``p_wait`` in [6000,
    10000]."""
    peer = Peer(server, fmt)
    reply = await peer.send("join-listen", p_mode="poll", p_subject="/p")
    peer.id = reply.events[0]["p_id"]
    ack, refresh = reply.events
    assert ack["p_event"] == "join-listen-ack" and ack["p_mode"] == "poll"
    check_refresh(refresh, peer, 6000, 10000)


@every_format
@pytest_twisted.ensureDeferred
async def test_poll_refresh_returns_at_once_with_hb(serve, fmt):
    """A poll ``refresh`` with nothing queued returns at once: ack, ``hb``, ``refresh`` with ``p_wait`` in
    [6000, 10000]."""
    server = serve(queue_read_timeout_millis=20_000)
    peer = Peer(server, fmt)
    await peer.join()
    await peer.send("listen", p_mode="poll", p_subject="/p")
    started = time.monotonic()
    reply = await peer.send("refresh")
    assert time.monotonic() - started < 5  # not at the 20 s read timeout
    ack, hb, refresh = reply.events
    assert ack["p_event"] == "refresh-ack"
    assert hb["p_event"] == "hb" and hb["p_seq"] == "1"
    check_refresh(refresh, peer, 6000, 10000)


@every_format
@pytest_twisted.ensureDeferred
async def test_poll_refresh_returns_queued_events(server, fmt):
    """A poll ``refresh`` returns the queued events, without ``hb``."""
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="poll", p_subject="/p")
    server.push.publish("/p/1", a="1")
    server.push.publish("/p/2", a="2")
    reply = await peer.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "data", "data", "refresh"]
    assert [e["p_subject"] for e in reply.events[1:3]] == ["/p/1", "/p/2"]


@pytest_twisted.ensureDeferred
async def test_safari_agent_is_forced_to_pull(server):
    """A User-Agent containing ``safari`` asking for stream gets pull, echoed in ``p_mode`` (spec 7.5)."""
    agent = b"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36"
    stream = await server.open({"p_event": "join-listen", "p_format": "xml-strict",
                                "p_mode": "stream", "p_subject": "/s"},
                               headers={b"User-Agent": [agent]})
    await stream.end()
    ack, refresh = stream.events
    assert ack["p_mode"] == "pull" and refresh["p_event"] == "refresh"


@pytest_twisted.ensureDeferred
async def test_listen_with_subject_adds_a_subscription_each_time(server):
    """Each ``listen`` with ``p_subject`` adds a new subscription (spec 4)."""
    peer = Peer(server, "xml")
    await peer.join()
    first = (await peer.send("listen", p_mode="pull", p_subject="/x")).events[0]["p_sid"]
    second = (await peer.send("listen", p_mode="pull", p_subject="/x")).events[0]["p_sid"]
    assert first != second
    assert set(server.sessions[peer.id].subscriptions) == {first, second}


@pytest_twisted.ensureDeferred
async def test_joined_session_drops_events_until_it_listens(server):
    """Events for a session that joined but does not listen are dropped, not queued (spec 14.1.20)."""
    peer = Peer(server, "xml")
    await peer.join()
    await peer.send("subscribe", p_subject="/early")
    server.push.publish("/early", n="dropped")
    await peer.send("listen", p_mode="poll")
    server.push.publish("/early", n="kept")
    reply = await peer.send("refresh")
    assert [e.get("n") for e in reply.events if e["p_event"] == "data"] == ["kept"]


# -- routing -------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_multicast_labels_are_per_session(server):
    """Each session's copy carries the label of its own matching subscription, none when it has none (fix
    14.2.1)."""
    a, b, c = Peer(server, "js"), Peer(server, "xml"), Peer(server, "xml-strict")
    streams = [await a.stream("/news", p_label="label-a"), await b.stream("/news", p_label="label-b"),
               await c.stream("/news")]
    server.push.publish("/news/today", headline="x")
    copies = [(await s.events_until(3))[2] for s in streams]
    assert copies[0]["p_label"] == "label-a"
    assert copies[1]["p_label"] == "label-b"
    assert "p_label" not in copies[2]
    for peer, copy in zip((a, b, c), copies, strict=True):
        assert copy["p_sid"] == next(iter(server.sessions[peer.id].subscriptions))
        assert copy["headline"] == "x"


@pytest_twisted.ensureDeferred
async def test_multicast_one_copy_per_session_with_matching_sid(server):
    """A session with several matching subscriptions gets one copy, with the most specific match's sid."""
    peer = Peer(server, "xml")
    stream = await peer.stream("/a", p_label="broad")
    sid_broad = next(iter(server.sessions[peer.id].subscriptions))
    narrow = (await peer.send("subscribe", p_subject="/a/b", p_label="narrow")).event
    server.push.publish("/a/b/c", n="1")
    server.push.publish("/a/x", n="2")
    server.push.publish("/zzz", n="3")
    await peer.send("subscribe", p_subject="/end")
    server.push.publish("/end", n="marker")
    events = await stream.events_until(5)
    await sleep(0.05)
    data = [e for e in stream.events if e["p_event"] == "data"]
    assert [e["n"] for e in data] == ["1", "2", "marker"]
    assert (data[0]["p_sid"], data[0]["p_label"]) == (narrow["p_sid"], "narrow")
    assert (data[1]["p_sid"], data[1]["p_label"]) == (sid_broad, "broad")
    assert len(events) >= 5


@pytest_twisted.ensureDeferred
async def test_prefix_matching_and_comma_lists(server):
    """Subjects match by plain string prefix; a comma list is one subscription with one sid."""
    peer = Peer(server, "xml")
    await peer.join()
    sid = (await peer.send("listen", p_mode="poll", p_subject="/stocks,/weather")).events[0]["p_sid"]
    for subject in ("/stocksXYZ", "/weather/now", "/other", "/stock"):
        server.push.publish(subject, s=subject)
    reply = await peer.send("refresh")
    data = [e for e in reply.events if e["p_event"] == "data"]
    assert [(e["s"], e["p_sid"]) for e in data] == [("/stocksXYZ", sid), ("/weather/now", sid)]


@pytest_twisted.ensureDeferred
async def test_broadcast_reaches_every_listening_session_without_sid(server):
    """``server.broadcast`` reaches every listening session, subscribed or not, without ``p_sid``."""
    subscribed, bare = Peer(server, "js"), Peer(server, "xml-strict")
    streams = [await subscribed.stream("/any"), await bare.stream()]
    server.push.broadcast(notice="all hands")
    for stream in streams:
        data = (await stream.events_until(3))[2]
        assert data["p_event"] == "data" and data["notice"] == "all hands"
        assert "p_sid" not in data and "p_label" not in data


@pytest_twisted.ensureDeferred
async def test_server_unicast_reaches_one_session_without_sid(server):
    """``server.unicast`` reaches the named session only, with no subject check and no ``p_sid``."""
    target, other = Peer(server, "xml"), Peer(server, "xml")
    target_stream = await target.stream("/t")
    other_stream = await other.stream("/t")
    server.push.unicast(target.id, {"secret": "42"})
    data = (await target_stream.events_until(3))[2]
    assert data["p_event"] == "data" and data["secret"] == "42" and "p_sid" not in data
    server.push.publish("/t", marker="m")
    assert (await other_stream.events_until(3))[2]["marker"] == "m"
