"""Text round trips: Chinese and hostile values through every format (spec 6.7, 14.2.3, 14.2.8, 14.2.9)."""

from __future__ import annotations

import re
import shutil

import pytest
import pytest_twisted
from pushlet_client import Peer, parse, run_js

FORMATS = ["js", "xml", "xml-strict"]
VIAS = ["get", "post-form", "post-event"]
CHINESE = "中文 é ü"
#: The JavaScript engine that runs the ``js`` scripts (the machine image has one).
NODE = shutil.which("node")
HOSTILE = ("</script><script>alert(1)</script> <!-- x --> \"dq\" 'sq' back\\slash \\\" > & &amp; "
           "\u2028 \u2029 line\nbreak\r end")


def expected(fmt: str, value: str) -> str:
    """What each client reads back: ``xml`` cannot carry ``>`` (fix 14.2.9)."""
    return value.replace(">", "&gt;") if fmt == "xml" else value


async def receivers(server, subject: str, **params) -> list[tuple[str, Peer, object]]:
    out = []
    for fmt in FORMATS:
        peer = Peer(server, fmt)
        out.append((fmt, peer, await peer.stream(subject, **params)))
    return out


@pytest.mark.parametrize("via", VIAS)
@pytest_twisted.ensureDeferred
async def test_chinese_round_trips_in_every_format(server, via):
    """``中文`` published by GET, POST form or raw UTF-8 ``<event/>`` arrives intact, as UTF-8, in all three
    formats."""
    listeners = await receivers(server, "/zh")
    publisher = Peer(server, "xml", via)
    await publisher.join()
    reply = await publisher.send("publish", p_subject="/zh/中文", text=CHINESE)
    assert reply.event["p_event"] == "publish-ack"
    for fmt, _, stream in listeners:
        data = (await stream.events_until(3))[2]
        assert data["text"] == CHINESE, fmt
        assert data["p_subject"] == "/zh/中文"
        assert CHINESE.encode("utf-8") in bytes(stream.data)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest_twisted.ensureDeferred
async def test_chinese_in_acks_and_labels(server, fmt):
    """Chinese subjects and labels come back intact in ``subscribe-ack``, ``listen-ack`` and data copies."""
    peer = Peer(server, fmt)
    await peer.join()
    ack = (await peer.send("subscribe", p_subject="/新闻", p_label="标签")).event
    assert (ack["p_subject"], ack["p_label"]) == ("/新闻", "标签")
    reply = await peer.send("listen", p_mode="poll", p_subject="/天气", p_label="天")
    assert reply.events[0]["p_label"] == "天"
    server.push.publish("/新闻/今天", title="你好")
    reply = await peer.send("refresh")
    data = reply.events[1]
    assert (data["p_subject"], data["p_label"], data["title"]) == ("/新闻/今天", "标签", "你好")


@pytest_twisted.ensureDeferred
async def test_raw_utf8_form_body_and_percent_encoded_get(server):
    """Unencoded UTF-8 bytes in a form POST body and percent-encoded UTF-8 in a query decode the same."""
    listener = Peer(server, "xml-strict")
    stream = await listener.stream("/raw")
    publisher = Peer(server, "xml")
    await publisher.join()
    body = f"p_event=publish&p_id={publisher.id}&p_subject=/raw&text={CHINESE}".encode()
    response = await server.raw_http(b"", method=b"POST", body=body,
                                     headers=b"Content-Type: text/plain; charset=UTF-8\r\n")
    assert parse("xml", response.body)[0]["p_event"] == "publish-ack"
    query = f"p_event=publish&p_id={publisher.id}&p_subject=/raw&text=".encode() + \
        b"%E4%B8%AD%E6%96%87+%C3%A9+%C3%BC"
    response = await server.raw_http(query)
    assert parse("xml", response.body)[0]["p_event"] == "publish-ack"
    events = await stream.events_until(4)
    assert [e["text"] for e in events[2:4]] == [CHINESE, CHINESE]


