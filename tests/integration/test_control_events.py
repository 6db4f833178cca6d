"""Control events over loopback HTTP in every format, by GET and POST (spec 4, 5, 14.1.5).

Each test runs for ``js``, ``xml`` and ``xml-strict`` and for the three ways
to send a request: GET query, POST ``<event .../>`` body, POST form body.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from pushlet_client import Peer

FORMATS = ["js", "xml", "xml-strict"]
VIAS = ["get", "post-event", "post-form"]

every_format_and_method = pytest.mark.parametrize(
    ("fmt", "via"), [(f, v) for f in FORMATS for v in VIAS])


def fields(event: dict[str, str]) -> set[str]:
    return set(event)


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_join_ack_carries_id_and_format(server, fmt, via):
    """``join`` answers one ``join-ack`` with exactly ``p_id``, ``p_format``, ``p_event`` and ``p_time``."""
    peer = Peer(server, fmt, via)
    reply = await peer.join()
    assert reply.code == 200
    event = reply.event
    assert fields(event) == {"p_event", "p_time", "p_id", "p_format"}
    assert event["p_format"] == fmt
    assert event["p_time"].isdigit()
    assert event["p_id"] in server.sessions


@pytest.mark.parametrize("via", VIAS)
@pytest_twisted.ensureDeferred
async def test_join_without_format_uses_js(server, via):
    """A ``join`` without ``p_format`` gets a ``js`` session (spec 14.1.7)."""
    peer = Peer(server, "js", via)
    reply = await peer.send("join", p_format=None)
    assert reply.event["p_format"] == "js"
    assert server.sessions[peer.id].format == "js"


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_format_is_fixed_at_join(server, fmt, via):
    """A later ``p_format`` is ignored: every response of a session uses its join format."""
    peer = Peer(server, fmt, via)
    await peer.join()
    other = {"js": "xml", "xml": "xml-strict", "xml-strict": "js"}[fmt]
    reply = await peer.send("hb", p_format=other)
    assert reply.event["p_event"] == "hb-ack"


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_subscribe_ack_with_and_without_label(server, fmt, via):
    """``subscribe`` answers ``subscribe-ack`` with ``p_id``, ``p_subject``, ``p_sid`` and ``p_label`` only
    when given."""
    peer = Peer(server, fmt, via)
    await peer.join()
    plain = (await peer.send("subscribe", p_subject="/stocks/aex")).event
    assert fields(plain) == {"p_event", "p_time", "p_id", "p_subject", "p_sid"}
    assert plain["p_event"] == "subscribe-ack"
    assert plain["p_id"] == peer.id and plain["p_subject"] == "/stocks/aex"
    labelled = (await peer.send("subscribe", p_subject="/a,/b", p_label="my label")).event
    assert fields(labelled) == {"p_event", "p_time", "p_id", "p_subject", "p_sid", "p_label"}
    assert labelled["p_subject"] == "/a,/b" and labelled["p_label"] == "my label"
    assert labelled["p_sid"] != plain["p_sid"]
    assert set(server.sessions[peer.id].subscriptions) == {plain["p_sid"], labelled["p_sid"]}


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_unsubscribe_one_sid(server, fmt, via):
    """``unsubscribe`` with ``p_sid`` removes that subscription and echoes ``p_sid``, ``p_subject``,
    ``p_label``."""
    peer = Peer(server, fmt, via)
    await peer.join()
    keep = (await peer.send("subscribe", p_subject="/keep")).event["p_sid"]
    sid = (await peer.send("subscribe", p_subject="/gone", p_label="L")).event["p_sid"]
    event = (await peer.send("unsubscribe", p_sid=sid)).event
    assert event == {"p_event": "unsubscribe-ack", "p_time": event["p_time"], "p_id": peer.id,
                     "p_sid": sid, "p_subject": "/gone", "p_label": "L"}
    assert set(server.sessions[peer.id].subscriptions) == {keep}


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_unsubscribe_without_sid_removes_all(server, fmt, via):
    """``unsubscribe`` without ``p_sid`` removes every subscription and answers with ``p_id`` only."""
    peer = Peer(server, fmt, via)
    await peer.join()
    await peer.send("subscribe", p_subject="/a")
    await peer.send("subscribe", p_subject="/b")
    event = (await peer.send("unsubscribe")).event
    assert fields(event) == {"p_event", "p_time", "p_id"}
    assert event["p_event"] == "unsubscribe-ack" and event["p_id"] == peer.id
    assert server.sessions[peer.id].subscriptions == {}


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_publish_ack_and_data_copy(server, fmt, via):
    """``publish`` answers a bare ``publish-ack``; subscribers get ``data`` with ``p_from`` and every
    parameter."""
    receiver = Peer(server, "xml-strict")
    stream = await receiver.stream("/chat")
    peer = Peer(server, fmt, via)
    await peer.join()
    reply = await peer.send("publish", p_subject="/chat/room", msg="hello", user="ann")
    assert fields(reply.event) == {"p_event", "p_time"}
    assert reply.event["p_event"] == "publish-ack"
    data = (await stream.events_until(3))[2]
    assert data["p_event"] == "data"
    assert data["p_subject"] == "/chat/room"
    assert data["p_from"] == peer.id and data["p_id"] == peer.id
    assert data["msg"] == "hello" and data["user"] == "ann"
    assert data["p_seq"] == "2"
    assert data["p_sid"] == next(iter(server.sessions[receiver.id].subscriptions))


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_publish_keeps_client_time(server, fmt, via):
    """A publisher's own ``p_time`` replaces the server's in the data event (spec 2.2)."""
    receiver = Peer(server, "xml")
    stream = await receiver.stream("/t")
    peer = Peer(server, fmt, via)
    await peer.join()
    await peer.send("publish", p_subject="/t", p_time="12345")
    assert (await stream.events_until(3))[2]["p_time"] == "12345"


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_publish_unicast_with_p_to(server, fmt, via):
    """A ``publish`` with ``p_to`` reaches only that session, without subject check and without ``p_sid``."""
    target, bystander = Peer(server, "js"), Peer(server, "js")
    target_stream = await target.stream("/nothing-matching")
    bystander_stream = await bystander.stream("/u")
    peer = Peer(server, fmt, via)
    await peer.join()
    reply = await peer.send("publish", p_subject="/u", p_to=target.id, note="for you")
    assert reply.event["p_event"] == "publish-ack"
    data = (await target_stream.events_until(3))[2]
    assert data["p_event"] == "data" and data["note"] == "for you"
    assert data["p_to"] == target.id and data["p_from"] == peer.id
    assert "p_sid" not in data
    await peer.send("publish", p_subject="/u", marker="multicast")
    seen = (await bystander_stream.events_until(3))[2]
    assert seen["marker"] == "multicast", "the unicast must not have reached the bystander"


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_publish_unicast_to_unknown_id_is_dropped(server, fmt, via):
    """A unicast to an unknown session id is acknowledged and dropped."""
    peer = Peer(server, fmt, via)
    await peer.join()
    received = server.push.dispatcher.stats.delivered
    reply = await peer.send("publish", p_subject="/u", p_to="nobody")
    assert reply.event["p_event"] == "publish-ack"
    assert server.push.dispatcher.stats.delivered == received


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_hb_ack(server, fmt, via):
    """``hb`` answers a bare ``hb-ack`` and renews the lease."""
    peer = Peer(server, fmt, via)
    await peer.join()
    session = server.sessions[peer.id]
    session.last_active -= 100
    reply = await peer.send("hb")
    assert reply.event == {"p_event": "hb-ack", "p_time": reply.event["p_time"]}
    assert session.last_active > server.push.clock.seconds() - 5


@every_format_and_method
@pytest_twisted.ensureDeferred
async def test_leave_ack_ends_session(server, fmt, via):
    """``leave`` answers ``leave-ack`` with ``p_id``; the id is then invalid."""
    peer = Peer(server, fmt, via)
    await peer.join()
    await peer.send("subscribe", p_subject="/x")
    reply = await peer.send("leave")
    assert reply.event == {"p_event": "leave-ack", "p_time": reply.event["p_time"], "p_id": peer.id}
    assert peer.id not in server.sessions
    again = await peer.send("hb")
    assert again.code == 400
    assert f"Invalid or expired id: {peer.id}" in again.text
