"""A fuzz run of the HTTP and WebSocket layer over loopback: thousands of malformed requests.

Request lines, bad encodings, huge headers, truncated and oversized bodies,
random Pushlet ``p_event`` and parameters, random native and API requests,
and random WebSocket frames after a real handshake.  Afterwards the server
logged no unexpected failure, serves a normal client correctly, and its
memory (``tracemalloc``) is back near where it started once the sessions the
fuzz legitimately opened have expired.  Inputs come from a seeded generator:
a failure names the seed to replay.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import random
import struct
import tracemalloc
from collections import Counter

import pytest_twisted
from native_client import events, xml_events
from server_support import eventually, sleep
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogPublisher

pytest_plugins = ("native_fixtures",)

SEED = int(os.environ.get("PUSHPY_FUZZ_SEED", "20251125"))
HTTP_CASES = 3_000
WS_CASES = 400
CONCURRENCY = 48
#: How long a fuzz connection waits for the server to answer and close before it hangs up.
PATIENCE = 0.25

PATHS = ["pushlet.srv", "sse", "xhr", "iframe", "longpoll", "poll", "send", "api/publish", "ws", "nowhere",
         "lib/pushpy.js", ""]
EVENTS = ["join", "join-listen", "listen", "refresh", "subscribe", "unsubscribe", "publish", "hb", "leave",
          "poll", "abort", "join-", "", "JOIN"]
HOSTILE = ["</script><script>alert(1)</script>", "<!--", "\u2028", "\ud800", "\x00", "%", "%zz", "%ff%fe",
           "\\", "\"'", "a" * 300, "/", ",", ",,,", "../../etc/passwd", "javascript:alert(1)", "é", "\r\n"]


class Raw(Protocol):
    """Writes its bytes, reads until the server closes or ``PATIENCE`` passes, then hangs up."""

    def __init__(self, chunks: list[bytes], statuses: Counter) -> None:
        self.chunks = chunks
        self.statuses = statuses
        self.head = b""
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        for chunk in self.chunks:
            self.transport.write(chunk)
        self.timer = reactor.callLater(PATIENCE, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if len(self.head) < 12:
            self.head += data[:12]

    def connectionLost(self, reason) -> None:
        if self.timer.active():
            self.timer.cancel()
        self.statuses[self.head[9:12].decode("latin-1") if self.head.startswith(b"HTTP/") else "none"] += 1
        self.done.callback(None)


def pick(rng: random.Random, values: list[str]) -> str:
    return rng.choice(values) if rng.random() < 0.8 else "".join(rng.choice(HOSTILE) for _ in range(3))


def raw_text(rng: random.Random, size: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(size)))


def query(rng: random.Random, known: list[str]) -> bytes:
    params = []
    for _ in range(rng.randrange(8)):
        name = rng.choice(["p_event", "p_id", "p_format", "p_mode", "p_subject", "p_label", "p_sid", "p_to",
                           "session", "subject", "last_event_id", "callback", "token", "x", "text", ""])
        if name == "p_event":
            value = pick(rng, EVENTS)
        elif name in ("p_id", "session", "p_to"):
            value = rng.choice(known) if known and rng.random() < 0.7 else pick(rng, ["x", "abc"])
        elif name == "p_format":
            value = pick(rng, ["js", "xml", "xml-strict", "ser", "json"])
        elif name == "p_mode":
            value = pick(rng, ["stream", "pull", "poll", "x"])
        elif name == "last_event_id":
            value = pick(rng, ["a:1", "x", ":", "0:99999999999999999999"])
        else:
            value = pick(rng, ["/a", "/a/b", "/", "parent.f", "hi"])
        encoded = value.encode("utf-8", "surrogatepass")
        if rng.random() < 0.7:
            encoded = b"".join(b"%%%02X" % b if rng.random() < 0.5 else bytes([b]) for b in encoded)
        params.append(name.encode() + b"=" + encoded)
    if rng.random() < 0.1:
        params.append(raw_text(rng, 60))
    return b"&".join(params)


def http_case(rng: random.Random, known: list[str]) -> list[bytes]:
    """One malformed (or sometimes valid) HTTP request, as the chunks to write."""
    kind = rng.randrange(10)
    path = b"/pushlet/" + pick(rng, PATHS).encode("utf-8", "surrogatepass")
    method = rng.choice([b"GET", b"POST", b"OPTIONS", b"PUT", b"HEAD", b"G\x00T", b"DELETE"])
    version = rng.choice([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/9.9", b"", b"HTTP/1.1 x"])
    headers = [b"Host: 127.0.0.1"]
    if rng.random() < 0.3:
        origins = [b"https://evil.example", b"null", b"http://127.0.0.1", b"\xff"]
        headers.append(b"Origin: " + rng.choice(origins))
    if rng.random() < 0.2:
        headers.append(b"Cookie: pushpy_token=" + raw_text(rng, 40).replace(b"\r", b"").replace(b"\n", b""))
    if rng.random() < 0.2:
        token = pick(rng, ["x", "a.b", ""]).encode("utf-8", "surrogatepass")
        headers.append(b"Authorization: Bearer " + token)
    body = b""
    if kind == 0:  # a random request line
        return [raw_text(rng, 200) + b"\r\n\r\n"]
    if kind == 1:  # huge headers
        headers.append(b"X-Big: " + b"a" * rng.choice([1_000, 20_000, 70_000]))
        headers.extend(b"X-%d: v" % i for i in range(rng.choice([10, 600])))
    if kind == 2:  # a body shorter than announced, or a lying chunked body
        body = raw_text(rng, 300)
        headers.append(b"Content-Length: %d" % (len(body) + rng.randrange(1, 10_000)))
        method = b"POST"
    elif kind == 3:
        headers.append(b"Transfer-Encoding: chunked")
        body = rng.choice([b"5\r\nab", b"zz\r\n\r\n", b"ffffffff\r\n" + b"x" * 100, b"0\r\n\r\n"])
        method = b"POST"
    elif kind in (4, 5):  # JSON bodies for send and the API
        path = b"/pushlet/" + rng.choice([b"send?session=" + (rng.choice(known).encode() if known else b"x"),
                                          b"api/publish"])
        value = rng.choice([
            {"type": pick(rng, ["subscribe", "unsubscribe", "publish", "hb", "x"]),
             "subject": pick(rng, ["/a"]),
             "fields": {pick(rng, ["text"]): pick(rng, ["hi"])}, "ref": rng.randrange(9)},
            [{"type": "publish", "subject": "/a", "fields": {"n": i}} for i in range(rng.randrange(80))],
            {"subject": pick(rng, ["/a"]), "fields": {"t": pick(rng, ["v"])}, "session": pick(rng, ["x"])},
            "string", None, 12, {"events": [{}] * rng.randrange(5)}])
        body = json.dumps(value).encode() if rng.random() < 0.8 else raw_text(rng, 200)
        headers.append(b"Content-Type: " + rng.choice([b"application/json", b"text/plain", b""]))
        headers.append(b"X-Pushpy-Key: " + rng.choice([b"fuzz-api-key-0123456789", b"wrong"]))
        headers.append(b"Content-Length: %d" % len(body))
        method = b"POST"
    elif kind == 6:  # a Pushlet POST body
        attrs = b" ".join(b'%s="%s"' % (n.encode(),
                                         pick(rng, ["v", "join", "/a"]).encode("utf-8", "surrogatepass"))
                          for n in rng.sample(["p_event", "p_id", "p_subject", "p_format", "a", "b"], 3))
        body = rng.choice([b"<event " + attrs + b" />", b"<event a=\"unterminated", raw_text(rng, 100),
                           b"p_event=join&p_format=xml"])
        path = b"/pushlet/pushlet.srv"
        method = b"POST"
        headers.append(b"Content-Length: %d" % len(body))
    elif kind == 7:  # an oversized body
        body = b"x" * 70_000
        headers.append(b"Content-Length: %d" % rng.choice([70_000, 5_000_000]))
        method = b"POST"
    target = path + (b"?" + query(rng, known) if rng.random() < 0.9 else b"")
    if kind == 8 and rng.random() < 0.5:
        target = target.replace(b"%", b" ")  # raw spaces and bytes for the lenient request line
    request = method + b" " + target + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    if kind == 9:  # cut anywhere
        request = request[:rng.randrange(1, len(request) + 1)]
    if rng.random() < 0.3:  # delivered in pieces
        cut = rng.randrange(1, max(2, len(request)))
        return [request[:cut], request[cut:]]
    return [request]


def ws_frame(rng: random.Random, payload: bytes, opcode: int, *, masked: bool = True,
             fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126 and rng.random() < 0.9:
        head += bytes([mask_bit | size])
    elif size < 65536 and rng.random() < 0.9:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size if rng.random() < 0.8 else 2**62)
    if not masked:
        return head + payload
    key = bytes(rng.randrange(256) for _ in range(4))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_case(rng: random.Random, port: int) -> list[bytes]:
    """A valid WebSocket handshake followed by random frames."""
    key = base64.b64encode(bytes(rng.randrange(256) for _ in range(16)))
    handshake = (b"GET /pushlet/ws?subject=/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                 % (port, key))
    frames = []
    for _ in range(rng.randrange(1, 8)):
        choice = rng.randrange(6)
        if choice == 0:
            frames.append(raw_text(rng, 64))
        elif choice == 1:
            message = {"type": pick(rng, ["subscribe", "publish", "unsubscribe", "hb"]),
                       "subject": pick(rng, ["/ws", "/a"]), "fields": {"t": pick(rng, ["x"])}}
            frames.append(ws_frame(rng, json.dumps(message).encode(), 1))
        elif choice == 2:
            frames.append(ws_frame(rng, raw_text(rng, 200), rng.randrange(16)))
        elif choice == 3:
            frames.append(ws_frame(rng, b"\xff\xfe\xfd", 1))  # not UTF-8
        elif choice == 4:
            frames.append(ws_frame(rng, b'{"type":', 1, fin=False) + ws_frame(rng, b"x", 0, masked=False))
        else:
            frames.append(ws_frame(rng, b"a" * rng.choice([70_000, 200]), 1))
    return [handshake, b"".join(frames)]


async def fire(port: int, cases: list[list[bytes]], statuses: Counter) -> None:
    semaphore = DeferredSemaphore(CONCURRENCY)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)

    async def one(chunks: list[bytes]) -> None:
        client = Raw(chunks, statuses)
        await connectProtocol(endpoint, client)
        await client.done

    await gatherResults([semaphore.run(lambda c=c: Deferred.fromCoroutine(one(c))) for c in cases])


def known_ids(server) -> list[str]:
    return list(server.sessions)[:20]


async def normal_client_works(server) -> None:
    """A Pushlet stream and a WebSocket client publish and receive as usual."""
    stream = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/after")
    await stream.wait(lambda f: b"join-listen-ack" in f.raw)
    ws = await server.ws(subject="/after")
    ws.send({"type": "publish", "subject": "/after/x", "fields": {"text": "still fine"}, "ref": 1})
    await ws.wait(lambda c: any(m.get("ref") == 1 and m["type"] == "ack" for m in c.messages))
    await stream.wait(lambda f: b"still fine" in f.raw)
    await ws.wait(lambda c: "still fine" in [m["fields"].get("text") for m in events(c.messages)])
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml"))
    assert ack["p_event"] == "join-ack"
    stream.disconnect()
    ws.disconnect()


@pytest_twisted.ensureDeferred
async def test_fuzzed_requests_leave_the_server_serving_and_memory_flat(native_server):
    """Thousands of malformed HTTP requests and WebSocket frames: no unexpected failure is logged, a normal
    client is then served correctly, and traced memory returns near its starting point."""
    server = native_server(
        api_key="fuzz-api-key-0123456789", session_timeout_mins=0.01, native_session_timeout_secs=0.3,
        session_check_millis=100, history_max_subjects=20, history_size=10, limit_body_bytes=65_536,
        limit_publish_rate=0, auth_token_secret="fuzz-token-secret-0123456789", auth_anonymous=True,
        auth_anonymous_subscribe="*", auth_anonymous_publish="*")
    port = server.host_port
    rng = random.Random(SEED)
    failures: list[dict] = []
    statuses: Counter = Counter()

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    tracemalloc.start()
    try:
        async def round_(http: int, ws: int) -> None:
            cases = [http_case(rng, known_ids(server)) for _ in range(http)]
            cases += [ws_case(rng, port) for _ in range(ws)]
            rng.shuffle(cases)
            await fire(port, cases, statuses)

        async def settled() -> int:
            await eventually(lambda: not server.sessions, timeout=5)
            await sleep(0.2)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        await round_(300, 40)  # warm-up: imports, caches, first-use allocations
        before = await settled()
        await round_(HTTP_CASES, WS_CASES)
        after = await settled()
    finally:
        tracemalloc.stop()
        globalLogPublisher.removeObserver(observe)
    # The inputs reach every layer: answered, refused for each reason, and upgraded.
    assert {"200", "400", "403", "404", "405", "413", "101"} <= set(statuses), statuses
    assert failures == [], f"seed {SEED}: {[f.get('log_format') for f in failures][:5]}"
    await normal_client_works(server)
    assert after - before < 1_000_000, f"seed {SEED}: traced memory grew by {after - before} bytes"
