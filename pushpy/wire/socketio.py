"""Socket.IO v5 packets, binary attachments, and events as pushpy fields (sans-IO).

A packet is ``<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]``
with types ``0`` CONNECT, ``1`` DISCONNECT, ``2`` EVENT, ``3`` ACK, ``4``
CONNECT_ERROR, ``5`` BINARY_EVENT, ``6`` BINARY_ACK; the namespace is left
out when it is ``/``.  Binary arguments travel as separate Engine.IO binary
messages after the packet, which holds ``{"_placeholder":true,"num":N}`` in
their place.  See https://socket.io/docs/v4/socket-io-protocol/.

pushpy events are flat string fields; :func:`event_fields` and
:func:`event_args` map a Socket.IO event (a name and JSON arguments) onto
them and back (``docs/socketio.md``, "Events as fields").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pushpy import protocol as P
from pushpy.wire.escape import valid_name
from pushpy.wire.native import dumps

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
#: Event names a client may not emit (the client library uses them itself).
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting",
                             "newListener", "removeListener"})
#: Fields of a pushpy event carrying a Socket.IO event's name and its arguments (JSON).
EVENT_FIELD = "sio_event"
ARGS_FIELD = "sio_args"
#: How a binary argument is kept inside ``sio_args``: ``{"$b64": "<base64>"}``.
BYTES_KEY = "$b64"
MAX_ID_DIGITS = 15
MAX_NAMESPACE = 256


class PacketError(ValueError):
    """Malformed Socket.IO input."""


@dataclass(slots=True)
class Packet:
    """One Socket.IO packet; ``data`` holds bytes where attachments were."""

    type: int
    nsp: str = "/"
    data: Any = None
    id: int | None = None
    attachments: int = 0
    buffers: list[bytes] = field(default_factory=list)


def _json(data: Any) -> str:
    return dumps(data)


def encode(packet: Packet) -> list[str | bytes]:
    """The Engine.IO messages of ``packet``: its text, then its attachments."""
    data = packet.data
    buffers: list[bytes] = []
    kind = packet.type
    if data is not None and kind in (EVENT, ACK, BINARY_EVENT, BINARY_ACK):
        data = _deconstruct(data, buffers)
        if buffers:
            kind = BINARY_EVENT if kind in (EVENT, BINARY_EVENT) else BINARY_ACK
        elif kind == BINARY_EVENT:
            kind = EVENT
        elif kind == BINARY_ACK:
            kind = ACK
    text = str(kind)
    if buffers:
        text += f"{len(buffers)}-"
    if packet.nsp and packet.nsp != "/":
        text += packet.nsp + ","
    if packet.id is not None:
        text += str(packet.id)
    if data is not None:
        text += _json(data)
    return [text, *buffers]


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list | tuple):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, dict):
        if data.get("_placeholder") is True and len(data) == 2:
            num = data.get("num")
            if type(num) is not int or not 0 <= num < len(buffers):
                raise PacketError("bad attachment placeholder")
            return buffers[num]
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    return data


def _refuse_constant(name: str) -> Any:
    raise PacketError(f"not JSON: {name}")


def parse_json(text: str) -> Any:
    """Strict JSON (no ``NaN``/``Infinity``), errors as :class:`PacketError`."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise PacketError("invalid JSON data") from None


def decode(text: str, *, max_attachments: int = 10) -> Packet:
    """A packet from its text (attachments still to come: see :class:`Decoder`)."""
    if not text or not text[0].isdigit() or int(text[0]) > BINARY_ACK:
        raise PacketError(f"unknown packet type: {text[:1]!r}")
    packet = Packet(int(text[0]))
    i = 1
    n = len(text)
    if packet.type in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", 1, 12)
        count = text[1:dash] if dash > 0 else ""
        if not (count.isascii() and count.isdigit()):
            raise PacketError("illegal attachments")
        packet.attachments = int(count)
        if packet.attachments > max_attachments:
            raise PacketError(f"too many attachments (at most {max_attachments})")
        i = dash + 1
    if i < n and text[i] == "/":
        comma = text.find(",", i, i + MAX_NAMESPACE + 1)
        end = comma if comma >= 0 else n
        if end - i > MAX_NAMESPACE:
            raise PacketError("namespace too long")
        packet.nsp = text[i:end]
        i = end + 1 if comma >= 0 else n
    start = i
    while i < n and text[i].isascii() and text[i].isdigit():
        i += 1
    if i > start:
        if i - start > MAX_ID_DIGITS:
            raise PacketError("ack id too long")
        packet.id = int(text[start:i])
    if i < n:
        packet.data = parse_json(text[i:])
    if not _valid_payload(packet):
        raise PacketError("invalid payload")
    return packet


