"""Engine.IO and Socket.IO packet codecs (sans-IO), with hypothesis round-trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.wire import engineio as E
from pushpy.wire import socketio as S

# -- Engine.IO -----------------------------------------------------------------------


def test_open_packet_puts_sid_first():
    text = E.open_packet("abc", ["websocket"], 25000, 20000, 1000000)
    assert text.startswith('0{"sid":"abc"')
    assert json.loads(text[1:]) == {"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000,
                                    "pingTimeout": 20000, "maxPayload": 1000000}


def test_payload_concatenates_with_record_separator_and_base64_for_binary():
    body = E.encode_payload(["4hello", "2", b"\x01\x02\x03"])
    assert body == "4hello\x1e2\x1ebAQID"
    assert E.decode_payload(body) == [("4", "hello"), ("2", ""), ("4", b"\x01\x02\x03")]


def test_websocket_frames_decode_to_packets():
    assert E.decode_packet("2probe") == ("2", "probe")
    assert E.decode_packet(b"\xff") == ("4", b"\xff")
    assert E.encode_packet("4", "x") == "4x" and E.encode_packet("4", b"x") == b"x"


@pytest.mark.parametrize("body", ["", "9", "x", "4ok\x1e", "bnot base64!", "4a\x1e\x1e4b"])
def test_malformed_payloads_are_refused(body):
    with pytest.raises(E.PacketError):
        E.decode_payload(body)


def test_error_bodies_are_the_protocol_json():
    assert E.error_body(E.UNKNOWN_SID) == b'{"code":1,"message":"Session ID unknown"}'


packet_text = st.text(alphabet=st.characters(blacklist_characters="\x1e", blacklist_categories=("Cs",)))
engine_packets = st.lists(st.one_of(
    st.tuples(st.sampled_from("0123456"), packet_text).map(lambda p: p[0] + p[1]),
    st.binary(min_size=1)), min_size=1, max_size=8)


@settings(deadline=None)
@given(engine_packets)
def test_payload_round_trip(packets):
    decoded = E.decode_payload(E.encode_payload(packets))
    again = [data if isinstance(data, bytes) else kind + data for kind, data in decoded]
    assert again == packets


# -- Socket.IO -----------------------------------------------------------------------

@pytest.mark.parametrize(("packet", "text"), [
    (S.Packet(S.CONNECT), "0"),
    (S.Packet(S.CONNECT, "/admin", {"token": "t"}), '0/admin,{"token":"t"}'),
    (S.Packet(S.CONNECT, "/", {"sid": "x"}), '0{"sid":"x"}'),
    (S.Packet(S.DISCONNECT, "/admin"), "1/admin,"),
    (S.Packet(S.EVENT, "/", ["hello", 1]), '2["hello",1]'),
    (S.Packet(S.EVENT, "/admin", ["hello"], id=456), '2/admin,456["hello"]'),
    (S.Packet(S.ACK, "/", [], id=7), "37[]"),
    (S.Packet(S.CONNECT_ERROR, "/", {"message": "Not authorized"}), '4{"message":"Not authorized"}'),
])
def test_packets_encode_as_the_protocol_shows_them(packet, text):
    assert S.encode(packet) == [text]
    assert S.decode(text) == packet


def test_binary_arguments_become_placeholders_and_attachments():
    encoded = S.encode(S.Packet(S.EVENT, "/", ["file", b"\x01\x02", {"more": b"x"}], id=3))
    assert encoded == ['52-3["file",{"_placeholder":true,"num":0},{"more":{"_placeholder":true,"num":1}}]',
                       b"\x01\x02", b"x"]
    decoder = S.Decoder()
    assert decoder.feed(encoded[0]) is None
    assert decoder.feed(encoded[1]) is None
    packet = decoder.feed(encoded[2])
    assert packet.type == S.BINARY_EVENT and packet.id == 3
    assert packet.data == ["file", b"\x01\x02", {"more": b"x"}]


@pytest.mark.parametrize("text", [
    "", "7", "x", "2", "2{}", '2["connect"]', '2[{"a":1}]', "2[", "1{}", '0"s"', "3{}",
    '5x-["a"]', '511-["a"]', "2[NaN]",
    "2" + "1" * 20 + '["a"]', "0/" + "n" * 300 + ",",
])
def test_malformed_packets_are_refused(text):
    decoder = S.Decoder()
    with pytest.raises(S.PacketError):
        decoder.feed(text)


def test_attachment_out_of_turn_is_refused():
    decoder = S.Decoder()
    with pytest.raises(S.PacketError):
        decoder.feed(b"stray")
    decoder.feed('51-["a",{"_placeholder":true,"num":0}]')
    with pytest.raises(S.PacketError):
        decoder.feed('2["b"]')
    bad = S.Decoder()
    bad.feed('51-["a",{"_placeholder":true,"num":5}]')
    with pytest.raises(S.PacketError):
        bad.feed(b"x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("_placeholder", S.BYTES_KEY)),
                      children, max_size=4),
    max_leaves=12)
namespaces = st.sampled_from(["/", "/admin", "/a/b"])
event_names = st.text(min_size=1, max_size=12).filter(lambda n: n not in S.RESERVED_EVENTS)


@settings(deadline=None)
@given(namespaces, event_names, st.lists(json_values, max_size=4),
       st.none() | st.integers(0, 10**12))
def test_event_round_trip(nsp, name, args, ack):
    messages = S.encode(S.Packet(S.EVENT, nsp, [name, *args], id=ack))
    decoder = S.Decoder(max_attachments=1000)
    packets = [decoder.feed(m) for m in messages]
    packet = packets[-1]
    assert all(p is None for p in packets[:-1])
    assert (packet.nsp, packet.id, packet.data) == (nsp, ack, [name, *args])


@settings(deadline=None)
@given(event_names, st.lists(json_values, max_size=4))
def test_events_as_fields_round_trip(name, args):
    fields = S.event_fields(name, args)
    assert all(isinstance(v, str) for v in fields.values())
    assert S.event_args(fields) == (name, args)


def test_one_object_argument_is_also_flat_fields():
    fields = S.event_fields("chat", [{"text": "hi", "n": 2, "p_subject": "/x", "bad name": 1}])
    assert fields["text"] == "hi" and fields["n"] == "2"
    assert "bad name" not in fields and fields.get("p_subject") is None


def test_fields_of_other_publishers_are_one_object_argument():
    fields = {"p_event": "data", "p_subject": "/chat", "text": "hi"}
    assert S.event_args(fields) == ("data", [fields])
    assert S.event_args({**fields, "sio_event": "chat"}) == ("chat", [fields])
