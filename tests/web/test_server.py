"""PushServer as a service on an injected reactor: sweeper, shutdown, thread hand-off, publishing API."""

from __future__ import annotations

import threading

import pytest
from twisted.logger import capturedLogs
from webfakes import (
    document_events,
    make_server,
    open_request,
    pull_session,
    refresh,
    session_id,
    stream,
)

from pushpy.core.sessions import EndReason
from pushpy.errors import UsageError


def test_sweeper_ends_expired_session_within_check_interval():
    """The sweeper, a LoopingCall on the injected clock, ends a session at the first check after its lease."""
    server, reactor = make_server(session_check_millis=5000)
    ended: list[tuple[float, EndReason]] = []
    server.dispatcher.on_end.append(lambda session, reason: ended.append((reactor.seconds(), reason)))
    server.startService()
    reactor.advance(2)
    joined = open_request(server, "p_event=join&p_format=xml")
    sid = session_id(joined)
    reactor.pump([1] * 299)  # t = 301: lease runs until 302
    assert sid in server.dispatcher.sessions
    reactor.pump([1] * 10)
    assert ended == [(305, EndReason.EXPIRED)]
    assert sid not in server.dispatcher.sessions
    server.stopService()
    _settle(server)


def test_every_request_renews_the_lease():
    """A control request renews the session lease, so the sweeper keeps the session."""
    server, reactor = make_server()
    server.startService()
    sid = session_id(open_request(server, "p_event=join&p_format=xml"))
    reactor.pump([10] * 20)  # t = 200
    assert open_request(server, f"p_event=hb&p_id={sid}").names() == ["hb-ack"]
    reactor.pump([10] * 29)  # t = 490: 290 s after the hb
    assert sid in server.dispatcher.sessions
    reactor.pump([10] * 2)  # t = 510
    assert sid not in server.dispatcher.sessions
    server.stopService()
    _settle(server)


def test_stop_service_aborts_every_open_channel_and_leaves_no_delayed_calls():
    """Stopping the service aborts and ends every stream and pending refresh, and cancels every timer."""
    server, reactor = make_server()
    server.startService()
    streams = [stream(server, subject=f"/s{n}") for n in range(3)]
    pending = refresh(server, pull_session(server))
    joined = session_id(open_request(server, "p_event=join&p_format=xml"))
    reactor.advance(5)
    server.publish("/s0/x", n="queued")  # a flush is pending at shutdown
    assert len(reactor.getDelayedCalls()) == 4  # sweeper, stats publisher, shared timer, flush
    with capturedLogs() as logs:
        server.stopService()
        _settle(server)
    for client in streams:
        assert client.finished
        assert client.events()[-1]["p_event"] == "abort"
    assert pending.finished
    assert [e["p_event"] for e in document_events(pending.body)] == ["refresh-ack", "abort"]
    assert joined not in server.dispatcher.sessions
    assert server.dispatcher.sessions == {}
    assert reactor.getDelayedCalls() == []
    assert not [e for e in logs if e.get("log_failure") is not None]


def test_publish_from_thread_goes_through_call_from_thread():
    """``publish_from_thread`` hands the publish to the reactor thread via ``callFromThread``."""
    server, reactor = make_server()
    client = stream(server)
    worker = threading.Thread(target=server.publish_from_thread, args=("/news/a",),
                              kwargs={"fields": {"n": "1"}})
    worker.start()
    worker.join()
    reactor.advance(0)
    assert client.names() == ["join-listen-ack", "hb"]
    assert len(reactor.thread_calls) == 1
    reactor.run_thread_calls()
    reactor.advance(0)
    assert client.names() == ["join-listen-ack", "hb", "data"]
    assert client.events()[-1]["n"] == "1"


def test_call_from_thread_runs_function_in_reactor_thread():
    """``call_from_thread`` queues the call on the reactor instead of running it in the caller's thread."""
    server, reactor = make_server()
    calls: list[tuple] = []
    server.call_from_thread(lambda *args, **kwargs: calls.append((args, kwargs)), 1, k=2)
    assert calls == []
    reactor.run_thread_calls()
    assert calls == [((1,), {"k": 2})]


@pytest.mark.parametrize("name", ["a:b", "1st", "with space", "quote\"", ""])
def test_publish_rejects_invalid_field_names(name):
    """A field name that cannot be written in every format raises UsageError and nothing is delivered."""
    server, reactor = make_server()
    client = stream(server)
    received = server.dispatcher.stats.received
    with pytest.raises(UsageError):
        server.publish("/news/a", {name: "x"})
    with pytest.raises(UsageError):
        server.broadcast({name: "x"})
    reactor.advance(0)
    assert server.dispatcher.stats.received == received
    assert client.names() == ["join-listen-ack", "hb"]


def test_multicast_reaches_matching_sessions_with_their_sid():
    """``publish`` reaches only sessions subscribed to a prefix of the subject, each with its ``p_sid``."""
    server, reactor = make_server()
    news, sports = stream(server, "/news"), stream(server, "/sports")
    server.publish("/news/world", n="1")
    reactor.advance(0)
    [data] = [e for e in news.events() if e["p_event"] == "data"]
    assert data["p_sid"] == news.events()[0]["p_sid"]
    assert data["p_subject"] == "/news/world"
    assert "data" not in sports.names()


def test_broadcast_reaches_every_session_without_sid():
    """``broadcast`` reaches every listening session, subscribed or not, without ``p_sid``."""
    server, reactor = make_server()
    subscribed = stream(server, "/news")
    bare = open_request(server, "p_event=join-listen&p_format=xml&p_mode=stream")
    server.broadcast(text="all")
    server.broadcast({"p_event": "notice"}, text="custom")
    reactor.advance(0)
    for client in (subscribed, bare):
        events = client.events()[2:]
        assert [e["p_event"] for e in events] == ["data", "notice"]
        assert all("p_sid" not in e for e in events)
        assert [e["text"] for e in events] == ["all", "custom"]


def test_unicast_reaches_only_its_target():
    """``unicast`` reaches the named session only; an unknown id is dropped."""
    server, reactor = make_server()
    first, second = stream(server, "/news"), stream(server, "/news")
    server.unicast(session_id(second), {"text": "for you"})
    server.unicast("no-such-session", text="lost")
    reactor.advance(0)
    assert "data" not in first.names()
    [data] = [e for e in second.events() if e["p_event"] == "data"]
    assert data["text"] == "for you"
    assert "p_sid" not in data


def test_session_limit_per_address_frees_slot_after_address_change():
    """A session that ends after its client's address changed frees the slot of the address it joined from."""
    server, reactor = make_server(limit_sessions_per_address=1)
    sid = session_id(open_request(server, "p_event=join&p_format=xml", peer="10.0.0.1"))
    refused = open_request(server, "p_event=join&p_format=xml", peer="10.0.0.1")
    assert refused.code == 429
    assert open_request(server, f"p_event=hb&p_id={sid}", peer="10.0.0.2").names() == ["hb-ack"]
    assert open_request(server, f"p_event=leave&p_id={sid}", peer="10.0.0.2").names() == ["leave-ack"]
    again = open_request(server, "p_event=join&p_format=xml", peer="10.0.0.1")
    assert again.code == 200
    assert again.names() == ["join-ack"]


def _settle(server):
    """Let the turn that ``stopService`` waits for (so aborts reach the sockets) pass."""
    server.clock.advance(0)
