"""Pull and poll refreshes on an injected clock (spec 7.3, 7.4, 14.1.17, 14.1.21, 14.1.22, 14.2.2)."""

from __future__ import annotations

import random

from webfakes import document_events, make_server, open_request, pull_session, refresh

from pushpy.core.sessions import EndReason

READ_TIMEOUT = 20.0


def names(events: list[dict[str, str]]) -> list[str]:
    return [event["p_event"] for event in events]


def test_pull_listen_answers_ack_and_refresh_only():
    """The first pull response is one complete document, the ack and ``refresh``, no data, no timer."""
    server, reactor = make_server()
    server.publish("/news/a", n="before")
    first = open_request(server, "p_event=join-listen&p_format=xml-strict&p_mode=pull&p_subject=/news")
    assert first.finished
    events = document_events(first.body)
    assert names(events) == ["join-listen-ack", "refresh"]
    assert events[0]["p_mode"] == "pull"
    sid = events[0]["p_id"]
    assert events[1]["p_url"] == f"/pushlet/pushlet.srv?p_id={sid}&p_event=refresh"
    assert first.header(b"Content-Type") == [b"text/xml;charset=UTF-8"]
    assert first.header(b"Content-Length") == [str(len(first.body)).encode()]
    assert reactor.getDelayedCalls() == []


def test_refresh_waits_while_nothing_is_queued():
    """A pull ``refresh`` with an empty queue writes nothing until an event or the read timeout."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    reactor.advance(READ_TIMEOUT - 0.01)
    assert pending.writes == []
    assert not pending.finished


def test_event_answers_pending_refresh_after_coalescing_turn():
    """Events for a waiting pull session are answered after the turn: ``refresh-ack``, data, ``refresh``."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    reactor.advance(5)
    server.publish("/news/a", n="1")
    server.publish("/news/b", n="2")
    assert pending.writes == []
    reactor.advance(0)
    assert pending.finished
    assert len(pending.writes) == 1
    events = document_events(pending.body)
    assert names(events) == ["refresh-ack", "data", "data", "refresh"]
    assert [e.get("n") for e in events[1:3]] == ["1", "2"]
    assert [e.get("p_seq") for e in events] == [None, "1", "2", None]
    assert events[-1]["p_time"] == "5"
    assert pending.header(b"Content-Length") == [str(len(pending.body)).encode()]
    assert sid in server.dispatcher.sessions
    assert reactor.getDelayedCalls() == []


def test_refresh_timeout_answers_single_hb_then_refresh():
    """After the read timeout a pull ``refresh`` gives ``refresh-ack``, ``hb`` (``p_seq=1``), ``refresh``."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    reactor.advance(READ_TIMEOUT)
    assert pending.finished
    events = document_events(pending.body)
    assert names(events) == ["refresh-ack", "hb", "refresh"]
    assert events[1]["p_seq"] == "1"
    assert events[1]["p_time"] == "20"
    assert reactor.getDelayedCalls() == []


def test_events_queued_between_refreshes_are_answered_at_once():
    """Events published between refreshes are queued and returned by the next ``refresh`` at once."""
    server, reactor = make_server()
    sid = pull_session(server)
    server.publish("/news/a", n="1")
    reactor.advance(3)
    answer = refresh(server, sid)
    assert answer.finished
    assert names(document_events(answer.body)) == ["refresh-ack", "data", "refresh"]


def test_pull_wait_is_drawn_from_configured_range_with_injected_random():
    """``p_wait`` of a pull ``refresh`` comes from the injected ``random.Random``, in the configured range."""
    server, reactor = make_server(rng=random.Random(42), pull_refresh_wait_min_millis=2500,
                                  pull_refresh_wait_max_millis=2600)
    expected = random.Random(42)
    first = open_request(server, "p_event=join-listen&p_format=xml-strict&p_mode=pull&p_subject=/news")
    first_events = document_events(first.body)
    assert first_events[-1]["p_wait"] == str(expected.randint(2500, 2600))
    pending = refresh(server, first_events[0]["p_id"])
    reactor.advance(READ_TIMEOUT)
    wait = document_events(pending.body)[-1]["p_wait"]
    assert wait == str(expected.randint(2500, 2600))
    assert 2500 <= int(wait) <= 2600


def test_poll_refresh_returns_at_once():
    """A poll ``refresh`` answers at once (one ``hb`` if nothing is queued), ``p_wait`` in the poll range."""
    server, reactor = make_server()
    sid = pull_session(server, mode="poll")
    answer = refresh(server, sid)
    assert answer.finished
    events = document_events(answer.body)
    assert names(events) == ["refresh-ack", "hb", "refresh"]
    assert events[1]["p_seq"] == "1"
    assert 6000 <= int(events[-1]["p_wait"]) <= 10000
    server.publish("/news/a", n="1")
    answer = refresh(server, sid)
    assert names(document_events(answer.body)) == ["refresh-ack", "data", "refresh"]
    assert reactor.getDelayedCalls() == []


def test_leave_while_refresh_pending_completes_it_with_refresh():
    """A ``leave`` completes the pending pull response with ``refresh`` (no ``abort``) and leaves no timer."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    reactor.advance(2)
    left = open_request(server, f"p_event=leave&p_id={sid}")
    assert names(document_events(left.body)) == ["leave-ack"]
    assert pending.finished
    assert names(document_events(pending.body)) == ["refresh-ack", "refresh"]
    assert sid not in server.dispatcher.sessions
    assert reactor.getDelayedCalls() == []


