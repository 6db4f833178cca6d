"""Benchmark targets: one small adapter per server and transport.

A :class:`Target` says how to start the server (a script in ``bench/`` that
takes ``--port`` and ``--heartbeat`` and prints ``READY``), how to subscribe
(a :class:`~load.StreamRecipe` of bytes to send and markers to wait for, or a
:class:`~load.PullRecipe`), and how the publisher posts one message.  The
load client counts delivered events the same way for all (the marker in the
payload), so a new transport is a new entry in :data:`TARGETS`.

Channel ``NAME`` is ``?channel=NAME`` for the naive servers, room ``NAME``
for Socket.IO and subject ``/NAME`` for Pushlet.
"""

from __future__ import annotations

from dataclasses import dataclass

from load import PublishRecipe, PullRecipe, StreamRecipe, http_get

PUSHLET = b"/pushlet/pushlet.srv"


@dataclass(frozen=True)
class Target:
    name: str
    #: Server script in ``bench/`` and its extra arguments.
    script: str
    args: tuple[str, ...] = ()
    stream: StreamRecipe | None = None
    pull: PullRecipe | None = None
    publish: PublishRecipe | None = None
    #: Publish recipe used with ``--pushlet-publish api`` (pushpy targets only).
    publish_api: PublishRecipe | None = None
    note: str = ""

    def publisher(self, mode: str) -> PublishRecipe:
        if mode == "api" and self.publish_api is not None:
            return self.publish_api
        return self.publish


def ws_frame(text: bytes) -> bytes:
    """A masked WebSocket text frame (client to server); the zero mask keeps it readable."""
    assert len(text) < 126
    return bytes([0x81, 0x80 | len(text)]) + b"\0\0\0\0" + text


# -- naive twisted.web --------------------------------------------------------------

_NAIVE_PUBLISH = PublishRecipe(path=b"/publish?channel={channel}")
_NAIVE_STREAM = StreamRecipe(steps=(
    ("send", http_get(b"/sse?channel={channel}", b"Accept: text/event-stream\r\n")),
    ("wait", b": ok\n\n"),
))
_NAIVE_POLL = PullRecipe(first=http_get(b"/poll?channel={channel}"),
                         next=http_get(b"/poll?channel={channel}"))

# -- pushpy: Pushlet ----------------------------------------------------------------


def _pushlet_stream(fmt: bytes) -> StreamRecipe:
    return StreamRecipe(steps=(
        ("send", http_get(PUSHLET + b"?p_event=join-listen&p_format=" + fmt
                          + b"&p_mode=stream&p_subject=/{channel}")),
        ("wait", b"join-listen-ack"),
    ))


_PUSHLET_PUBLISH = PublishRecipe(
    path=PUSHLET,
    body=b"p_event=publish&p_id={pid}&p_subject=/{channel}&m={payload}",
    content_type=b"application/x-www-form-urlencoded",
    setup=http_get(PUSHLET + b"?p_event=join&p_format=xml"),
    setup_id=rb'p_id="([^"]+)"',
    reject=b'p_event="nack"',
)
_PUSHPY_API_PUBLISH = PublishRecipe(path=b"/bench/publish?channel={channel}")
_PUSHLET_PULL = PullRecipe(
    first=http_get(PUSHLET + b"?p_event=join-listen&p_format=xml&p_mode=pull&p_subject=/{channel}"),
    next=http_get(PUSHLET + b"?p_id={sid}&p_event=refresh"),
    id_pattern=rb'p_id="([^"]+)"',
)

# -- pushpy: native JSON protocol (docs/protocol.md) ---------------------------------------

_OPEN = b'"type":"open"'


def _native_stream(path: bytes) -> StreamRecipe:
    return StreamRecipe(steps=(("send", http_get(b"/pushlet/" + path + b"?subject=/{channel}")),
                               ("wait", _OPEN)))


