"""The Pushlet wire formats js, xml and xml-strict (spec 6.2-6.5, 14.1.10-12, 14.2 fixes 1, 3, 8, 9).

Framing is compared byte for byte with the spec's snippets.  Field order is
ours (insertion order, per-copy ``p_seq``/``p_sid``/``p_label`` last), so where
a snippet's order differs, attributes are compared as dicts and only the
framing around them byte for byte.  Escaping is checked by parsing the output
the way each client does: node for ``js``, a re-implementation of the Java
``EventParser`` for ``xml``, real XML parsers for ``xml-strict``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.dom.minidom
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy import protocol as P
from pushpy.core.events import Event, Route, data_event
from pushpy.core.subjects import Subscription
from pushpy.wire.escape import html_text, java_xml_value, js_string, valid_name, xml_attribute
from pushpy.wire.pushlet import CODECS, JS_PROLOGUE

JS = CODECS[P.FORMAT_JS]
XML = CODECS[P.FORMAT_XML]
STRICT = CODECS[P.FORMAT_XML_STRICT]

SCRIPT = b'<script language="JavaScript">'


# -- parsers -------------------------------------------------------------------

def java_parse(text: str) -> Iterator[dict[str, str]]:
    """The Java client's ``EventParser`` (spec 6.4.1), over a whole response body."""
    i = 0
    while True:
        start = text.find("<", i)
        if start < 0:
            return  # the Java client would spin here (step 7)
        end = text.find(">", start)
        if end < 0:
            raise AssertionError("event cut by end of stream")
        i = end + 1
        tag = text[start:end + 1].strip()
        if not (tag.startswith("<") and tag.endswith("/>")):
            raise AssertionError(f"No start or end tag found: {tag!r}")
        body = tag[1:-2].strip()
        k = 0
        while k < len(body) and not body[k].isspace():
            k += 1
        fields: dict[str, str] = {}
        while True:
            eq = body.find("=", k)
            if eq < 0:
                break
            name = body[k:eq].strip()
            k = body.index('"', eq) + 1
            value = []
            while body[k] != '"':
                if body[k] == "\\":
                    k += 1
                value.append(body[k])
                k += 1
            k += 1
            fields[name] = "".join(value)
        yield fields


EVENT = re.compile(rb'<event ((?:[A-Za-z_][A-Za-z0-9_.-]*="[^"]*" )*)/>')
PAIR = re.compile(rb'([A-Za-z_][A-Za-z0-9_.-]*)="([^"]*)" ')
JS_CALL = re.compile(rb"parent\.push\(((?:,?'[^']*', \"[^\"]*\")*)\);")
JS_PAIR = re.compile(rb"'([^']*)', \"([^\"]*)\"")


def split_xml(body: bytes) -> tuple[bytes, list[dict[bytes, bytes]]]:
    """The framing of an xml/xml-strict body with each event's attributes taken out, and those attributes."""
    events = [dict(PAIR.findall(m.group(1))) for m in EVENT.finditer(body)]
    return EVENT.sub(b"<event />", body), events


def split_js(body: bytes) -> tuple[bytes, list[dict[bytes, bytes]]]:
    """The same for js bodies made of unescaped snippets."""
    calls = [dict(JS_PAIR.findall(m.group(1))) for m in JS_CALL.finditer(body)]
    return JS_CALL.sub(b"parent.push();", body), calls


def xml_values(body: bytes) -> list[dict[str, str]]:
    root = ET.fromstring(body)
    dom = xml.dom.minidom.parseString(body)
    events = [dict(e.attrib) for e in root.iter("event")]
    dom_events = [dict(e.attributes.items()) for e in dom.getElementsByTagName("event")]
    assert events == dom_events
    return events


