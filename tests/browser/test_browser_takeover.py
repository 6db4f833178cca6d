"""What pushpy.js relies on when it reconnects before the server noticed the old connection gone."""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import urlencode, urlsplit

import pytest


class RawStream:
    """``GET /pushlet/xhr`` over HTTP/1.0 on a plain socket, read line by line."""

    def __init__(self, origin: str, **params: str) -> None:
        url = urlsplit(origin)
        self.socket = socket.create_connection((url.hostname, url.port), timeout=5)
        self.socket.sendall(f"GET /pushlet/xhr?{urlencode(params)} HTTP/1.0\r\n"
                            f"Host: {url.netloc}\r\n\r\n".encode())
        self.file = self.socket.makefile("rb")
        while self.file.readline() not in (b"\r\n", b""):
            pass  # status line and headers

    def next(self) -> dict:
        """The next message (padding and blank lines skipped)."""
        while True:
            line = self.file.readline()
            if not line:
                raise AssertionError("stream ended")
            if line.strip():
                return json.loads(line)

    def close(self) -> None:
        self.file.close()
        self.socket.close()


@pytest.fixture
def streams():
    opened: list[RawStream] = []
    yield opened
    for stream in opened:
        stream.close()


def test_reconnect_takes_the_session_over_from_a_connection_still_open(server, streams):
    """Events resumed for a new connection of a session go to it, not to the old one still held open."""
    topic = f"/t{uuid.uuid4().hex[:10]}"
    first = RawStream(server.origin, subject=topic)
    streams.append(first)
    opening = first.next()
    (e1,) = server.publish(topic, {"n": "1"})
    assert first.next()["id"] == e1
    (e2,) = server.publish(topic, {"n": "2"})  # written to the old connection: the client never saw it
    assert first.next()["id"] == e2
    second = RawStream(server.origin, subject=topic, session=opening["session"],
                       session_key=opening["session_key"], last_event_id=e1)
    streams.append(second)
    (e3,) = server.publish(topic, {"n": "3"})
    received = [second.next() for _ in range(4)]
    assert [(m["type"], m.get("id"), m.get("recovered")) for m in received] == [
        ("open", None, None), ("recovery", None, True), ("event", e2, None), ("event", e3, None)]
    assert received[0]["session"] == opening["session"]
    with pytest.raises(AssertionError, match="stream ended"):
        first.next()  # the old connection was finished