_NATIVE_WS = StreamRecipe(steps=(
    ("send", http_get(b"/pushlet/ws?subject=/{channel}",
                      b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: cHVzaHB5LWJlbmNoLWtleQ==\r\n")),
    ("wait", _OPEN),
))
# The first request is a poll (answers at once with the session and its key), then long-polls continue it.
_NATIVE_LONGPOLL = PullRecipe(
    first=http_get(b"/pushlet/poll?subject=/{channel}"),
    next=http_get(b"/pushlet/longpoll?session={sid}&session_key={key}"),
    id_pattern=rb'"session":"([^"]+)".*?"session_key":"(?P<key>[^"]+)"',
)

# -- python-socketio on aiohttp ---------------------------------------------------------

_SIO_STREAM = StreamRecipe(
    steps=(
        ("send", http_get(b"/socket.io/?EIO=4&transport=websocket&room={channel}",
                          b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: cHVzaHB5LWJlbmNoLWtleQ==\r\n")),
        ("wait", b'0{"sid"'),          # Engine.IO open packet
        ("send", ws_frame(b"40")),     # Socket.IO connect to namespace /
        ("wait", b"40{"),              # connected (and in the room)
    ),
    # An Engine.IO ping is the unmasked one-byte text frame "2": answer "3".
    replies=((b"\x81\x012", ws_frame(b"3")),),
)

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("naive", "naive_server.py", ("--mode", "request"), stream=_NAIVE_STREAM, pull=_NAIVE_POLL,
           publish=_NAIVE_PUBLISH,
           note="twisted.web, chunked SSE via Request.write; pull: long-poll, no queue"),
    Target("naive-transport", "naive_server.py", ("--mode", "transport"), stream=_NAIVE_STREAM,
           publish=_NAIVE_PUBLISH, note="twisted.web, pre-framed chunks written to the transport"),
    Target("pushlet-xml", "pushpy_server.py", stream=_pushlet_stream(b"xml"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH, note="pushpy Pushlet stream, xml"),
    Target("pushlet-js", "pushpy_server.py", stream=_pushlet_stream(b"js"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH, note="pushpy Pushlet stream, js"),
    Target("pushlet-pull", "pushpy_server.py", pull=_PUSHLET_PULL,
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy Pushlet pull (refresh at once, p_wait ignored)"),
    Target("pushpy-sse", "pushpy_server.py", stream=_native_stream(b"sse"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native, Server-Sent Events"),
    Target("pushpy-ws", "pushpy_server.py", stream=_NATIVE_WS,
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native, WebSocket (autobahn)"),
    Target("pushpy-xhr", "pushpy_server.py", stream=_native_stream(b"xhr"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native, XHR streaming"),
    Target("pushpy-longpoll", "pushpy_server.py", pull=_NATIVE_LONGPOLL,
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native long-poll (poll first, then longpoll?session=)"),
    Target("pushpy-sse-redis-1w", "pushpy_server.py",
           ("--backplane", "redis://127.0.0.1:6379/0", "--workers", "1"), stream=_native_stream(b"sse"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native SSE, Redis backplane, 1 process"),
    Target("pushpy-sse-redis-2w", "pushpy_server.py",
           ("--backplane", "redis://127.0.0.1:6379/0", "--workers", "2"), stream=_native_stream(b"sse"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native SSE, Redis backplane, 2 worker processes sharing the port"),
    # As many idle streams as one machine holds: each process may open 20,000 files here.
    Target("pushpy-sse-redis-4w", "pushpy_server.py",
           ("--backplane", "redis://127.0.0.1:6379/0", "--workers", "4"), stream=_native_stream(b"sse"),
           publish=_PUSHLET_PUBLISH, publish_api=_PUSHPY_API_PUBLISH,
           note="pushpy native SSE, Redis backplane, 4 worker processes sharing the port"),
    Target("python-socketio", "sio_server.py", stream=_SIO_STREAM, publish=_NAIVE_PUBLISH,
           note="python-socketio on aiohttp, Engine.IO websocket"),
    # The same load client and the same publish request as python-socketio: room per channel,
    # POST /publish emits "m" to the room (pushpy_server.py), through pushpy's backplane.
    Target("pushpy-socketio", "pushpy_server.py", stream=_SIO_STREAM, publish=_NAIVE_PUBLISH,
           note="pushpy's Socket.IO endpoint, Engine.IO websocket"),
)}