def utf16(text: str) -> str:
    """``text`` as JavaScript sees it: UTF-16 code units, surrogate pairs joined."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# -- spec snippets: exact framing ------------------------------------------------

SPEC_PROLOGUE = (
    '<html><head><meta http-equiv="Pragma" content="no-cache"><meta http-equiv="Expires" '
    'content="Tue, 31 Dec 1997 23:59:59 GMT"></head><body>\\n<script language="JavaScript"> '
    'var url=" "; \\nfunction refresh() { document.location.href=url; }</script>'
).replace("\\n", "\n").encode()


def test_js_prologue_is_the_exact_242_bytes():
    """The js prologue is the spec's 242 bytes, with LF bytes where the spec shows ``\\n``."""
    assert JS_PROLOGUE == SPEC_PROLOGUE
    assert len(JS_PROLOGUE) == 242
    assert JS.opening == JS_PROLOGUE and JS.closing == b""


def test_content_types_and_document_framing():
    """Each format has its Content-Type and start/end bytes (spec 6.2)."""
    assert (JS.content_type, JS.opening, JS.closing) == (b"text/html;charset=UTF-8", JS_PROLOGUE, b"")
    assert (XML.content_type, XML.opening, XML.closing) == (b"text/plain;charset=UTF-8", b"", b"")
    assert (STRICT.content_type, STRICT.opening, STRICT.closing) == (
        b"text/xml;charset=UTF-8", b"<pushlet>", b"</pushlet>")
    assert set(CODECS) == {"js", "xml", "xml-strict"}


LISTEN_ACK = {"p_sid": "rocig", "p_time": "1795569855", "p_format": "js", "p_id": "rojufudywo",
              "p_mode": "stream", "p_event": "listen-ack"}
HB = {"p_event": "hb", "p_time": "1795569855", "p_seq": "1"}

#: (codec, fields in the snippet's order, the spec's exact bytes)
EXACT_EVENTS = [
    (JS, LISTEN_ACK,
     b'<script language="JavaScript">parent.push(\'p_sid\', "rocig",\'p_time\', "1795569855",'
     b'\'p_format\', "js",\'p_id\', "rojufudywo",\'p_mode\', "stream",\'p_event\', "listen-ack");'
     b'</script>'),
    (JS, HB, b'<script language="JavaScript">parent.push(\'p_event\', "hb",\'p_time\', "1795569855",'
             b'\'p_seq\', "1");</script>'),
    (XML, {"p_sid": "kyvuf", "p_time": "1795569861", "p_format": "xml", "p_id": "sogabazitu",
           "p_mode": "stream", "p_event": "listen-ack"},
     b'<event p_sid="kyvuf" p_time="1795569861" p_format="xml" p_id="sogabazitu" p_mode="stream" '
     b'p_event="listen-ack" />'),
    (XML, {"p_event": "hb", "p_time": "1795569861", "p_seq": "1"},
     b'<event p_event="hb" p_time="1795569861" p_seq="1" />'),
    (XML, {"p_time": "1795569850", "p_format": "xml", "p_id": "pokecutyga", "p_event": "join-ack"},
     b'<event p_time="1795569850" p_format="xml" p_id="pokecutyga" p_event="join-ack" />'),
    (STRICT, {"p_event": "refresh-ack", "p_time": "1795569850"},
     b'<event p_event="refresh-ack" p_time="1795569850" />'),
]


@pytest.mark.parametrize("codec, fields, expected", EXACT_EVENTS)
def test_event_bytes_match_spec_snippets(codec, fields, expected):
    """Fields given in the snippet's order give the snippet byte for byte."""
    assert codec.event(fields) == expected
    assert codec.event(list(fields.items())) == expected


def test_js_control_response_is_prologue_plus_one_script():
    """A js control response is the prologue and one script, without ``</body></html>`` (spec 6.3)."""
    fields = {"p_event": "hb-ack", "p_time": "1795569855"}
    assert JS.control(fields) == (
        JS_PROLOGUE + b'<script language="JavaScript">parent.push(\'p_event\', "hb-ack",'
        b'\'p_time\', "1795569855");</script>')


def test_xml_control_response_is_one_bare_event():
    """An xml control response is exactly one event: the spec 5 join-ack example."""
    fields = {"p_time": "1795569850", "p_format": "xml", "p_id": "pokecutyga", "p_event": "join-ack"}
    assert XML.control(fields) == (
        b'<event p_time="1795569850" p_format="xml" p_id="pokecutyga" p_event="join-ack" />')


