"""Bad input: the request errors of spec 2.3, ``nack`` answers (fix 14.2.5) and limits.

Every refusal is either an HTTP 4xx with a clear message or an HTTP 200
``nack`` in the session's format; none ends the session or disturbs others.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from pushlet_client import Peer, parse

FORMATS = ["js", "xml", "xml-strict"]
every_format = pytest.mark.parametrize("fmt", FORMATS)


def error_text(response) -> str:
    return response.body.decode("utf-8")


@pytest.mark.parametrize("query", [b"", b"p_event=", b"p_id=abc", b"p_format=xml"])
@pytest_twisted.ensureDeferred
async def test_missing_event_is_400(server, query):
    """A request without ``p_event`` (or with an empty one) is HTTP 400 ``No eventType specified``."""
    response = await server.raw_http(query)
    assert response.code == 400
    assert "No eventType specified" in error_text(response)


@pytest_twisted.ensureDeferred
async def test_missing_event_in_post_is_400(server):
    """A POST ``<event/>`` body without ``p_event`` is HTTP 400 ``No eventType specified``."""
    response = await server.raw_http(b"", method=b"POST", body=b'<event p_format="xml" />')
    assert response.code == 400
    assert "No eventType specified" in error_text(response)


@pytest.mark.parametrize("event", ["hb", "listen", "refresh", "publish", "leave", "nonsense"])
@pytest_twisted.ensureDeferred
async def test_missing_id_is_400(server, event):
    """Every event but ``join*`` without ``p_id`` is HTTP 400 ``No id specified``."""
    response = await server.raw_http(f"p_event={event}".encode())
    assert response.code == 400
    assert "No id specified" in error_text(response)


@pytest_twisted.ensureDeferred
async def test_unknown_id_is_400(server):
    """An unknown ``p_id`` is HTTP 400 ``Invalid or expired id: <id>``, the id HTML-escaped in the page."""
    response = await server.raw_http(b"p_event=hb&p_id=nosuchsession")
    assert response.code == 400
    assert "Invalid or expired id: nosuchsession" in error_text(response)
    response = await server.raw_http(b"p_event=hb&p_id=%3Cscript%3Ex")
    assert response.code == 400
    assert "Invalid or expired id: &lt;script&gt;x" in error_text(response)
    assert b"<script>" not in response.body


@pytest.mark.parametrize("fmt", ["ser", "json", "XML"])
@pytest.mark.parametrize("event", ["join", "join-listen"])
@pytest_twisted.ensureDeferred
async def test_unsupported_format_is_400(server, fmt, event):
    """A ``join`` or ``join-listen`` with an unsupported ``p_format`` is HTTP 400 ``Unsupported format:
    <format>``."""
    before = len(server.sessions)
    response = await server.raw_http(f"p_event={event}&p_format={fmt}".encode())
    assert response.code == 400
    assert f"Unsupported format: {fmt}" in error_text(response)
    assert len(server.sessions) == before


@every_format
@pytest.mark.parametrize("name", ["poll", "abort", "lisen", "join_ack", "LEAVE"])
@pytest_twisted.ensureDeferred
async def test_unknown_event_is_nack_and_session_survives(server, fmt, name):
    """An unknown ``p_event`` gets HTTP 200 with one ``nack`` ``unknown event: <name>``; the session still
    works."""
    peer = Peer(server, fmt)
    await peer.join()
    reply = await peer.send(name)
    assert reply.code == 200
    assert reply.event == {"p_event": "nack", "p_time": reply.event["p_time"], "p_id": peer.id,
                           "p_reason": f"unknown event: {name}"}
    assert (await peer.send("hb")).event["p_event"] == "hb-ack"
    assert (await peer.send("subscribe", p_subject="/still")).event["p_event"] == "subscribe-ack"


@every_format
@pytest_twisted.ensureDeferred
async def test_unknown_event_does_not_disturb_open_stream(server, fmt):
    """A ``nack`` for an unknown event leaves the session's open stream receiving."""
    peer = Peer(server, fmt)
    stream = await peer.stream("/s")
    assert (await peer.send("poll")).event["p_event"] == "nack"
    server.push.publish("/s", n="1")
    assert (await stream.events_until(3))[2]["n"] == "1"


