"""Stream mode on an injected clock: heartbeats, leases, disconnects, slow consumers (spec 7.2, 14.2)."""

from __future__ import annotations

import pytest
from treq.testing import StubTreq
from twisted.logger import capturedLogs
from webfakes import make_server, parse_events, session_id, stream

from pushpy.core.sessions import EndReason

READ_TIMEOUT = 20.0  # queue.read.timeout.millis default, in seconds


def record_ends(server) -> list[tuple[str, EndReason]]:
    ends: list[tuple[str, EndReason]] = []
    server.dispatcher.on_end.append(lambda session, reason: ends.append((session.id, reason)))
    return ends


def test_stream_opens_with_ack_then_hb_seq_1():
    """A stream answers 200 with no-cache headers, the ack and at once an ``hb`` with ``p_seq=1``."""
    server, reactor = make_server()
    client = stream(server)
    assert client.code == 200
    assert client.header(b"Cache-Control") == [b"no-store, no-cache, must-revalidate",
                                               b"post-check=0, pre-check=0"]
    events = client.events()
    assert [e["p_event"] for e in events] == ["join-listen-ack", "hb"]
    assert events[0]["p_mode"] == "stream"
    assert "p_seq" not in events[0]
    assert events[1]["p_seq"] == "1"
    assert not client.finished


def test_stream_sends_heartbeat_after_read_timeout():
    """After ``queue.read.timeout.millis`` without data an ``hb`` with the next ``p_seq`` is written."""
    server, reactor = make_server()
    client = stream(server)
    writes = len(client.writes)
    reactor.advance(READ_TIMEOUT - 0.01)
    assert len(client.writes) == writes
    reactor.advance(0.01)
    assert len(client.writes) == writes + 1
    hb = parse_events(client.writes[-1])
    assert hb == [{"p_event": "hb", "p_time": "20", "p_seq": "2"}]
    reactor.advance(READ_TIMEOUT)
    assert parse_events(client.writes[-1])[0]["p_seq"] == "3"


def test_data_resets_heartbeat_timer():
    """Data written to a stream pushes the next ``hb`` a full read timeout later."""
    server, reactor = make_server()
    client = stream(server)
    reactor.advance(10)
    server.publish("/news/a", text="hello")
    reactor.advance(0)
    assert client.events()[-1]["p_event"] == "data"
    assert client.events()[-1]["p_seq"] == "2"
    reactor.advance(READ_TIMEOUT - 1)  # t = 29: the hb due at 20 was moved to 30
    assert client.names() == ["join-listen-ack", "hb", "data"]
    reactor.advance(1)
    assert client.events()[-1] == {"p_event": "hb", "p_time": "30", "p_seq": "3"}


def test_heartbeats_renew_lease_while_stream_is_open():
    """A session whose stream stays open outlives many lease periods: each ``hb`` renews it."""
    server, reactor = make_server()
    server.startService()
    client = stream(server)
    sid = session_id(client)
    reactor.pump([READ_TIMEOUT] * 30)  # ten minutes, twice the 5-minute lease
    assert sid in server.dispatcher.sessions
    assert server.dispatcher.sessions[sid].last_active == 600
    assert client.names().count("hb") == 31
    assert not client.finished
    server.stopService()
    _settle(server)


def test_kept_session_expires_lease_after_stream_closes():
    """With ``session_end_on_disconnect`` off, a session expires 5 minutes after its stream closed."""
    server, reactor = make_server(session_end_on_disconnect=False)
    ends = record_ends(server)
    server.startService()
    client = stream(server)
    sid = session_id(client)
    reactor.pump([5] * 7)  # t = 35, last hb at 20
    client.disconnect()
    assert sid in server.dispatcher.sessions
    assert not server.dispatcher.sessions[sid].channels
    reactor.pump([1] * 299)  # t = 334
    assert ends == []
    reactor.pump([1] * 2)  # t = 336: lease ended at 335, swept within session.check.millis
    assert ends == [(sid, EndReason.EXPIRED)]
    server.stopService()
    _settle(server)


def test_disconnect_ends_session_and_cancels_its_timer():
    """A client that goes away ends its session with DISCONNECT at once and leaves no delayed call."""
    server, reactor = make_server()
    ends = record_ends(server)
    client = stream(server)
    sid = session_id(client)
    session = server.dispatcher.sessions[sid]
    assert len(reactor.getDelayedCalls()) == 1
    client.disconnect()
    assert ends == [(sid, EndReason.DISCONNECT)]
    assert session.channels == []
    assert sid not in server.dispatcher.sessions
    assert reactor.getDelayedCalls() == []
    writes = len(client.writes)
    server.broadcast(text="late")
    reactor.advance(READ_TIMEOUT * 2)
    assert len(client.writes) == writes