def test_xml_strict_control_response_is_one_document():
    """An xml-strict control response is one ``<pushlet>`` document holding one event."""
    body = STRICT.control({"p_event": "nack", "p_time": "1", "p_id": "x", "p_reason": "no subject provided"})
    assert body == (b'<pushlet><event p_event="nack" p_time="1" p_id="x" '
                    b'p_reason="no subject provided" /></pushlet>')
    assert xml_values(body) == [{"p_event": "nack", "p_time": "1", "p_id": "x",
                                 "p_reason": "no subject provided"}]


def test_js_refresh_script_is_exact():
    """The js refresh is the spec's script with ``url`` and ``setTimeout``, then ``</body></html>``."""
    body = JS.refresh("/pushlet/pushlet.srv?p_id=mizikidihu&p_event=refresh", 3262, 1795569855.9)
    assert body == (b'\n<script language="JavaScript">url=\'/pushlet/pushlet.srv?p_id=mizikidihu'
                    b'&p_event=refresh\';\n setTimeout("refresh()", 3262);\n</script></body></html>')


def test_js_refresh_wait_is_a_plain_integer():
    """``p_wait`` is written as a plain integer whatever number is given."""
    assert b'setTimeout("refresh()", 2000);' in JS.refresh("/u", 2000.7, 0.0)


SPEC_PULL_LISTEN = (
    b'<pushlet><event p_sid="hozop" p_time="1795569850" p_format="xml-strict" p_id="soranyvoga" '
    b'p_mode="pull" p_event="join-listen-ack" /><event p_time="1795569850" p_wait="3903" '
    b'p_event="refresh" p_url="/pushlet/pushlet.srv?p_id=soranyvoga&amp;p_event=refresh" /></pushlet>'
)
SPEC_PULL_REFRESH = (
    b'<pushlet><event p_event="refresh-ack" p_time="1795569850" /><event p_from="pokecutyga" '
    b'p_time="1795569850" city="twente" p_event="data" p_subject="/temperature/city" p_seq="1" '
    b'p_sid="hozop" value="8" p_id="pokecutyga" /><event p_time="1795569850" p_wait="3111" '
    b'p_event="refresh" p_url="/pushlet/pushlet.srv?p_id=soranyvoga&amp;p_event=refresh" /></pushlet>'
)
URL = "/pushlet/pushlet.srv?p_id=soranyvoga&p_event=refresh"
NOW = 1795569850.25


def test_xml_strict_pull_listen_matches_spec():
    """A pull join-listen in xml-strict is the spec's document: ack then refresh (spec 6.5)."""
    ack = {"p_event": "join-listen-ack", "p_time": "1795569850", "p_id": "soranyvoga", "p_mode": "pull",
           "p_format": "xml-strict", "p_sid": "hozop"}
    body = STRICT.opening + STRICT.event(ack) + STRICT.refresh(URL, 3903, NOW)
    assert split_xml(body) == split_xml(SPEC_PULL_LISTEN)
    assert xml_values(body)[1]["p_url"] == URL


def test_xml_strict_pull_refresh_with_data_matches_spec():
    """A refresh carrying one data event matches the spec's document, ``p_seq``/``p_sid`` per copy."""
    event = Event({"p_event": "data", "p_time": "1795569850", "p_subject": "/temperature/city",
                   "city": "twente", "value": "8", "p_from": "pokecutyga", "p_id": "pokecutyga"})
    sub = Subscription("hozop", "/temperature")
    body = (STRICT.opening + STRICT.event({"p_event": "refresh-ack", "p_time": "1795569850"})
            + STRICT.data(event, 1, sub) + STRICT.refresh(URL, 3111, NOW))
    assert split_xml(body) == split_xml(SPEC_PULL_REFRESH)


