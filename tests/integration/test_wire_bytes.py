"""Exact bytes on the wire: headers, content types, framing of each format (spec 6, 14.1.10-13)."""

from __future__ import annotations

import re
from xml.dom import minidom

import pytest
import pytest_twisted
from pushlet_client import Peer, parse, raw_exchange

# The 242-byte prologue, copied from spec 6.3 (each \n one LF byte).
PROLOGUE = (
    b'<html><head><meta http-equiv="Pragma" content="no-cache"><meta http-equiv="Expires" '
    b'content="Tue, 31 Dec 1997 23:59:59 GMT"></head><body>\n<script language="JavaScript"> '
    b'var url=" "; \nfunction refresh() { document.location.href=url; }</script>'
)
CONTENT_TYPES = {"js": b"text/html;charset=UTF-8", "xml": b"text/plain;charset=UTF-8",
                 "xml-strict": b"text/xml;charset=UTF-8"}
NO_CACHE = [
    (b"expires", b"Sat, 6 May 1995 12:00:00 GMT"),
    (b"cache-control", b"no-store, no-cache, must-revalidate"),
    (b"cache-control", b"post-check=0, pre-check=0"),
    (b"pragma", b"no-cache"),
]
_JS_PAIR = rb"'[^'\\<>]*', " + rb'"(?:[^"\\<>\n]|\\.)*"'
JS_SCRIPT = re.compile(
    rb'<script language="JavaScript">parent\.push\(' + _JS_PAIR + rb"(?:," + _JS_PAIR + rb")*\);</script>")
JS_REFRESH = re.compile(
    rb"""\n<script language="JavaScript">url='/pushlet/pushlet\.srv\?p_id=[A-Za-z0-9_-]+&p_event=refresh';"""
    rb"""\n setTimeout\("refresh\(\)", \d+\);\n</script></body></html>""")
XML_EVENT = re.compile(rb'<event (?:[A-Za-z_][A-Za-z0-9_.-]*="(?:[^"\\>]|\\.)*" )*/>')

FORMATS = ["js", "xml", "xml-strict"]
every_format = pytest.mark.parametrize("fmt", FORMATS)


def assert_no_cache(response) -> None:
    """The four header lines of spec 6.1, ``Cache-Control`` as two separate lines."""
    lines = [(k, v) for k, v in response.header_lines
             if k in (b"expires", b"cache-control", b"pragma")]
    assert lines == NO_CACHE


def assert_framed(fmt: str, body: bytes, *, complete: bool, refresh: bool = False) -> None:
    """``body`` is exactly the framing of ``fmt``: nothing before, between or after the events."""
    if fmt == "js":
        assert body.startswith(PROLOGUE)
        rest = body[len(PROLOGUE):]
        if refresh:
            m = JS_REFRESH.search(rest)
            assert m is not None and m.end() == len(rest), rest
            rest = rest[:m.start()]
        assert JS_SCRIPT.sub(b"", rest) == b"", rest
        assert not body.endswith(b"</body></html>") or refresh
    else:
        if fmt == "xml-strict":
            assert body.startswith(b"<pushlet><event ")
            if complete:
                assert body.endswith(b"/></pushlet>")
                body = body[len(b"<pushlet>"):-len(b"</pushlet>")]
                assert minidom.parseString(b"<pushlet>" + body + b"</pushlet>").documentElement
            else:
                body = body[len(b"<pushlet>"):]
        else:
            assert body.startswith(b"<event ")
        assert XML_EVENT.sub(b"", body) == b"", body


def test_prologue_is_242_bytes():
    """The prologue copied from the spec has the 242 bytes the spec states."""
    assert len(PROLOGUE) == 242


@every_format
@pytest_twisted.ensureDeferred
async def test_control_response_bytes(server, fmt):
    """A control response has the no-cache headers, the format's content type, a ``Content-Length`` and
    exact framing."""
    response = await server.raw_http(f"p_event=join&p_format={fmt}".encode())
    assert response.code == 200
    assert_no_cache(response)
    assert response.header(b"content-type") == [CONTENT_TYPES[fmt]]
    assert response.header(b"content-length") == [str(len(response.body)).encode()]
    assert response.header(b"x-accel-buffering") == []
    assert_framed(fmt, response.body, complete=True)
    (event,) = parse(fmt, response.body)
    assert event["p_event"] == "join-ack"
    if fmt == "js":
        assert not response.body.endswith(b"</body></html>")


@every_format
@pytest_twisted.ensureDeferred
async def test_control_response_layout_matches_spec_example(server, fmt):
    """A ``join-ack`` is byte for byte the spec's layout for its fields."""
    response = await server.raw_http(f"p_event=join&p_format={fmt}".encode())
    event = parse(fmt, response.body)[0]
    if fmt == "js":
        pairs = ",".join(f"'{k}', \"{v}\"" for k, v in event.items())
        expected = PROLOGUE + f'<script language="JavaScript">parent.push({pairs});</script>'.encode()
    else:
        xml = "<event " + "".join(f'{k}="{v}" ' for k, v in event.items()) + "/>"
        expected = (f"<pushlet>{xml}</pushlet>" if fmt == "xml-strict" else xml).encode()
    assert response.body == expected


