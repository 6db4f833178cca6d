"""Engine.IO v4 packets and payloads (sans-IO).

A packet is a type digit and its data: ``0`` open, ``1`` close, ``2`` ping,
``3`` pong, ``4`` message, ``5`` upgrade, ``6`` noop.  Over WebSocket a text
packet is one text frame and a binary message one binary frame (no type).
HTTP long-polling concatenates packets with the record separator ``\\x1e``
and writes a binary message as ``b`` plus its base64.  See
https://socket.io/docs/v4/engine-io-protocol/.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
TYPES = frozenset(OPEN + CLOSE + PING + PONG + MESSAGE + UPGRADE + NOOP)
SEPARATOR = "\x1e"

#: The error answers of the HTTP transport (status 400 unless said otherwise).
UNKNOWN_TRANSPORT = {"code": 0, "message": "Transport unknown"}
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}
BAD_HANDSHAKE_METHOD = {"code": 2, "message": "Bad handshake method"}
BAD_REQUEST = {"code": 3, "message": "Bad request"}
FORBIDDEN = {"code": 4, "message": "Forbidden"}
UNSUPPORTED_VERSION = {"code": 5, "message": "Unsupported protocol version"}

#: A decoded packet: its type and its data (text, bytes for a binary message, or ``None``).
Packet = tuple[str, "str | bytes | None"]


class PacketError(ValueError):
    """Malformed Engine.IO input."""


def error_body(error: dict[str, Any]) -> bytes:
    """The JSON body of one of the error answers above."""
    return json.dumps(error, separators=(",", ":")).encode()


def open_packet(sid: str, upgrades: list[str], ping_interval: int, ping_timeout: int,
                max_payload: int) -> str:
    """The handshake packet (``sid`` first: some clients look for ``0{"sid"``)."""
    return OPEN + json.dumps({"sid": sid, "upgrades": upgrades, "pingInterval": ping_interval,
                              "pingTimeout": ping_timeout, "maxPayload": max_payload},
                             separators=(",", ":"))


def encode_packet(kind: str, data: str | bytes | None = None) -> str | bytes:
    """One packet for a WebSocket frame: text, or the raw bytes of a binary message."""
    if isinstance(data, bytes):
        return data
    return kind + (data or "")


def decode_packet(frame: str | bytes) -> Packet:
    """One packet of a WebSocket frame (a binary frame is a binary message)."""
    if isinstance(frame, bytes):
        return MESSAGE, frame
    if not frame or frame[0] not in TYPES:
        raise PacketError(f"unknown packet type: {frame[:1]!r}")
    return frame[0], frame[1:]


def encode_payload(packets: list[str | bytes]) -> str:
    """Packets (as :func:`encode_packet` made them) as one long-polling body."""
    return SEPARATOR.join(
        "b" + base64.b64encode(p).decode("ascii") if isinstance(p, bytes) else p for p in packets)


def decode_payload(body: str) -> list[Packet]:
    """The packets of a long-polling body; raises :class:`PacketError` on any bad one."""
    if not body:
        raise PacketError("empty payload")
    out: list[Packet] = []
    for part in body.split(SEPARATOR):
        if part[:1] == "b":
            try:
                out.append((MESSAGE, base64.b64decode(part[1:], validate=True)))
            except (binascii.Error, ValueError):
                raise PacketError("bad base64 in a binary packet") from None
        else:
            out.append(decode_packet(part))
    return out