def test_js_stream_start_matches_spec():
    """A js stream starts with the prologue, the ack and ``hb`` with ``p_seq=1`` (spec 6.3)."""
    snippet = (b'<script language="JavaScript">parent.push(\'p_sid\', "rocig",\'p_time\', "1795569855",'
               b'\'p_format\', "js",\'p_id\', "rojufudywo",\'p_mode\', "stream",\'p_event\', "listen-ack");'
               b'</script><script language="JavaScript">parent.push(\'p_event\', "hb",\'p_time\', '
               b'"1795569855",\'p_seq\', "1");</script>')
    ack = dict(reversed(list(LISTEN_ACK.items())))
    body = JS.event(ack) + JS.event(HB)
    assert split_js(body) == split_js(snippet)


def test_per_copy_fields_come_last_in_every_format():
    """``data`` splices ``p_seq``, ``p_sid`` and ``p_label`` after the event's own fields."""
    event = data_event("/a", {"k": "v"}, 7.0)
    sub = Subscription("sidaa", "/a", "lbl")
    assert XML.data(event, 3, sub) == (
        b'<event p_event="data" p_time="7" k="v" p_subject="/a" p_seq="3" p_sid="sidaa" p_label="lbl" />')
    assert STRICT.data(event, 3, None) == (
        b'<event p_event="data" p_time="7" k="v" p_subject="/a" p_seq="3" />')
    assert JS.data(event, 3, sub) == (
        b'<script language="JavaScript">parent.push(\'p_event\', "data",\'p_time\', "7",\'k\', "v",'
        b'\'p_subject\', "/a",\'p_seq\', "3",\'p_sid\', "sidaa",\'p_label\', "lbl");</script>')


def test_shared_encoding_is_cached_and_copies_differ():
    """The event's own fields are encoded once per format; each copy gets its own per-copy fields."""
    event = data_event("/a", {"k": "v"}, 7.0)
    one, two = Subscription("one", "/a", "L1"), Subscription("two", "/a")
    for codec in (JS, XML, STRICT):
        first = codec.data(event, 1, one)
        second = codec.data(event, 2, two)
        assert codec.name in event.wire_cache
        assert first != second
        assert codec.data(event, 1, one) == first
    assert [e["p_label"] if "p_label" in e else None
            for e in xml_values(b"<pushlet>" + STRICT.data(event, 1, one) + STRICT.data(event, 2, two)
                                + b"</pushlet>")] == ["L1", None]


def test_publisher_sent_per_copy_fields_are_not_duplicated():
    """A publisher's own ``p_seq``/``p_sid``/``p_label`` never duplicate an attribute; the copy's win."""
    event = Event({"p_event": "data", "p_time": "1", "p_subject": "/a", "p_seq": "99",
                   "p_sid": "forged", "p_label": "forged", "v": "1"})
    sub = Subscription("realsid", "/a")
    body = STRICT.opening + STRICT.data(event, 1, sub) + STRICT.closing
    (attrs,) = xml_values(body)  # a duplicate attribute would not parse
    assert attrs == {"p_event": "data", "p_time": "1", "p_subject": "/a", "p_seq": "1",
                     "p_sid": "realsid", "v": "1"}
    (java,) = java_parse(XML.data(event, 1, sub).decode())
    assert java == attrs
    _, (js_pairs,) = split_js(JS.data(event, 1, sub))
    assert len(re.findall(rb"'p_seq'", JS.data(event, 1, sub))) == 1
    assert js_pairs[b"p_sid"] == b"realsid"
    # Without a subscription (unicast, broadcast) the publisher's sid and label stay, p_seq is ours.
    (plain,) = xml_values(STRICT.opening + STRICT.data(event, 4, None) + STRICT.closing)
    assert (plain["p_seq"], plain["p_sid"], plain["p_label"]) == ("4", "forged", "forged")


# -- escaping tables ---------------------------------------------------------------