@every_format
@pytest_twisted.ensureDeferred
async def test_pull_responses_bytes(server, fmt):
    """Pull listen and refresh responses carry the no-cache headers and end with the ``refresh`` framing."""
    response = await server.raw_http(f"p_event=join-listen&p_format={fmt}&p_mode=pull&p_subject=/b".encode())
    assert response.code == 200
    assert_no_cache(response)
    assert response.header(b"content-type") == [CONTENT_TYPES[fmt]]
    assert_framed(fmt, response.body, complete=True, refresh=True)
    events = parse(fmt, response.body)
    assert events[0]["p_event"] == "join-listen-ack"
    session_id = events[0]["p_id"]
    server.push.publish("/b", n="1")
    refresh = await server.raw_http(f"p_event=refresh&p_id={session_id}".encode())
    assert_no_cache(refresh)
    assert refresh.header(b"content-type") == [CONTENT_TYPES[fmt]]
    assert_framed(fmt, refresh.body, complete=True, refresh=True)
    assert [e["p_event"] for e in parse(fmt, refresh.body)] == ["refresh-ack", "data", "refresh"]


@every_format
@pytest_twisted.ensureDeferred
async def test_stream_response_headers_and_framing(server, fmt):
    """A stream has the no-cache headers, its content type, ``X-Accel-Buffering: no`` and only event
    framing."""
    peer = Peer(server, fmt)
    await peer.join()
    stream = await peer.open("listen", p_mode="stream", p_subject="/h")
    assert stream.code == 200
    headers = stream.headers
    assert headers.getRawHeaders(b"expires") == [b"Sat, 6 May 1995 12:00:00 GMT"]
    assert headers.getRawHeaders(b"cache-control") == [b"no-store, no-cache, must-revalidate",
                                                       b"post-check=0, pre-check=0"]
    assert headers.getRawHeaders(b"pragma") == [b"no-cache"]
    assert headers.getRawHeaders(b"content-type") == [CONTENT_TYPES[fmt]]
    assert headers.getRawHeaders(b"x-accel-buffering") == [b"no"]
    assert headers.getRawHeaders(b"content-length") is None
    server.push.publish("/h", text='a "quoted" <b>&amp;</b>')
    await stream.events_until(3)
    assert_framed(fmt, bytes(stream.data), complete=False)
    assert parse(fmt, bytes(stream.data), complete=False)[0]["p_event"] == "listen-ack"


@pytest.mark.parametrize("query", [b"", b"p_event=hb", b"p_event=hb&p_id=nope", b"p_event=join&p_format=ser"])
@pytest_twisted.ensureDeferred
async def test_error_pages_carry_no_cache_headers(server, query):
    """The HTTP 400 answers also carry the no-cache headers of spec 6.1."""
    response = await server.raw_http(query)
    assert response.code == 400
    assert_no_cache(response)


@every_format
@pytest_twisted.ensureDeferred
async def test_nack_response_bytes(server, fmt):
    """A ``nack`` is a complete control response in the session's format."""
    peer = Peer(server, fmt)
    await peer.join()
    response = await server.raw_http(f"p_event=subscribe&p_id={peer.id}".encode())
    assert response.code == 200
    assert_no_cache(response)
    assert response.header(b"content-type") == [CONTENT_TYPES[fmt]]
    assert_framed(fmt, response.body, complete=True)
    assert parse(fmt, response.body)[0]["p_event"] == "nack"


@pytest.mark.parametrize("event", ["join", "join-listen&p_mode=pull", "join-listen&p_mode=stream"])
@pytest_twisted.ensureDeferred
async def test_xml_first_angle_bracket_is_the_response_event(server, event):
    """In ``xml`` the first ``<`` of the body starts the response event, as the Java client needs."""
    stream = await server.open(query=f"p_event={event}&p_format=xml&p_subject=/f".encode())
    await stream.events_until(1)
    body = bytes(stream.data)
    first = body[body.index(b"<"):]
    assert body.index(b"<") == 0
    name = event.split("&")[0]
    assert parse("xml", first)[0]["p_event"] == f"{name}-ack"


@pytest.mark.parametrize("agent", [b"Java/1.8.0_392", b"Mozilla/5.0 (compatible; java-client)"])
@pytest_twisted.ensureDeferred
async def test_connection_close_for_java_agents(server, agent):
    """A User-Agent containing ``java`` gets ``Connection: close`` (what the original intended, spec
    14.1.13)."""
    response = await server.raw_http(b"p_event=join&p_format=xml", headers=b"User-Agent: " + agent + b"\r\n")
    assert response.header(b"connection") == [b"close"]


@pytest_twisted.ensureDeferred
async def test_other_agents_get_no_connection_close(server):
    """Browsers do not get ``Connection: close`` on control responses over HTTP/1.1."""
    response = await server.get({"p_event": "join", "p_format": "xml-strict"},
                                headers={"User-Agent": ["Mozilla/5.0 Firefox/120"]})
    assert response.headers.getRawHeaders(b"connection") in (None, [b"keep-alive"])


@every_format
@pytest_twisted.ensureDeferred
async def test_keep_alive_connection_carries_several_responses(server, fmt):
    """Control and pull responses on one keep-alive connection are delimited exactly by ``Content-Length``."""
    join = await server.raw_http(f"p_event=join&p_format={fmt}".encode())
    session_id = parse(fmt, join.body)[0]["p_id"]
    queries = [f"p_event=subscribe&p_id={session_id}&p_subject=/%E4%B8%AD%E6%96%87",
               f"p_event=listen&p_id={session_id}&p_mode=pull",
               f"p_event=hb&p_id={session_id}"]
    requests = b"".join(
        f"GET /pushlet/pushlet.srv?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + (b"Connection: close\r\n" if n == len(queries) - 1 else b"")
        + b"\r\n" for n, q in enumerate(queries))
    data = await raw_exchange(server.port.getHost().port, requests)
    names = []
    rest = data
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: (\d+)$", head).group(1))
        body, rest = rest[:length], rest[length:]
        names.append([e["p_event"] for e in parse(fmt, body)])
    assert names == [["subscribe-ack"], ["listen-ack", "refresh"], ["hb-ack"]]