def _valid_payload(packet: Packet) -> bool:
    kind, data = packet.type, packet.data
    if kind == CONNECT:
        return data is None or isinstance(data, dict)
    if kind == DISCONNECT:
        return data is None
    if kind == CONNECT_ERROR:
        return isinstance(data, str | dict)
    if kind in (EVENT, BINARY_EVENT):
        return (isinstance(data, list) and bool(data)
                and ((isinstance(data[0], str) and data[0] not in RESERVED_EVENTS)
                     or type(data[0]) in (int, float)))
    return isinstance(data, list)  # ACK, BINARY_ACK


class Decoder:
    """Reassembles packets from Engine.IO messages: a text, then its attachments."""

    def __init__(self, *, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments
        self.pending: Packet | None = None

    def feed(self, message: str | bytes) -> Packet | None:
        """The complete packet ``message`` finishes, or ``None`` while attachments are due."""
        if isinstance(message, bytes):
            pending = self.pending
            if pending is None:
                raise PacketError("unexpected binary attachment")
            pending.buffers.append(message)
            if len(pending.buffers) < pending.attachments:
                return None
            self.pending = None
            pending.data = _reconstruct(pending.data, pending.buffers)
            return pending
        if self.pending is not None:
            raise PacketError("text packet while attachments were due")
        packet = decode(message, max_attachments=self.max_attachments)
        if packet.attachments:
            self.pending = packet
            return None
        if packet.type in (BINARY_EVENT, BINARY_ACK):
            packet.data = _reconstruct(packet.data, [])
        return packet


# -- Socket.IO events as pushpy fields ---------------------------------------------

def _encode_bytes(data: Any) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        return {BYTES_KEY: base64.b64encode(bytes(data)).decode("ascii")}
    if isinstance(data, list | tuple):
        return [_encode_bytes(item) for item in data]
    if isinstance(data, dict):
        return {key: _encode_bytes(value) for key, value in data.items()}
    return data


def _decode_bytes(data: Any) -> Any:
    if isinstance(data, dict):
        if len(data) == 1 and isinstance(data.get(BYTES_KEY), str):
            return base64.b64decode(data[BYTES_KEY])
        return {key: _decode_bytes(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_decode_bytes(item) for item in data]
    return data


def event_fields(name: str, args: list[Any] | tuple[Any, ...]) -> dict[str, str]:
    """The pushpy fields of event ``name`` with ``args``.

    ``sio_event`` is the name and ``sio_args`` the arguments as a JSON array
    (bytes as ``{"$b64": ...}``).  When the only argument is an object, its
    members are also fields of their own (text as is, other values as JSON),
    so Pushlet and SSE subscribers read them like any published field;
    members whose name is no valid field name or starts with ``p_``/``sio_``
    are only in ``sio_args``.
    """
    fields = {EVENT_FIELD: name, ARGS_FIELD: _json(_encode_bytes(list(args)))}
    if len(args) == 1 and isinstance(args[0], dict):
        for key, value in args[0].items():
            if (isinstance(key, str) and valid_name(key) and not key.startswith(("p_", "sio_"))
                    and not isinstance(value, bytes | bytearray)):
                fields[key] = value if isinstance(value, str) else _json(value)
    return fields


def event_args(fields: Mapping[str, str]) -> tuple[str, list[Any]]:
    """The Socket.IO event name and arguments of a pushpy event's fields.

    An event made by :func:`event_fields` gives back its name and arguments.
    Any other (a Pushlet or native publish, a server ``publish``) is named by
    its ``sio_event`` field, else its ``p_event`` (``data``), and has one
    argument: the object of its fields.
    """
    args = fields.get(ARGS_FIELD)
    name = fields.get(EVENT_FIELD) or fields.get(P.P_EVENT, "data")
    if args is not None:
        try:
            decoded = json.loads(args)
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            return name, _decode_bytes(decoded)
    return name, [{k: v for k, v in fields.items() if k != EVENT_FIELD}]