#: value -> (js string text, xml (Java) text, xml-strict attribute text)
ESCAPES = [
    ("plain value /a,b c=d?x", "plain value /a,b c=d?x", "plain value /a,b c=d?x", "plain value /a,b c=d?x"),
    ('say "hi"', 'say \\"hi\\"', 'say \\"hi\\"', "say &quot;hi&quot;"),
    ("it's", "it\\'s", "it's", "it&#039;s"),
    ("C:\\dir\\", "C:\\\\dir\\\\", "C:\\\\dir\\\\", "C:&#092;dir&#092;"),
    ("</script><script>alert(1)</script>",
     "\\x3C/script\\x3E\\x3Cscript\\x3Ealert(1)\\x3C/script\\x3E",
     "</script&gt;<script&gt;alert(1)</script&gt;",
     "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("<!-- x", "\\x3C!-- x", "<!-- x", "&lt;!-- x"),
    ("]]>", "]]\\x3E", "]]&gt;", "]]&gt;"),
    ("a&b&amp;", "a&b&amp;", "a&b&amp;", "a&amp;b&amp;amp;"),
    ("1 > 0", "1 \\x3E 0", "1 &gt; 0", "1 &gt; 0"),
    ("l1\nl2\r\n\tx", "l1\\nl2\\r\\n\\x09x", "l1\nl2\r\n\tx", "l1&#10;l2&#13;&#10;&#9;x"),
    ("\u2028\u2029", "\\u2028\\u2029", "\u2028\u2029", "\u2028\u2029"),
    ("nul\x00bel\x07esc\x1b", "nul\\x00bel\\x07esc\\x1B", "nul\x00bel\x07esc\x1b", "nulbelesc"),
    ("del\x7fc1\x85", "del\\x7Fc1\\x85", "del\x7fc1\x85", "del\x7fc1\x85"),
    ("lone\ud800x\udfff", "lone\\uD800x\\uDFFF", "lone\ufffdx\ufffd", "lone\ufffdx\ufffd"),
    ("non\ufffe\uffffchar", "non\ufffe\uffffchar", "non\ufffe\uffffchar", "nonchar"),
    ("中文 été €", "中文 été €", "中文 été €", "中文 été €"),
    ("emoji \U0001F600", "emoji \U0001F600", "emoji \U0001F600", "emoji \U0001F600"),
]


@pytest.mark.parametrize("value, js, java, strict", ESCAPES)
def test_escape_functions(value, js, java, strict):
    """Each context escapes exactly as spec 6.5, 14.1.10 and 14.2 fixes 8 and 9 say."""
    assert js_string(value) == js
    assert java_xml_value(value) == java
    assert xml_attribute(value) == strict


@pytest.mark.parametrize("value, js, java, strict", ESCAPES)
def test_escaped_values_inside_events(value, js, java, strict):
    """Values go into each format escaped for it, encoded as UTF-8 (fix 14.2.3)."""
    fields = {"p_event": "data", "v": value}
    assert JS.event(fields) == (
        f'{SCRIPT.decode()}parent.push(\'p_event\', "data",\'v\', "{js}");</script>'.encode())
    assert XML.event(fields) == f'<event p_event="data" v="{java}" />'.encode()
    assert STRICT.event(fields) == f'<event p_event="data" v="{strict}" />'.encode()


def test_html_text_escapes_markup():
    """Error-page text cannot open markup or leave an attribute."""
    assert html_text("<b>\"x\" & 'y'</b>\ud800") == (
        "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;\ufffd")


@pytest.mark.parametrize("name, ok", [
    ("p_event", True), ("city", True), ("_x", True), ("a.b-c_9", True), ("A" * 128, True),
    ("", False), ("9a", False), ("a:b", False), ("a b", False), ('a"', False), ("a>", False),
    ("é", False), ("A" * 129, False), ("a\n", False), ("-a", False),
])
def test_valid_names(name, ok):
    """Field names must be plain names every format can carry unescaped (spec 14.1.15)."""
    assert valid_name(name) is ok


# -- round trips through each client's parser -----------------------------------

TRICKY = [row[0] for row in ESCAPES] + ["", " ", "\\", '"', "'", "\\\"", "a\\", ">", "<", "&#9;"]


def java_expected(value: str) -> str:
    return re.sub("[\ud800-\udfff]", "\ufffd", value).replace(">", "&gt;")


def strict_expected(value: str) -> str:
    value = re.sub("[\ud800-\udfff]", "\ufffd", value)
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", value)


def response(codec, values: list[str], label: str | None = "lbl") -> bytes:
    """A pull response: ack, one data event per value, refresh."""
    sub = Subscription("sidab", "/t", label)
    out = [codec.opening, codec.event({"p_event": "refresh-ack", "p_time": "1"})]
    for seq, value in enumerate(values, 1):
        event = data_event("/t", {"v": value, "w": value[::-1]}, 1.0)
        out.append(codec.data(event, seq, sub))
    out.append(codec.refresh("/pushlet/pushlet.srv?p_id=abc&p_event=refresh", 2500, 1.0))
    return b"".join(out)


def expected_events(values: list[str], label: str | None, convert) -> list[dict[str, str]]:
    events = [{"p_event": "refresh-ack", "p_time": "1"}]
    for seq, value in enumerate(values, 1):
        e = {"p_event": "data", "p_time": "1", "v": convert(value), "w": convert(value[::-1]),
             "p_subject": "/t", "p_seq": str(seq), "p_sid": "sidab"}
        if label:
            e["p_label"] = convert(label)
        events.append(e)
    events.append({"p_event": "refresh", "p_time": "1", "p_wait": "2500",
                   "p_url": "/pushlet/pushlet.srv?p_id=abc&p_event=refresh"})
    return events


def check_xml(values: list[str], label: str | None = "lbl") -> None:
    body = response(XML, values, label)
    text = body.decode("utf-8")
    assert text.startswith("<event ")
    assert list(java_parse(text)) == expected_events(values, label, java_expected)


def check_strict(values: list[str], label: str | None = "lbl") -> None:
    body = response(STRICT, values, label)
    body.decode("utf-8")
    assert body.startswith(b"<pushlet><event ") and body.endswith(b"</pushlet>")
    assert not body.startswith(b"<?xml")
    assert xml_values(body) == expected_events(values, label, strict_expected)


def test_xml_round_trips_through_the_java_parser():
    """Every tricky value survives the Java parser, except ``>`` (written ``&gt;``) and lone surrogates."""
    check_xml(TRICKY)
    check_xml(TRICKY, "l>a\"b\\el")


def test_xml_strict_round_trips_through_xml_parsers():
    """xml-strict documents are well-formed and give back every value but XML-forbidden characters."""
    check_strict(TRICKY)
    check_strict(TRICKY, "<&'\"\\>\t\n")


# -- js through node ------------------------------------------------------------------

NODE_PROGRAM = r"""
const vm = require('vm');
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (line) => {
  const scripts = JSON.parse(line);
  const calls = [];
  const timeouts = [];
  const ctx = vm.createContext({
    parent: {push: (...args) => { calls.push(args); }},
    setTimeout: (code, ms) => { timeouts.push([code, ms]); },
    document: {location: {}},
  });
  const errors = [];
  for (const s of scripts) {
    try { vm.runInContext(s, ctx); } catch (e) { errors.push(String(e)); }
  }
  process.stdout.write(JSON.stringify({calls, timeouts, url: ctx.url, errors}) + '\n');
});
"""


class Node:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", "-e", NODE_PROGRAM], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def run(self, scripts: list[str]) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(scripts) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def node():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    runner = Node()
    yield runner
    runner.close()


SCRIPT_START = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
SCRIPT_END = re.compile(r"</script", re.IGNORECASE)


def html_scripts(html: str) -> list[str]:
    """The script bodies an HTML parser finds: each ends at the first ``</script``."""
    scripts = []
    i = 0
    while (m := SCRIPT_START.search(html, i)) is not None:
        end = SCRIPT_END.search(html, m.end())
        assert end is not None, "unterminated script"
        body = html[m.end():end.start()]
        # Inside a script, "<!--" and "<script" switch the HTML tokenizer into escaped states.
        assert "<!--" not in body and not re.search("<script", body, re.IGNORECASE)
        scripts.append(body)
        i = end.end()
    return scripts


def check_js(node: Node, values: list[str], label: str | None = "lbl",
             url: str = "/pushlet/pushlet.srv?p_id=abc&p_event=refresh") -> None:
    sub = Subscription("sidab", "/t", label)
    parts = [JS.opening]
    for seq, value in enumerate(values, 1):
        parts.append(JS.data(data_event("/t", {"v": value}, 1.0), seq, sub))
    parts.append(JS.event({"p_event": "nack", "p_reason": "".join(values)}))
    parts.append(JS.refresh(url, 2500, 1.0))
    html = b"".join(parts).decode("utf-8")
    assert html.endswith("</script></body></html>")
    scripts = html_scripts(html)
    assert len(scripts) == len(values) + 3  # prologue, events, nack, refresh
    result = node.run(scripts)
    assert result["errors"] == []
    calls = result["calls"]
    assert len(calls) == len(values) + 1
    for seq, (value, call) in enumerate(zip(values, calls, strict=False), 1):
        fields = dict(zip(call[::2], call[1::2], strict=True))
        want = {"p_event": "data", "p_time": "1", "v": utf16(value), "p_subject": "/t",
                "p_seq": str(seq), "p_sid": "sidab"}
        if label:
            want["p_label"] = utf16(label)
        assert {k: utf16(v) for k, v in fields.items()} == want
    assert utf16(calls[-1][3]) == utf16("".join(values))
    assert utf16(result["url"]) == utf16(url)
    assert result["timeouts"] == [["refresh()", 2500]]


def test_js_values_reach_parent_push_unchanged(node):
    """Every tricky value, label and refresh URL reaches the page's JavaScript exactly (fix 14.2.8)."""
    check_js(node, TRICKY, label="</script>\"'\\\u2028")
    check_js(node, ["x"], label=None, url="/p?a='\"</script><!--\u2028\\&b=1")


def test_js_output_never_closes_its_script_early():
    """No value can put ``</script`` or ``<!--`` into the output."""
    html = response(JS, TRICKY, "</SCRIPT><!--").decode("utf-8")
    assert html.lower().count("</script") == len(TRICKY) + 3
    assert html.count("<!--") == 0


# -- properties ---------------------------------------------------------------------

DANGEROUS = list("<>\"'\\&/!-[]=; \n\r\t\x00\x01\x1f\x7f\x85\u2028\u2029\ufffe\uffff\ud800\udbff\udc00\udfff"
                 "中é€") + ["\U0001F600", "]]>", "</script>", "<!--", "&amp;", "\\\""]
texts = st.lists(
    st.one_of(st.sampled_from(DANGEROUS),
              st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())),
    max_size=20,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.one_of(st.none(), texts))
def test_xml_property_round_trip(values, label):
    """Random text survives the Java parser (``>`` and lone surrogates aside) as valid UTF-8."""
    check_xml(values, label)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.one_of(st.none(), texts))
def test_xml_strict_property_round_trip(values, label):
    """Random text gives well-formed xml-strict documents whose values survive, forbidden characters aside."""
    check_strict(values, label)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(texts, min_size=1, max_size=4), label=st.one_of(st.none(), texts), url=texts)
def test_js_property_round_trip(node, values, label, url):
    """Random text reaches ``parent.push`` unchanged, inside its own script, as valid UTF-8."""
    check_js(node, values, label, url)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_escapers_never_raise_and_encode(value):
    """Every escaper accepts any text and its result encodes as strict UTF-8."""
    for escape in (js_string, java_xml_value, xml_attribute, html_text):
        escape(value).encode("utf-8")
    for codec in (JS, XML, STRICT):
        codec.control({"p_event": "nack", "p_reason": value}).decode("utf-8")
        codec.refresh(value, 3000, 0.0).decode("utf-8")
        codec.data(Event({"p_event": "data", "v": value}, route=Route.BROADCAST), 1,
                   Subscription("s", "/", value)).decode("utf-8")
