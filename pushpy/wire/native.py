"""pushpy's own JSON messages, and their framing for each streaming transport.

Every modern transport (SSE, WebSocket, XHR streaming, hidden-iframe script
streaming, long-poll, poll) carries the same messages, one JSON object each
with a ``type``::

    {"type": "open", "session": "...", "position": "epoch:offset", "heartbeat": 20}
    {"type": "event", "subject": "/a", "id": "epoch:offset", "fields": {...}}
    {"type": "recovery", "recovered": true, "count": 3}
    {"type": "gap", "recovered": false, "reason": "queue overflow", "dropped": 5}
    {"type": "ack", "ref": "...", ...}   {"type": "nack", "ref": "...", "reason": "..."}
    {"type": "unsubscribed", "subject": "/a", "id": "epoch:offset", "reason": "revoked"}
    {"type": "hb"}   {"type": "reconnect"}   {"type": "close", "reason": "..."}

``id`` is the event's resume position (unicast, user and broadcast events
have one too: history keeps them for the sessions they address).  The JSON text never contains a raw
``<``, ``>``, ``&``, U+2028 or U+2029 (they are ``\\uXXXX`` escapes), so the
same bytes are safe inside a ``<script>`` element, an SSE ``data:`` line and
a WebSocket text frame.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from typing import Any

from pushpy import protocol as P
from pushpy.core.events import Event, Route
from pushpy.core.sessions import EndReason, end_text
from pushpy.errors import ClientError
from pushpy.wire.escape import js_string

_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}

def dumps(message: Mapping[str, Any]) -> str:
    """``message`` as one line of script-safe JSON."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    if _SURROGATE.search(text):
        text = json.dumps(message, ensure_ascii=True, separators=(",", ":"))
    return _SCRIPT_UNSAFE.sub(lambda m: _UNSAFE_ESCAPES[m.group()], text)


#: The ``to`` of events that reached a session other than by its subscriptions.
DIRECTED = {Route.USER: "user", Route.UNICAST: "session", Route.BROADCAST: "all"}


def event_message(event: Event) -> dict[str, Any]:
    """The JSON message of an event.

    An event sent to a user, a session or everyone says so in ``to``: its
    subject is only a label, so clients give it to no subscription handler.
    """
    name = event.name
    if name == P.DATA:
        message = {"type": "event", "subject": event.subject, "id": event.position,
                   "fields": event.fields}
        to = DIRECTED.get(event.route)
        if to is not None:
            message["to"] = to
        return message
    if name == P.NACK:
        return {"type": "nack", "reason": event.fields.get(P.P_REASON, "")}
    if name == P.ABORT:
        return close_message(event.fields.get(P.P_REASON, "server closed"))
    if name == P.GAP:
        return {"type": "gap", "recovered": False, "reason": event.fields.get(P.P_REASON, ""),
                "dropped": int(event.fields.get("dropped", "0"))}
    if name == P.UNSUBSCRIBED:
        return {"type": "unsubscribed", "subject": event.subject, "id": event.position,
                "reason": event.fields.get(P.P_REASON, "")}
    if name == P.DISCONNECTED:
        return close_message(event.fields.get(P.P_REASON, ""), reconnect=False)
    if name == P.RECOVERY:
        recovered = event.fields.get("recovered") == "true"
        message = {"type": "recovery", "recovered": recovered,
                   "count": int(event.fields.get("count", "0"))}
        if not recovered:
            message["reason"] = event.fields.get(P.P_REASON, "")
        return message
    return {"type": "event", "name": name, "subject": event.subject, "id": event.position,
            "fields": event.fields}


def close_message(reason: str, *, reconnect: bool = True) -> dict[str, Any]:
    """The ``close`` message: the session ended; ``reconnect: false`` when the application ended it."""
    message: dict[str, Any] = {"type": "close", "reason": reason}
    if not reconnect:
        message["reconnect"] = False
    return message


def session_closed(session: Any, reason: EndReason) -> dict[str, Any]:
    """The ``close`` message of ``session`` ended for ``reason``."""
    return close_message(end_text(session, reason), reconnect=reason is not EndReason.REVOKED)


def event_json(event: Event) -> str:
    """The JSON text of ``event``, encoded once and cached on the event."""
    text = event.wire_cache.get("json")
    if text is None:
        text = event.wire_cache["json"] = dumps(event_message(event))
    return text  # type: ignore[return-value]


def ws_text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, unfragmented WebSocket text frame (RFC 6455 5.2).

    A server's frames are never masked, so the frame of an event is the same
    bytes for every connection that did not negotiate an extension.
    """
    size = len(payload)
    if size <= 125:
        return b"\x81" + bytes((size,)) + payload
    if size <= 0xFFFF:
        return b"\x81\x7e" + struct.pack("!H", size) + payload
    return b"\x81\x7f" + struct.pack("!Q", size) + payload


def event_ws_frame(event: Event) -> bytes:
    """The WebSocket text frame of ``event``'s JSON message, built once per event."""
    frame = event.wire_cache.get("ws")
    if frame is None:
        frame = event.wire_cache["ws"] = ws_text_frame(event_json(event).encode())
    return frame  # type: ignore[return-value]