def test_disconnect_keeps_session_when_configured():
    """With ``session_end_on_disconnect`` off, a disconnect only detaches the channel."""
    server, reactor = make_server(session_end_on_disconnect=False)
    ends = record_ends(server)
    client = stream(server)
    sid = session_id(client)
    client.disconnect()
    assert ends == []
    assert server.dispatcher.sessions[sid].channels == []
    assert reactor.getDelayedCalls() == []


def test_paused_stream_keeps_events_queued_then_nacks_dropped_count():
    """Events stay queued while the transport pauses a stream; on resume the drop-oldest ``nack`` leads."""
    server, reactor = make_server()
    client = stream(server)
    sid = session_id(client)
    producer = client.producer
    assert producer is not None
    producer.pauseProducing()
    writes = len(client.writes)
    for n in range(1, 31):
        server.publish("/news/a", n=str(n))
    reactor.advance(0)
    assert len(client.writes) == writes
    session = server.dispatcher.sessions[sid]
    assert len(session.queue) == 23  # queue.size 24, one slot kept free
    producer.resumeProducing()
    reactor.advance(0)
    assert len(client.writes) == writes + 1
    events = parse_events(client.writes[-1])
    assert events[0]["p_event"] == "nack"
    assert events[0]["p_reason"] == "queue overflow: 7 events dropped"
    assert events[0]["p_seq"] == "2"
    assert [e["n"] for e in events[1:]] == [str(n) for n in range(8, 31)]
    assert [e["p_seq"] for e in events] == [str(n) for n in range(2, 26)]
    assert sid in server.dispatcher.sessions


def test_abort_policy_writes_abort_then_finishes_paused_stream():
    """With the ``abort`` policy an overflow ends the session: ``abort`` is written, then the end."""
    server, reactor = make_server(queue_overflow_policy="abort")
    ends = record_ends(server)
    client = stream(server)
    sid = session_id(client)
    client.producer.pauseProducing()
    for n in range(23):
        server.publish("/news/a", n=str(n))
    assert not client.finished
    with capturedLogs() as logs:
        server.publish("/news/a", n="overflow")
    assert ends == [(sid, EndReason.OVERFLOW)]
    assert client.finished
    assert client.events()[-1] == {"p_event": "abort", "p_time": "0", "p_seq": "2"}
    assert not [e for e in logs if e.get("log_failure") is not None]
    assert client.request.producer is None
    assert reactor.getDelayedCalls() == []


def test_stream_over_http_delivers_chunks_and_notices_client_leaving():
    """Over a real HTTP channel (StubTreq) events arrive as flushed; a client walking off ends the session."""
    server, reactor = make_server()
    ends = record_ends(server)
    stub = StubTreq(server.pushlet_resource())
    responses: list = []
    stub.get("http://example.com/pushlet/pushlet.srv"
             "?p_event=join-listen&p_format=xml&p_subject=/news").addBoth(responses.append)
    stub.flush()
    [response] = responses
    assert response.code == 200
    chunks: list[bytes] = []
    leave: list[bool] = []

    def collector(data: bytes) -> None:
        chunks.append(data)
        if leave:
            raise ValueError("client walks away")

    outcome: list = []
    stub.collect(response, collector).addBoth(outcome.append)
    stub.flush()
    assert [e["p_event"] for e in parse_events(b"".join(chunks))] == ["join-listen-ack", "hb"]
    sid = parse_events(chunks[0])[0]["p_id"]
    server.publish("/news/a", n="1")
    reactor.advance(0)
    stub.flush()
    assert parse_events(chunks[-1]) == [
        {"p_event": "data", "p_time": "0", "n": "1", "p_subject": "/news/a", "p_seq": "2",
         "p_sid": parse_events(chunks[0])[0]["p_sid"]}]
    assert outcome == []
    leave.append(True)
    server.publish("/news/a", n="2")
    reactor.advance(0)
    stub.flush()
    assert len(outcome) == 1
    assert ends == [(sid, EndReason.DISCONNECT)]
    assert reactor.getDelayedCalls() == []


@pytest.mark.parametrize("policy", ["drop-oldest", "abort"])
def test_burst_larger_than_queue_reaches_reading_stream_without_loss(policy):
    """A reading stream gets a burst larger than its queue in full: the queue is written once it fills."""
    server, reactor = make_server(queue_overflow_policy=policy)
    client = stream(server)
    sid = session_id(client)
    writes = len(client.writes)
    for n in range(30):
        server.publish("/news/a", n=str(n))
    reactor.advance(0)
    assert len(client.writes) == writes + 2
    data = client.events()[2:]
    assert [e["p_event"] for e in data] == ["data"] * 30
    assert [e["n"] for e in data] == [str(n) for n in range(30)]
    assert sid in server.dispatcher.sessions
    assert not client.finished


def _settle(server):
    """Let the turn that ``stopService`` waits for (so aborts reach the sockets) pass."""
    server.clock.advance(0)