@every_format
@pytest.mark.parametrize("subject", [None, "", ",", ",,,"])
@pytest_twisted.ensureDeferred
async def test_subscribe_without_subject_is_nack(server, fmt, subject):
    """``subscribe`` without a usable ``p_subject`` is a ``nack`` ``no subject provided``."""
    peer = Peer(server, fmt)
    await peer.join()
    event = (await peer.send("subscribe", p_subject=subject)).event
    assert event == {"p_event": "nack", "p_time": event["p_time"], "p_id": peer.id,
                     "p_reason": "no subject provided"}
    assert server.sessions[peer.id].subscriptions == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_publish_without_subject_is_nack(server, fmt):
    """``publish`` without ``p_subject`` is a ``nack`` ``no subject provided``."""
    peer = Peer(server, fmt)
    await peer.join()
    event = (await peer.send("publish", text="x")).event
    assert (event["p_event"], event["p_id"], event["p_reason"]) == ("nack", peer.id, "no subject provided")


@every_format
@pytest_twisted.ensureDeferred
async def test_unsubscribe_unknown_sid_is_nack(server, fmt):
    """``unsubscribe`` with an unknown ``p_sid`` is a ``nack`` ``no subscription for sid=<sid>``; others
    stay."""
    peer = Peer(server, fmt)
    await peer.join()
    sid = (await peer.send("subscribe", p_subject="/a")).event["p_sid"]
    event = (await peer.send("unsubscribe", p_sid="zzzzz")).event
    assert (event["p_event"], event["p_id"], event["p_reason"]) == (
        "nack", peer.id, "no subscription for sid=zzzzz")
    assert set(server.sessions[peer.id].subscriptions) == {sid}


@every_format
@pytest_twisted.ensureDeferred
async def test_refresh_while_not_listening_is_nack(server, fmt):
    """A ``refresh`` on a joined session that does not listen is a complete ``nack`` response; the session
    stays."""
    peer = Peer(server, fmt)
    await peer.join()
    reply = await peer.send("refresh")
    assert reply.code == 200
    event = reply.event
    assert event["p_event"] == "nack" and event["p_id"] == peer.id and event["p_reason"]
    assert peer.id in server.sessions
    assert (await peer.send("listen", p_mode="poll")).events[0]["p_event"] == "listen-ack"


@every_format
@pytest.mark.parametrize("name", ["a:b", "1x", "x y", "<x>", "x\"", "é"])
@pytest_twisted.ensureDeferred
async def test_publish_with_invalid_field_name_is_nack(server, fmt, name):
    """A ``publish`` with a field name that is not a plain name is refused with a ``nack`` and not
    delivered."""
    listener = Peer(server, "xml")
    await listener.send("join-listen", p_mode="poll", p_subject="/f")
    peer = Peer(server, fmt)
    await peer.join()
    event = (await peer.send("publish", p_subject="/f", **{name: "v"})).event
    assert event["p_event"] == "nack" and event["p_id"] == peer.id
    assert event["p_reason"].startswith("invalid field name")
    reply = await listener.send("refresh")
    assert [e["p_event"] for e in reply.events] == ["refresh-ack", "hb", "refresh"]


@pytest_twisted.ensureDeferred
async def test_invalid_percent_encoding_and_utf8_fall_back_to_latin1(server):
    """Malformed ``%`` escapes are kept literally and invalid UTF-8 bytes decode as ISO-8859-1, not a 500."""
    listener = Peer(server, "xml-strict")
    stream = await listener.stream("/enc")
    publisher = Peer(server, "xml")
    await publisher.join()
    base = f"p_event=publish&p_id={publisher.id}&p_subject=/enc".encode()
    for raw in (b"&v=%ZZ%4", b"&v=%FF%FEab", b"&v=%E4%B8", b"&v=100%25+sure%"):
        response = await server.raw_http(base + raw)
        assert response.code == 200
        assert parse("xml", response.body)[0]["p_event"] == "publish-ack"
    events = await stream.events_until(6)
    assert [e["v"] for e in events[2:6]] == ["%ZZ%4", "\xff\xfeab", "\xe4\xb8", "100% sure%"]


@pytest_twisted.ensureDeferred
async def test_too_many_parameters_is_400(server):
    """More parameters than ``limit.params`` is HTTP 400 with a clear message."""
    query = b"p_event=join&p_format=xml&" + b"&".join(b"a%d=1" % i for i in range(80))
    response = await server.raw_http(query)
    assert response.code == 400
    assert "Too many parameters (at most 64)" in error_text(response)
    post = b"<event p_event=\"join\" " + b" ".join(b'a%d="1"' % i for i in range(80)) + b" />"
    response = await server.raw_http(b"", method=b"POST", body=post)
    assert response.code == 400
    assert "Too many parameters" in error_text(response)


