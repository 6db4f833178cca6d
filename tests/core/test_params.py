"""Request parameters: raw and form-encoded queries, POST ``<event/>`` bodies (spec 2.2, 14.1.3)."""

from __future__ import annotations

import string
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.errors import ClientError
from pushpy.wire.params import decode_component, parse_event_element, parse_query
from pushpy.wire.pushlet import CODECS

QUERIES = [
    # raw, unencoded values as the AJAX and Java clients send them
    (b"p_event=subscribe&p_subject=/a,/b&p_label=my label",
     {"p_event": "subscribe", "p_subject": "/a,/b", "p_label": "my label"}),
    (b"p_event=publish&p_subject=/x&text=a/b?c:d",
     {"p_event": "publish", "p_subject": "/x", "text": "a/b?c:d"}),
    # form decoding
    (b"v=a+b%2Bc", {"v": "a b+c"}),
    (b"v=%E4%B8%AD%E6%96%87", {"v": "中文"}),
    (b"v=caf%C3%A9", {"v": "café"}),
    (b"v=caf%E9", {"v": "café"}),  # not UTF-8: ISO-8859-1
    (b"v=%C3%A9%E9", {"v": "Ã©é"}),  # the whole value falls back
    (b"v=\xe4\xb8\xad", {"v": "中"}),  # raw UTF-8 bytes
    (b"v=\xe9t\xe9", {"v": "été"}),  # raw Latin-1 bytes
    (b"p%5Fevent=hb", {"p_event": "hb"}),  # names are decoded too
    # malformed escapes stay literal
    (b"a=100%&b=%&c=%4&d=%zz&e=%%41", {"a": "100%", "b": "%", "c": "%4", "d": "%zz", "e": "%A"}),
    # first value wins, order is irrelevant
    (b"a=1&a=2&b=3&a=4", {"a": "1", "b": "3"}),
    (b"b=3&a=1", {"a": "1", "b": "3"}),
    # odd shapes
    (b"", {}),
    (b"&&a=1&&", {"a": "1"}),
    (b"flag&x=", {"flag": "", "x": ""}),
    (b"=orphan&a==b", {"a": "=b"}),
    (b"a=1;b=2", {"a": "1;b=2"}),
    (b"v=%00%0A", {"v": "\x00\n"}),
]


@pytest.mark.parametrize("query, expected", QUERIES)
def test_parse_query(query, expected):
    """Queries decode raw and form-encoded values; the first value of a name wins."""
    assert parse_query(query) == expected


def test_parse_query_adds_to_existing_params_without_overriding():
    """Parameters already present (the query string before a POST body) win."""
    params = {"p_event": "hb"}
    assert parse_query(b"p_event=leave&p_id=x", params) is params
    assert params == {"p_event": "hb", "p_id": "x"}


def test_decode_component():
    """One component: ``+`` is a space only where decoding applies; UTF-8 else ISO-8859-1."""
    assert decode_component(b"a+b") == "a b"
    assert decode_component(b"%E2%82%AC") == "€"
    assert decode_component(b"\xff") == "\xff"


def test_too_many_parameters_is_a_400():
    """More distinct names than ``limit`` is refused with 400; exactly ``limit`` is fine."""
    ok = b"&".join(b"n%d=v" % i for i in range(64))
    assert len(parse_query(ok)) == 64
    with pytest.raises(ClientError) as e:
        parse_query(ok + b"&one=more")
    assert e.value.status == 400
    with pytest.raises(ClientError):
        parse_query(b"a=1&b=2&c=3", limit=2)


def test_too_many_pairs_is_a_400():
    """A flood of repeated names is refused too, past four times the limit."""
    assert parse_query(b"&".join([b"a=1"] * 256)) == {"a": "1"}
    with pytest.raises(ClientError) as e:
        parse_query(b"&".join([b"a=1"] * 257))
    assert e.value.status == 400


# -- POST bodies -----------------------------------------------------------------

