"""WebSocket frames built once per event: the same bytes autobahn would send."""

from __future__ import annotations

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from pushpy.core.events import Event
from pushpy.web.websocket import HEARTBEAT, BatchFrames, _payload
from pushpy.wire.native import event_json, event_ws_frame, ws_text_frame


def autobahn_frame(payload: bytes) -> bytes:
    """What autobahn's ``sendMessage`` writes for a text message on an open connection."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN
    transport.clear()
    protocol.sendMessage(payload, isBinary=False)
    return transport.value()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_bytes_match_autobahn(size):
    """Every payload length class (7-bit, 16-bit, 64-bit) frames exactly as autobahn frames it."""
    payload = ("é" * size).encode()[:size]
    frame = ws_text_frame(payload)
    assert frame == autobahn_frame(payload)
    assert _payload(frame) == payload


def test_event_frame_is_cached_on_the_event():
    """An event's frame is built once and holds its JSON message."""
    event = Event({"p_event": "data", "p_subject": "/a", "m": "x" * 300}, offset=3, epoch="e")
    frame = event_ws_frame(event)
    assert event_ws_frame(event) is frame
    assert _payload(frame) == event_json(event).encode()
    assert _payload(HEARTBEAT) == b'{"type":"hb"}'


def test_batch_frame_reused_for_the_same_events_only():
    """Connections flushed with the same events share one frame; other events get their own."""
    a, b, c = (Event({"p_event": "data", "p_subject": "/a", "n": str(i)}) for i in range(3))
    batches = BatchFrames()
    first = batches.frame((a, b))
    assert batches.frame((a, b)) is first
    assert _payload(first) == f"[{event_json(a)},{event_json(b)}]".encode()
    assert _payload(batches.frame((a, c))) == f"[{event_json(a)},{event_json(c)}]".encode()
    same_fields = Event(dict(b.fields))
    assert batches.frame((a, same_fields)) is not first