@pytest_twisted.ensureDeferred
async def test_oversized_requests_are_refused(serve):
    """A query or body above ``limit.request.bytes`` is HTTP 414 or 413 with a clear message."""
    server = serve(limit_request_bytes=4096)
    response = await server.raw_http(b"p_event=join&p_format=xml&v=" + b"x" * 5000)
    assert response.code == 414
    assert "Request too large (at most 4096 bytes)" in error_text(response)
    response = await server.raw_http(b"", method=b"POST", body=b"p_event=join&v=" + b"x" * 5000)
    assert response.code == 413
    assert "Request too large" in error_text(response)


@pytest_twisted.ensureDeferred
async def test_oversized_post_with_default_limits_is_413(server):
    """With the default limits a POST body above 64 KiB is HTTP 413."""
    response = await server.raw_http(b"", method=b"POST", body=b"p_event=join&v=" + b"x" * 70_000)
    assert response.code == 413


@pytest.mark.parametrize(
    "body", [b"<event", b"<event a=\"unterminated />", b"<event =\"v\" />", b"<x a='1' />"])
@pytest_twisted.ensureDeferred
async def test_malformed_post_event_is_400(server, body):
    """A POST body that starts like an ``<event/>`` but is malformed is HTTP 400."""
    response = await server.raw_http(b"", method=b"POST", body=body)
    assert response.code == 400


@every_format
@pytest_twisted.ensureDeferred
async def test_absurd_subject_lists_are_nack(server, fmt):
    """Too many subjects in one list, a too long subject or list, are ``nack`` answers on subscribe and
    listen."""
    peer = Peer(server, fmt)
    await peer.join()
    many = ",".join(f"/s{i}" for i in range(100))
    reason = (await peer.send("subscribe", p_subject=many)).event["p_reason"]
    assert reason == "too many subjects in one subscription (at most 32)"
    reason = (await peer.send("subscribe", p_subject="/" + "x" * 300)).event["p_reason"]
    assert reason == "subject too long (at most 256 characters)"
    peer.via = "post-form"  # too long for a request line
    reason = (await peer.send("subscribe", p_subject="," * 9000 + "/a")).event["p_reason"]
    peer.via = "get"
    assert reason == "subject list too long"
    reply = await peer.send("listen", p_mode="pull", p_subject=many)
    assert reply.event["p_event"] == "nack"
    assert server.sessions[peer.id].subscriptions == {}


@every_format
@pytest_twisted.ensureDeferred
async def test_too_many_subscriptions_is_nack(serve, fmt):
    """Subscribing beyond ``limit.subscriptions`` is a ``nack``; the earlier subscriptions stay."""
    server = serve(limit_subscriptions=3)
    peer = Peer(server, fmt)
    await peer.join()
    for i in range(3):
        assert (await peer.send("subscribe", p_subject=f"/{i}")).event["p_event"] == "subscribe-ack"
    event = (await peer.send("subscribe", p_subject="/3")).event
    assert (event["p_event"], event["p_reason"]) == ("nack", "too many subscriptions (at most 3)")
    assert len(server.sessions[peer.id].subscriptions) == 3