BODIES = [
    ('<event p_event="publish" p_subject="/a" v="1" />', {"p_event": "publish", "p_subject": "/a", "v": "1"}),
    ('\r\n  <event p_event="hb"/>\n', {"p_event": "hb"}),
    ("<event/>", {}),
    ('<event v="say \\"hi\\" C:\\\\dir" />', {"v": 'say "hi" C:\\dir'}),
    ('<event v="a\\bc\\&" />', {"v": "abc&"}),  # a raw backslash is dropped, the next char kept
    ('<event v="a&amp;b &gt; &#9;" />', {"v": "a&amp;b &gt; &#9;"}),  # entities are not decoded
    ('<event v="line1\nline2\ttab" />', {"v": "line1\nline2\ttab"}),
    ('<event a = "1"  b="2"c="3" />', {"a": "1", "b": "2", "c": "3"}),
    ('<event a="1" a="2" />', {"a": "1"}),
    ('<event v="中文 été" />', {"v": "中文 été"}),
    ('<event v="<inner>" />', {"v": "<inner>"}),
    ('<event v="" w="" />', {"v": "", "w": ""}),
]


@pytest.mark.parametrize("body, expected", BODIES)
def test_parse_event_element(body, expected):
    """A POST body is one ``<event/>`` element parsed as the Java client parses (spec 6.4.1)."""
    assert parse_event_element(body) == expected


def test_event_element_adds_to_query_params_without_overriding():
    """Query-string parameters come first; the body does not replace them."""
    params = {"p_event": "hb"}
    parse_event_element('<event p_event="leave" p_id="x" />', params)
    assert params == {"p_event": "hb", "p_id": "x"}


@pytest.mark.parametrize("body", [
    "", "   ", "hello", "p_event=hb", "<event", "<event a=\"1\">", "<event a=1 />", "<event a=\"1 />",
    "<event junk />", '<event a="1" b />', '<event ="x" />', '<event a"x" />', '<event a="x\\" />',
    '<event a=x"y" />', "/>", '<event a="1"/> trailing',
])
def test_malformed_event_element_is_a_400(body):
    """Anything but one well-formed ``<event name="value" .../>`` is refused with 400."""
    with pytest.raises(ClientError) as e:
        parse_event_element(body)
    assert e.value.status == 400


def test_event_element_attribute_limit():
    """More attributes than ``limit`` is refused with 400."""
    body = "<event " + "".join(f'n{i}="v" ' for i in range(65)) + "/>"
    with pytest.raises(ClientError) as e:
        parse_event_element(body)
    assert e.value.status == 400
    assert len(parse_event_element(body, limit=65)) == 65


# -- properties ------------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_query_bytes_only_raise_client_error(data):
    """Any query bytes parse to a str dict or raise ClientError, nothing else."""
    try:
        params = parse_query(data)
    except ClientError as e:
        assert e.status == 400
        return
    assert all(isinstance(k, str) and isinstance(v, str) and k for k, v in params.items())


body_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"<event", b"<", b"/>", b" ", b"a", b"=", b'"', b"\\", b">", b"\xe9", b"\n"]),
             max_size=40).map(b"".join),
)


@settings(max_examples=500, deadline=None)
@given(body_bytes)
def test_arbitrary_post_bodies_only_raise_client_error(data):
    """Any POST body, decoded as the web layer decodes it, parses or raises ClientError."""
    for encoding in ("utf-8", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        try:
            params = parse_event_element(text)
        except ClientError as e:
            assert e.status == 400
            continue
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


FIRST = string.ascii_letters + "_"
names = st.builds(str.__add__, st.sampled_from(FIRST),
                  st.text(alphabet=FIRST + string.digits + ".-", max_size=10))
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, values, max_size=10))
def test_form_encoded_round_trip(params):
    """Whatever ``urlencode`` produces from text parameters parses back to them."""
    assert parse_query(urlencode(params).encode("ascii")) == params


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, values, max_size=10))
def test_post_body_reads_the_xml_codec(params):
    """An ``xml``-format event parses back to its fields (``>`` aside), so POST speaks the Java dialect."""
    body = CODECS["xml"].event(params).decode("utf-8")
    expected = {k: v.replace(">", "&gt;") for k, v in params.items()}
    assert parse_event_element(body) == expected
