"""Property tests of the Twisted layer's parsers: request lines, origins, tokens, cookies, API events.

Whatever a client sends, each either parses or refuses with ClientError; no
other exception escapes, and what is accepted is well-formed.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from webfakes import make_server

from pushpy.auth import find_token
from pushpy.errors import ClientError
from pushpy.web.api import PublishAPI
from pushpy.web.http import lenient_request_line
from pushpy.web.origins import OriginPolicy, normalize_origin
from pushpy.web.websocket import _cookies

texts = st.text(max_size=60)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["subject", "fields", "session", "user", "broadcast", "x"]) | texts,
                        children, max_size=5)),
    max_leaves=15,
)
SERVER, _ = make_server(api_key="k" * 20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_lenient_request_line_never_raises_and_leaves_no_raw_bytes_in_a_rewritten_target(line):
    """A rewritten request line has a target of printable ASCII only; other lines pass unchanged."""
    out = lenient_request_line(line)
    if out != line:
        _, target, version = out.split(b" ")
        assert re.fullmatch(rb"[\x21-\x7e]+", target)
        assert version in (b"HTTP/1.0", b"HTTP/1.1")


@settings(max_examples=300, deadline=None)
@given(texts, st.one_of(st.none(), texts), st.lists(texts, max_size=3))
def test_origin_policy_never_raises(origin, host, allowed):
    """Any Origin and Host header give a verdict; a normalized origin is stable."""
    policy = OriginPolicy(",".join(allowed))
    assert policy.check(origin, host) in ("same", "listed", "any", None)
    normal = normalize_origin(origin)
    assert normalize_origin(normal) == normal


@given(st.one_of(st.none(), texts), st.one_of(st.none(), texts), st.one_of(st.none(), texts))
def test_find_token_never_raises(param, authorization, cookie):
    """A token is found or not, from any parameter, Authorization header and cookie."""
    token = find_token(param, authorization, cookie)
    assert token is None or (isinstance(token, str) and token)


@given(st.one_of(st.none(), texts))
def test_cookie_headers_never_raise(header):
    """Any Cookie header parses to a str mapping."""
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in _cookies(header).items())


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_api_events_are_built_or_refused(item):
    """Any JSON value as an API event becomes an Event with a data ``p_event`` or a ClientError."""
    api = PublishAPI(SERVER)
    try:
        event = api._event(item, 0)
    except ClientError as e:
        assert e.reason.startswith("event 0: ") and e.status == 400
        return
    assert event.fields["p_event"] == "data"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.fields.items())