@pytest_twisted.ensureDeferred
async def test_stream_loses_nothing_while_others_send_garbage(serve):
    """A streaming session receives every event, in order, while other clients send every kind of bad
    request."""
    server = serve(limit_subscriptions=3, limit_request_bytes=4096)
    watcher = Peer(server, "xml")
    stream = await watcher.stream("/keep")
    bad = Peer(server, "js")
    await bad.join()
    attacks = [
        lambda: server.raw_http(b""),
        lambda: server.raw_http(b"p_event=hb"),
        lambda: server.raw_http(b"p_event=hb&p_id=nope"),
        lambda: server.raw_http(b"p_event=join&p_format=ser"),
        lambda: server.raw_http(b"p_event=join&p_format=xml&v=" + b"x" * 5000),
        lambda: server.raw_http(b"p_event=join&" + b"&".join(b"a%d=1" % i for i in range(80))),
        lambda: server.raw_http(b"", method=b"POST", body=b"<event a=\"x />"),
        lambda: server.raw_http(f"p_event=publish&p_id={bad.id}&p_subject=/keep&v=%ZZ%FF".encode()),
        lambda: bad.send("poll"),
        lambda: bad.send("abort"),
        lambda: bad.send("refresh"),
        lambda: bad.send("subscribe"),
        lambda: bad.send("unsubscribe", p_sid="nope"),
        lambda: bad.send("publish", p_subject="/keep", **{"a:b": "1"}),
        lambda: bad.send("publish"),
        lambda: bad.send("subscribe", p_subject=",".join(f"/{i}" for i in range(99))),
        *[lambda i=i: bad.send("subscribe", p_subject=f"/x{i}") for i in range(5)],
    ]
    sent = []
    for n, attack in enumerate(attacks):
        await attack()
        server.push.publish("/keep", n=n)
        sent.append(str(n))
    await stream.wait(lambda s: any(e.get("n") == sent[-1] for e in s.events))
    data = [e for e in stream.events if e["p_event"] == "data" and "n" in e]
    assert [e["n"] for e in data] == sent
    seqs = [int(e["p_seq"]) for e in stream.events[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert watcher.id in server.sessions and bad.id in server.sessions
    assert (await bad.send("hb")).event["p_event"] == "hb-ack"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest_twisted.ensureDeferred
async def test_publisher_cannot_forge_per_copy_fields(server, fmt):
    """A publisher's own ``p_seq``, ``p_sid`` and ``p_label`` never duplicate or replace the copy's fields."""
    listener = Peer(server, fmt)
    stream = await listener.stream("/forge")
    sid = next(iter(server.sessions[listener.id].subscriptions))
    publisher = Peer(server, "xml")
    await publisher.join()
    await publisher.send("publish", p_subject="/forge", p_seq="99", p_sid="fake", p_label="fake")
    data = (await stream.events_until(3))[2]
    assert (data["p_seq"], data["p_sid"]) == ("2", sid)
    assert "p_label" not in data
    body = bytes(stream.data)
    copy = body[body.index(b"data"):]
    copy = copy[:copy.index(b"/>" if fmt != "js" else b"</script>")]
    assert copy.count(b"p_seq") == copy.count(b"p_sid") == 1 and b"fake" not in body


@pytest.mark.parametrize("query", [
    b"p_event=join&p_format=xml&p_subject=/a b,/c",
    b"p_event=join&p_format=xml&text=hello world&more=a  b",
    b"p_event=join&p_format=xml&text=caf\xe9",
    b"p_event=join&p_format=xml&text=\xe4\xb8\xad\xe6\x96\x87",
])
@pytest_twisted.ensureDeferred
async def test_raw_spaces_and_bytes_in_query_are_accepted(server, query):
    """Raw spaces and raw non-ASCII bytes in the query, as the Java client sends them, are accepted (spec
    14.1.3)."""
    response = await server.raw_http(query)
    assert response.code == 200, response.body
    assert parse("xml", response.body)[0]["p_event"] == "join-ack"


@pytest_twisted.ensureDeferred
async def test_header_lines_are_not_taken_for_request_lines(server):
    """Only the request line is made lenient: header lines ending like one pass through unchanged."""
    response = await server.raw_http(b"p_event=join&p_format=xml&v=a b",
                                     headers=b"User-Agent: Mozilla/5.0 x\xe9 HTTP/1.1\r\n")
    assert response.code == 200
    (event,) = parse("xml", response.body)
    assert server.sessions[event["p_id"]].user_agent == "mozilla/5.0 x\xe9 http/1.1"


@pytest_twisted.ensureDeferred
async def test_raw_unencoded_values_round_trip(server):
    """Unencoded ``/``, ``,``, spaces and bytes in a publish query reach subscribers decoded (spec 14.1.3)."""
    listener = Peer(server, "xml-strict")
    stream = await listener.stream("/raw")
    publisher = Peer(server, "xml")
    await publisher.join()
    query = f"p_event=publish&p_id={publisher.id}&p_subject=/raw/a,b c&text=hello world/,x".encode()
    response = await server.raw_http(query + b"&zh=\xe4\xb8\xad\xe6\x96\x87&latin=caf\xe9")
    assert parse("xml", response.body)[0]["p_event"] == "publish-ack"
    data = (await stream.events_until(3))[2]
    assert data["p_subject"] == "/raw/a,b c"
    assert data["text"] == "hello world/,x"
    assert data["zh"] == "中文" and data["latin"] == "café"


@pytest_twisted.ensureDeferred
async def test_event_with_join_prefix_is_a_join(server):
    """A ``p_event`` starting with ``join`` creates a session (spec 2.3) and, being unknown, gets a
    ``nack``."""
    response = await server.raw_http(b"p_event=joinx&p_format=xml")
    assert response.code == 200
    (event,) = parse("xml", response.body)
    assert event["p_event"] == "nack" and event["p_reason"] == "unknown event: joinx"
    assert event["p_id"] in server.sessions