@pytest.mark.parametrize("via", VIAS)
@pytest_twisted.ensureDeferred
async def test_hostile_values_arrive_inert_and_intact(server, via):
    """Script-breaking values published by one session arrive intact and inert in every format."""
    listeners = await receivers(server, "/h", p_label=HOSTILE)
    publisher = Peer(server, "js", via)
    await publisher.join()
    subject = "/h" + HOSTILE.replace(",", "")
    reply = await publisher.send("publish", p_subject=subject, text=HOSTILE, after="ok")
    assert reply.event["p_event"] == "publish-ack"
    await publisher.send("publish", p_subject="/h", text="next")
    for fmt, _, stream in listeners:
        events = await stream.events_until(4)
        body = bytes(stream.data)
        if fmt == "js":
            events = run_js(body) if NODE else parse("js", body)
            assert body.count(b"</script>") == body.count(b"<script"), "a value left its <script>"
            assert b"<!--" not in body
            assert "\u2028".encode() not in body and "\u2029".encode() not in body
        data = events[2]
        assert data["p_event"] == "data", fmt
        assert data["text"] == expected(fmt, HOSTILE), fmt
        assert data["p_subject"] == expected(fmt, subject), fmt
        assert data["p_label"] == expected(fmt, HOSTILE), fmt
        assert data["after"] == "ok"
        assert events[0]["p_label"] == expected(fmt, HOSTILE)
        assert events[3]["text"] == "next", "the stream must go on after a hostile event"


@pytest.mark.skipif(NODE is None, reason="needs node to run the scripts")
@pytest_twisted.ensureDeferred
async def test_js_scripts_run_in_node(server):
    """The ``js`` scripts of a pull session run in a JavaScript engine and call ``parent.push`` with the
    values sent."""
    peer = Peer(server, "js")
    reply = await peer.send("join-listen", p_mode="pull", p_subject="/n")
    peer.id = reply.events[0]["p_id"]
    calls = run_js(reply.body)
    assert calls[0]["p_event"] == "join-listen-ack" and calls[0]["p_id"] == peer.id
    assert calls[1]["p_url"] == f"/pushlet/pushlet.srv?p_id={peer.id}&p_event=refresh"
    assert 2000 <= int(calls[1]["p_wait"]) <= 6000
    server.push.publish("/n", text=HOSTILE)
    reply = await peer.send("refresh")
    calls = run_js(reply.body)
    assert [c["p_event"] for c in calls] == ["refresh-ack", "data", "refresh"]
    assert calls[1]["text"] == HOSTILE
    assert calls == parse("js", reply.body)


@pytest.mark.parametrize("fmt", ["xml", "xml-strict"])
@pytest_twisted.ensureDeferred
async def test_backslashes_and_quotes_in_xml_formats(server, fmt):
    """``xml`` writes ``\\\\`` and ``\\"`` for the Java parser; ``xml-strict`` uses entities (spec 6.5, fix
    14.2.9)."""
    peer = Peer(server, fmt)
    await peer.send("join-listen", p_mode="poll", p_subject="/bs")
    server.push.publish("/bs", v='a\\b"c')
    reply = await peer.send("refresh")
    if fmt == "xml":
        assert b'v="a\\\\b\\"c"' in reply.body
    else:
        assert b'v="a&#092;b&quot;c"' in reply.body
    assert reply.events[1]["v"] == 'a\\b"c'


@pytest_twisted.ensureDeferred
async def test_control_characters_dropped_in_xml_strict(server):
    """``xml-strict`` drops characters XML 1.0 forbids and keeps tab, LF and CR as references."""
    peer = Peer(server, "xml-strict")
    await peer.send("join-listen", p_mode="poll", p_subject="/cc")
    server.push.publish("/cc", v="a\x00b\x01c\td\ne\rf")
    reply = await peer.send("refresh")
    assert re.search(rb'v="abc&#9;d&#10;e&#13;f"', reply.body)
    assert reply.events[1]["v"] == "abc\td\ne\rf"
