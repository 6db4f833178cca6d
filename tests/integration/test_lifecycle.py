"""Session lifecycle over loopback HTTP: disconnect, leave, shutdown, expiry, overflow (spec 14.1.22)."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from pushlet_client import Peer
from server_support import eventually, sleep
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.web._newclient import ResponseNeverReceived

FORMATS = ["js", "xml", "xml-strict"]
every_format = pytest.mark.parametrize("fmt", FORMATS)
SLOW_READ = {"queue_read_timeout_millis": 20_000}
HB = {"queue_read_timeout_millis": 300}


def scheduler_timers(server) -> list:
    """Active reactor timers owned by the server's channel scheduler."""
    scheduler = server.push.scheduler
    return [call for call in reactor.getDelayedCalls()
            if call.active() and getattr(call.func, "__self__", None) is scheduler]


def scheduler_idle(server) -> bool:
    return not scheduler_timers(server) and server.push.scheduler._deadlines.next() is None


# -- disconnect ----------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_stream_disconnect_ends_session_at_once(serve, fmt):
    """A streaming client that goes away is noticed at once: its session ends and no channel timer is left."""
    server = serve(**SLOW_READ)
    peer = Peer(server, fmt)
    stream = await peer.stream("/d")
    assert scheduler_timers(server), "the stream's heartbeat deadline should be armed"
    started = time.monotonic()
    stream.disconnect()
    await eventually(lambda: peer.id not in server.sessions, timeout=5)
    assert time.monotonic() - started < 5  # at once: the lease is minutes, the read timeout 20 s
    assert scheduler_idle(server)
    assert server.push.dispatcher.index.match("/d") == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_pending_refresh_disconnect_ends_session(serve, fmt):
    """A pull client that drops its pending ``refresh`` is noticed at once and its wait timer cancelled."""
    server = serve(**SLOW_READ)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/d")
    request = server.raw(f"p_event=refresh&p_id={peer.id}".encode())
    request.addErrback(lambda failure: failure.trap(CancelledError, ResponseNeverReceived))
    await eventually(lambda: bool(server.sessions[peer.id].channels), timeout=1)
    assert scheduler_timers(server), "the refresh's read timeout should be armed"
    request.cancel()  # no response yet: the agent aborts the connection
    await eventually(lambda: peer.id not in server.sessions, timeout=5)
    assert scheduler_idle(server)


@pytest_twisted.ensureDeferred
async def test_disconnect_of_one_stream_leaves_others_running(server):
    """Dropping one stream does not disturb another session's stream."""
    gone, staying = Peer(server, "xml"), Peer(server, "xml")
    gone_stream = await gone.stream("/both")
    staying_stream = await staying.stream("/both")
    gone_stream.disconnect()
    await eventually(lambda: gone.id not in server.sessions, timeout=5)
    server.push.publish("/both", n="1")
    data = [e for e in (await staying_stream.wait(
        lambda s: any(e["p_event"] == "data" for e in s.events))).events if e["p_event"] == "data"]
    assert data[0]["n"] == "1"


# -- leave ---------------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_leave_completes_pending_refresh_with_refresh(serve, fmt):
    """``leave`` while a pull ``refresh`` waits completes it at once with ``refresh-ack`` and ``refresh``
    (not ``abort``)."""
    server = serve(**SLOW_READ)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/l")
    pending = Deferred.fromCoroutine(peer.send("refresh"))
    await eventually(lambda: bool(server.sessions[peer.id].channels), timeout=1)
    started = time.monotonic()
    leave = await peer.send("leave")
    assert leave.event["p_event"] == "leave-ack"
    reply = await pending
    assert time.monotonic() - started < 5  # not at the 20 s read timeout
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "refresh"]
    assert scheduler_idle(server)


@every_format
@pytest_twisted.ensureDeferred
async def test_leave_ends_open_stream(serve, fmt):
    """``leave`` ends the session's open stream promptly and cleanly."""
    server = serve(**SLOW_READ)
    peer = Peer(server, fmt)
    stream = await peer.stream("/l")
    assert (await peer.send("leave")).event["p_event"] == "leave-ack"
    await stream.end(timeout=1)
    assert stream.clean
    assert scheduler_idle(server)


