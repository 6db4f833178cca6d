"""Property tests of pushpy's own wire format: JSON messages, framings, client messages, positions.

No exception but :class:`ClientError` escapes a parser, every encoding round
trips, and no framed output can leave its context (a script, an SSE line, a
JSON line) whatever the values.
"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.core.events import Event
from pushpy.core.history import parse_position
from pushpy.core.subjects import split_subjects
from pushpy.errors import ClientError
from pushpy.wire.native import (
    CALLBACK,
    LineFraming,
    ScriptFraming,
    SSEFraming,
    dumps,
    event_json,
    parse_message,
    script_callback,
    string_fields,
)

#: Any text, lone surrogates, controls and the script-breaking characters included.
hostile = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["</script>", "<!--", "-->", "\u2028", "\u2029", "\ud800", "\udfff", "\x00",
                              "\\", '"', "'", "&", "<", ">", "\n", "\r", "javascript:", "a"]),
             max_size=12).map("".join),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              hostile),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(hostile, children, max_size=4)),
    max_leaves=12,
)
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,10}", fullmatch=True)


def utf16(value):
    """``value`` as a UTF-16 reader (a browser) sees it: surrogate pairs joined, recursively."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [utf16(v) for v in value]
    if isinstance(value, dict):
        return {utf16(k): utf16(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(hostile, json_values, max_size=5))
def test_dumps_round_trips_and_never_writes_script_breaking_characters(message):
    """``dumps`` output parses back to the message and holds no raw ``< > &`` U+2028 U+2029 or newline."""
    text = dumps(message)
    assert utf16(json.loads(text)) == utf16(message)
    assert not re.search("[<>&\u2028\u2029\n\r]", text)
    text.encode("utf-8")  # lone surrogates are escaped, so the text always encodes


def _event(fields: dict[str, str], offset: int | None) -> Event:
    event = Event({"p_event": "data", "p_subject": "/s", **fields})
    return event.stored(offset, "ep") if offset is not None else event


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(field_names, hostile, max_size=6), st.one_of(st.none(), st.integers(0, 10**12)))
def test_every_framing_keeps_an_event_in_its_frame(fields, offset):
    """SSE, line and script framings carry any event's fields intact in exactly one frame."""
    event = _event(fields, offset)
    message = json.loads(event_json(event))
    assert utf16(message["fields"]) == utf16(event.fields)
    sse = SSEFraming().event(event).decode("utf-8")
    lines = sse.split("\n")
    assert sse.endswith("\n\n") and len(lines) == (4 if offset is not None else 3)
    assert json.loads(lines[-3][len("data: "):]) == message
    line = LineFraming().event(event)
    assert line.count(b"\n") == 1 and json.loads(line) == message
    script = ScriptFraming("parent.f").event(event).decode("utf-8")
    inner = script[len("<script>parent.f("):-len(");</script>\n")]
    assert "<" not in inner and json.loads(inner) == message


def test_events_chunk_is_the_chunk_of_the_joined_frames_and_reused_for_the_same_events():
    """Several events make one HTTP chunk of their frames; the next connection with the same events gets
    the same bytes object, other events (even with equal fields) their own chunk."""
    framing = SSEFraming()
    a, b, c = (_event({"n": str(i)}, i) for i in range(3))
    data = framing.event(a) + framing.event(b)
    chunk = framing.events_chunk([a, b])
    assert chunk == b"%x\r\n%s\r\n" % (len(data), data)
    assert framing.events_chunk([a, b]) is chunk
    assert framing.events_chunk([a]) == framing.event_chunk(a)
    assert framing.events_chunk([a, c]) != chunk
    twin = _event({"n": "1"}, 1)
    assert framing.events_chunk([a, twin]) == chunk and framing.events_chunk([a, twin]) is not chunk


def test_position_is_formatted_once():
    """An event's resume position is formatted once and shared; events outside history have none."""
    event = _event({}, 7)
    assert event.position == "ep:7" and event.position is event.position
    assert _event({}, None).position is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_parse_message_only_raises_client_error(data):
    """Any frame or body parses to a message with a string ``type`` or raises ClientError."""
    try:
        message = parse_message(data, max_bytes=150)
    except ClientError as e:
        assert e.status in (400, 413)
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_string_fields_only_raise_client_error(value):
    """Any JSON ``fields`` value becomes a flat str mapping or a ClientError."""
    try:
        fields = string_fields(value)
    except ClientError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@settings(max_examples=300, deadline=None)
@given(st.one_of(hostile, st.from_regex(r"[A-Za-z_$][\w$]{0,8}(\.[A-Za-z_$][\w$]{0,8}){0,5}",
                                         fullmatch=True)))
def test_script_callback_accepts_only_dotted_identifiers(name):
    """A callback name is a dotted identifier path or refused with 400: it cannot inject script."""
    try:
        accepted = script_callback(name)
    except ClientError as e:
        assert e.status == 400
        return
    assert accepted == (name or "parent.pushpy_message")
    assert CALLBACK.match(accepted) and len(accepted) <= 100


@settings(max_examples=300, deadline=None)
@given(st.one_of(hostile, st.builds(lambda e, o: f"{e}:{o}", hostile, st.integers(-5, 10**20))))
def test_parse_position_never_raises(token):
    """A resume token parses to ``(epoch, offset >= 0)`` or ``None``."""
    parsed = parse_position(token)
    if parsed is not None:
        epoch, offset = parsed
        assert epoch and offset >= 0 and f"{epoch}:{offset}".endswith(token.rpartition(":")[2].lstrip("0")
                                                                        or "0")


@given(hostile)
def test_split_subjects_keeps_every_character(subject):
    """A subject list splits on commas only and loses no other character."""
    parts = split_subjects(subject)
    assert "".join(parts) == subject.replace(",", "")
    assert all(parts)