class Framing:
    """How one streaming transport frames messages in an HTTP response."""

    name = ""
    content_type = b""
    #: Written first (padding that makes browsers render incrementally).
    preamble = b""
    heartbeat = b""

    def frame(self, text: str, event_id: str | None = None) -> bytes:
        raise NotImplementedError

    def event(self, event: Event) -> bytes:
        """The framed bytes of ``event``, cached per framing."""
        data = event.wire_cache.get(self.name)
        if data is None:
            data = event.wire_cache[self.name] = self.frame(event_json(event), event.position)
        return data  # type: ignore[return-value]

    def event_chunk(self, event: Event) -> bytes:
        """:meth:`event` framed as one HTTP/1.1 chunk, cached per framing."""
        key = self.name + ":chunk"
        data = event.wire_cache.get(key)
        if data is None:
            frame = self.event(event)
            data = event.wire_cache[key] = b"%x\r\n%s\r\n" % (len(frame), frame)
        return data  # type: ignore[return-value]

    def events_chunk(self, events: list[Event]) -> bytes:
        """Several events framed as one HTTP/1.1 chunk.

        Every connection flushed in one turn usually takes the same events,
        so the last chunk built is kept and reused while they are the same.
        """
        if len(events) == 1:
            return self.event_chunk(events[0])
        last = self._last_batch
        if last is not None and last[0] == events:  # Event has no __eq__: compared by identity
            return last[1]
        data = b"".join([self.event(event) for event in events])
        chunk = b"%x\r\n%s\r\n" % (len(data), data)
        self._last_batch = (events, chunk)
        return chunk

    _last_batch: tuple[list[Event], bytes] | None = None

    def message(self, message: Mapping[str, Any], event_id: str | None = None) -> bytes:
        return self.frame(dumps(message), event_id)


class SSEFraming(Framing):
    """Server-Sent Events: ``id:`` lines carry the resume position; comments are heartbeats."""

    name = "sse"
    content_type = b"text/event-stream; charset=utf-8"

    def __init__(self, retry_millis: int = 2000) -> None:
        # 2 KB comment: old proxies and browsers start rendering after it.
        self.preamble = (":" + " " * 2048 + "\n" + f"retry: {int(retry_millis)}\n\n").encode()
        # A comment keeps proxies from timing out; the named event lets the
        # client's watchdog see it (EventSource hides comments).
        self.heartbeat = b':hb\nevent: hb\ndata: {"type":"hb"}\n\n'

    def frame(self, text: str, event_id: str | None = None) -> bytes:
        head = f"id: {event_id}\n" if event_id else ""
        return f"{head}data: {text}\n\n".encode()


class LineFraming(Framing):
    """XHR streaming: one JSON message per line after a padding line."""

    name = "xhr"
    content_type = b"application/x-ndjson; charset=utf-8"
    preamble = b" " * 2048 + b"\n"
    heartbeat = b'{"type":"hb"}\n'

    def frame(self, text: str, event_id: str | None = None) -> bytes:
        return text.encode() + b"\n"


class ScriptFraming(Framing):
    """Hidden-iframe streaming: one ``<script>`` per message calling the parent's callback."""

    name = "htmlfile"
    content_type = b"text/html; charset=utf-8"

    def __init__(self, callback: str = "parent.pushpy_message") -> None:
        self.callback = callback
        self.name = f"htmlfile:{callback}"
        self.preamble = (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>"
            + "<!--" + " " * 1024 + "-->\n").encode()
        self.heartbeat = self.frame('{"type":"hb"}')

    def frame(self, text: str, event_id: str | None = None) -> bytes:
        return f"<script>{self.callback}({text});</script>\n".encode()


#: A JS callback path the iframe transport accepts: dotted identifiers only.
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*){0,4}\Z")


def script_callback(name: str | None, default: str = "parent.pushpy_message") -> str:
    """A client-chosen callback name, checked so it cannot inject script."""
    if not name:
        return default
    if not CALLBACK.match(name) or len(name) > 100:
        raise ClientError(f"invalid callback name: {js_string(name[:40])}", 400)
    return name


def parse_message(data: bytes | str, *, max_bytes: int) -> dict[str, Any]:
    """One client message (a JSON object with a string ``type``), or ClientError."""
    if len(data) > max_bytes:
        raise ClientError(f"message too large (at most {max_bytes} bytes)", 413)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        message = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise ClientError("message is not valid UTF-8 JSON", 400) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ClientError("message must be a JSON object with a string 'type'", 400)
    return message


def string_fields(value: Any) -> dict[str, str]:
    """The ``fields`` of a publish: a flat object of strings (numbers and booleans are converted)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientError("'fields' must be an object")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        elif not isinstance(item, str):
            raise ClientError(f"field {key[:40]!r} must be a string, number or boolean")
        out[key] = item
    return out