# -- shutdown --------------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_shutdown_writes_abort_to_streams(serve, fmt):
    """``stopService`` writes ``abort`` (numbered on) to every open stream, then ends it cleanly."""
    server = serve(**SLOW_READ)
    first, second = Peer(server, fmt), Peer(server, fmt)
    streams = [await first.stream("/x"), await second.stream()]
    server.push.publish("/x", n="1")
    await streams[0].events_until(3)
    server.push.stopService()
    for stream, seq in zip(streams, ("3", "2"), strict=True):
        await stream.end()
        assert stream.clean
        last = stream.events[-1]
        assert last == {"p_event": "abort", "p_time": last["p_time"], "p_seq": seq}
    assert server.sessions == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_shutdown_aborts_pending_refresh(serve, fmt):
    """``stopService`` answers a waiting pull ``refresh`` with ``refresh-ack`` and ``abort``, a complete
    response."""
    server = serve(**SLOW_READ)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/x")
    pending = Deferred.fromCoroutine(peer.send("refresh"))
    await eventually(lambda: bool(server.sessions[peer.id].channels), timeout=1)
    server.push.stopService()
    reply = await pending
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "abort"]
    assert reply.events[1]["p_seq"] == "1"
    if fmt == "xml-strict":
        assert reply.body.endswith(b"</pushlet>")


# -- expiry ----------------------------------------------------------------------

EXPIRY = {"session_timeout_mins": 0.01, "session_check_millis": 50}  # a 0.6 s lease


@every_format
@pytest_twisted.ensureDeferred
async def test_joined_session_expires(serve, fmt):
    """A joined session without requests expires after its lease; then its id is ``Invalid or expired``."""
    server = serve(**EXPIRY)
    peer = Peer(server, fmt)
    await peer.join()
    await sleep(0.3)
    assert (await peer.send("hb")).event["p_event"] == "hb-ack"  # renews the lease
    await sleep(0.4)
    assert peer.id in server.sessions
    await eventually(lambda: peer.id not in server.sessions, timeout=1.5)
    reply = await peer.send("hb")
    assert reply.code == 400
    assert f"Invalid or expired id: {peer.id}" in reply.text


@every_format
@pytest_twisted.ensureDeferred
async def test_pull_session_that_stops_refreshing_expires(serve, fmt):
    """A pull session whose client stops refreshing expires; its next ``refresh`` is HTTP 400."""
    server = serve(**EXPIRY)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/e")
    await eventually(lambda: peer.id not in server.sessions, timeout=1.5)
    reply = await peer.send("refresh")
    assert reply.code == 400
    assert f"Invalid or expired id: {peer.id}" in reply.text
    assert server.push.dispatcher.index.match("/e") == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_expiry_writes_abort_on_open_stream(serve, fmt):
    """A stream whose heartbeat is slower than the lease expires with ``abort`` and ends cleanly."""
    server = serve(**EXPIRY, queue_read_timeout_millis=5_000)
    peer = Peer(server, fmt)
    stream = await peer.stream("/e")
    await stream.end(timeout=2)
    assert stream.clean
    assert [e["p_event"] for e in stream.events] == ["listen-ack", "hb", "abort"]
    assert stream.events[-1]["p_seq"] == "2"
    assert peer.id not in server.sessions


@every_format
@pytest_twisted.ensureDeferred
async def test_expiry_writes_abort_on_pending_refresh(serve, fmt):
    """A pull ``refresh`` waiting longer than the lease is answered with ``refresh-ack`` and ``abort`` on
    expiry."""
    server = serve(**EXPIRY, queue_read_timeout_millis=5_000)
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/e")
    reply = await peer.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "abort"]
    assert peer.id not in server.sessions


# -- queue overflow --------------------------------------------------------------