def test_expiry_while_refresh_pending_writes_abort_and_document_end():
    """A session that expires with a pull response pending ends it with ``abort`` and ``</pushlet>``."""
    server, reactor = make_server(session_timeout_mins=0.1)  # a 6 s lease, shorter than the read timeout
    ends: list[EndReason] = []
    server.dispatcher.on_end.append(lambda session, reason: ends.append(reason))
    server.startService()
    sid = pull_session(server)
    pending = refresh(server, sid)
    reactor.pump([1] * 5)
    assert not pending.finished
    reactor.pump([1] * 2)
    assert ends == [EndReason.EXPIRED]
    assert pending.finished
    assert pending.body.endswith(b"</pushlet>")
    events = document_events(pending.body)
    assert names(events) == ["refresh-ack", "abort"]
    assert events[1]["p_seq"] == "1"
    server.stopService()
    _settle(server)
    assert reactor.getDelayedCalls() == []


def test_shutdown_while_refresh_pending_writes_abort_and_document_end():
    """Stopping the server ends a pending pull response with ``abort`` and ``</pushlet>``."""
    server, reactor = make_server()
    server.startService()
    sid = pull_session(server)
    pending = refresh(server, sid)
    server.stopService()
    _settle(server)
    assert pending.finished
    assert names(document_events(pending.body)) == ["refresh-ack", "abort"]
    assert reactor.getDelayedCalls() == []


def test_disconnect_of_pending_refresh_ends_session():
    """A client that drops its pending pull request ends the session at once and leaves no timer."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    pending.disconnect()
    assert sid not in server.dispatcher.sessions
    assert reactor.getDelayedCalls() == []


def test_second_concurrent_refresh_gets_events_exactly_once():
    """With two pending refreshes of one session, each event goes to exactly one of them (the later one)."""
    server, reactor = make_server()
    sid = pull_session(server)
    older = refresh(server, sid)
    reactor.advance(1)
    newer = refresh(server, sid)
    server.publish("/news/a", n="1")
    server.publish("/news/a", n="2")
    reactor.advance(0)
    assert newer.finished
    assert not older.finished
    newer_events = document_events(newer.body)
    assert [e["n"] for e in newer_events if e["p_event"] == "data"] == ["1", "2"]
    server.publish("/news/a", n="3")
    reactor.advance(0)
    assert older.finished
    older_events = document_events(older.body)
    assert [e.get("n") for e in older_events if e["p_event"] == "data"] == ["3"]
    assert reactor.getDelayedCalls() == []


def test_burst_larger_than_queue_answers_pending_refresh_when_queue_fills():
    """A burst larger than the queue answers the pending refresh as it fills; the rest waits for the next."""
    server, reactor = make_server()
    sid = pull_session(server)
    pending = refresh(server, sid)
    for n in range(30):
        server.publish("/news/a", n=str(n))
    assert pending.finished
    first = [e["n"] for e in document_events(pending.body) if e["p_event"] == "data"]
    assert first == [str(n) for n in range(23)]
    reactor.advance(3)
    answer = refresh(server, sid)
    rest = [e for e in document_events(answer.body) if e["p_event"] != "refresh"]
    assert [e["p_event"] for e in rest] == ["refresh-ack"] + ["data"] * 7
    assert [e["n"] for e in rest[1:]] == [str(n) for n in range(23, 30)]


def _settle(server):
    """Let the turn that ``stopService`` waits for (so aborts reach the sockets) pass."""
    server.clock.advance(0)