@every_format
@pytest_twisted.ensureDeferred
async def test_pull_queue_overflow_drops_oldest_with_one_nack(server, fmt):
    """Overflowing a pull queue gives one ``nack`` ``queue overflow: 7 events dropped`` then the newest 23
    events."""
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="pull", p_subject="/o")
    for n in range(30):
        server.push.publish("/o", n=n)
    reply = await peer.send("refresh")
    events = reply.events
    assert events[0]["p_event"] == "refresh-ack"
    nack = events[1]
    assert nack == {"p_event": "nack", "p_time": nack["p_time"], "p_id": peer.id,
                    "p_reason": "queue overflow: 7 events dropped", "p_seq": "1"}
    data = events[2:-1]
    assert [e["n"] for e in data] == [str(n) for n in range(7, 30)]
    assert [e["p_seq"] for e in data] == [str(n) for n in range(2, 25)]
    assert events[-1]["p_event"] == "refresh"
    server.push.publish("/o", n="after")
    reply = await peer.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "data", "refresh"]
    assert reply.events[1]["n"] == "after" and reply.events[1]["p_seq"] == "1"


@pytest_twisted.ensureDeferred
async def test_pull_queue_overflow_over_http(server):
    """Events published over HTTP beyond the queue size are dropped oldest first, the session intact."""
    peer = Peer(server, "xml-strict")
    await peer.send("join-listen", p_mode="pull", p_subject="/o")
    publisher = Peer(server, "xml")
    await publisher.join()
    for n in range(25):
        await publisher.send("publish", p_subject="/o", n=str(n))
    events = (await peer.send("refresh")).events
    assert events[1]["p_reason"] == "queue overflow: 2 events dropped"
    assert [e["n"] for e in events[2:-1]] == [str(n) for n in range(2, 25)]
    assert peer.id in server.sessions


@pytest_twisted.ensureDeferred
async def test_full_queue_is_written_at_once_to_a_waiting_refresh(serve):
    """A burst that fills the queue is written to a waiting ``refresh`` at once; the rest waits for the next
    one."""
    server = serve(**SLOW_READ)
    peer = Peer(server, "xml-strict")
    await peer.send("join-listen", p_mode="pull", p_subject="/o")
    pending = Deferred.fromCoroutine(peer.send("refresh"))
    await eventually(lambda: bool(server.sessions[peer.id].channels), timeout=1)
    for n in range(30):
        server.push.publish("/o", n=n)
    first = (await pending).events
    assert [e["n"] for e in first[1:-1]] == [str(n) for n in range(23)]
    second = (await peer.send("refresh")).events
    assert [e["p_event"] for e in second] == ["refresh-ack"] + ["data"] * 7 + ["refresh"]
    assert [e["n"] for e in second[1:-1]] == [str(n) for n in range(23, 30)]


@pytest_twisted.ensureDeferred
async def test_abort_overflow_policy_ends_session(serve):
    """With ``queue.overflow.policy=abort`` an overflowing pull session ends; its next ``refresh`` is HTTP
    400."""
    server = serve(queue_overflow_policy="abort")
    peer = Peer(server, "xml-strict")
    await peer.send("join-listen", p_mode="pull", p_subject="/o")
    for n in range(24):
        server.push.publish("/o", n=n)
    assert peer.id not in server.sessions
    reply = await peer.send("refresh")
    assert reply.code == 400
    assert f"Invalid or expired id: {peer.id}" in reply.text


@pytest.mark.parametrize(("mode", "key"), [("pull", "pull_refresh_timeout_millis"),
                                           ("poll", "poll_refresh_timeout_millis")])
@pytest_twisted.ensureDeferred
async def test_liveness_ends_session_that_stopped_refreshing(serve, mode, key):
    """An event for a pull/poll session idle longer than its refresh timeout ends it (spec 7.6); active ones
    live."""
    server = serve(**{key: 200}, **HB)
    idle, active = Peer(server, "xml"), Peer(server, "xml")
    await idle.send("join-listen", p_mode=mode, p_subject="/live")
    await active.send("join-listen", p_mode=mode, p_subject="/live")
    await sleep(0.3)
    await active.send("refresh")
    server.push.publish("/live", n="1")
    assert idle.id not in server.sessions
    assert active.id in server.sessions
    assert (await idle.send("refresh")).code == 400
    reply = await active.send("refresh")
    assert [e.get("n") for e in reply.events if e["p_event"] == "data"] == ["1"]
