"""A test client for the Pushlet wire formats: incremental reading and parsing.

:class:`Stream` reads a response body as it arrives and lets a test wait
(with a timeout on the reactor, never sleeping) until a condition on the
received bytes or events holds.  ``parse_*`` turn bodies back into events the
way each real client does: ``xml`` with the Java client's rules (spec 6.4.1),
``xml-strict`` with ``xml.dom.minidom``, ``js`` by reading the ``parent.push``
JavaScript string literals (or with node, see :func:`run_js`).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any
from xml.dom import minidom

from server_support import WaitTimeout
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from pushpy.wire.pushlet import JS_PROLOGUE

Event = dict[str, str]


class Stream(Protocol):
    """The body of one response, read incrementally."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.code: int = response.code
        self.headers = response.headers
        self.data = bytearray()
        self.finished = False
        self.reason: Failure | None = None
        self._waiters: list[tuple[Callable[[Stream], bool], Deferred]] = []
        response.deliverBody(self)

    @property
    def format(self) -> str:
        content_type = self.headers.getRawHeaders(b"content-type", [b""])[0]
        return {b"text/html;charset=UTF-8": "js", b"text/plain;charset=UTF-8": "xml",
                b"text/xml;charset=UTF-8": "xml-strict"}[content_type]

    @property
    def events(self) -> list[Event]:
        """Every complete event received so far."""
        return parse(self.format, bytes(self.data), complete=False)

    @property
    def clean(self) -> bool:
        """Whether the body ended normally (not cut by an error)."""
        return self.finished and self.reason is not None and self.reason.check(ResponseDone) is not None

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def connectionLost(self, reason: Failure) -> None:
        self.finished = True
        self.reason = reason
        self._check()

    def _check(self) -> None:
        for waiter in list(self._waiters):
            condition, d = waiter
            if condition(self) or self.finished:
                self._waiters.remove(waiter)
                d.callback(self)

    async def wait(self, condition: Callable[[Stream], bool], timeout: float = 2.0) -> Stream:
        """Wait until ``condition(self)`` holds (or the body ends); fail after ``timeout``."""
        if condition(self) or self.finished:
            if not condition(self):
                raise WaitTimeout(f"body ended first: {bytes(self.data)!r}")
            return self
        d: Deferred = Deferred()
        waiter = (condition, d)
        self._waiters.append(waiter)

        def expire() -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                d.errback(WaitTimeout(f"not met within {timeout}s; got {bytes(self.data)!r}"))

        call = reactor.callLater(timeout, expire)
        try:
            await d
        finally:
            if call.active():
                call.cancel()
        if not condition(self):
            raise WaitTimeout(f"body ended first: {bytes(self.data)!r}")
        return self

    async def events_until(self, count: int, timeout: float = 2.0) -> list[Event]:
        """Wait for at least ``count`` complete events and return them all."""
        await self.wait(lambda s: len(s.events) >= count, timeout)
        return self.events

    async def end(self, timeout: float = 2.0) -> Stream:
        """Wait until the server ends the body."""
        return await self.wait(lambda s: s.finished, timeout)

    def disconnect(self) -> None:
        """Walk away: close the connection mid-stream."""
        if not self.finished and self.transport is not None:
            self.transport.stopProducing()


class _RawClient(Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = bytearray()
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(bytes(self.data))


class RawResponse:
    """A response read off the socket: status, header lines in order, body."""

    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        self.status_line = status
        self.code = int(status.split()[1])
        self.header_lines: list[tuple[bytes, bytes]] = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines)]

    def header(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase), one per line."""
        return [value for key, value in self.header_lines if key == name]


async def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` byte for byte on a new connection; return all bytes until the server closes."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    client = _RawClient(request)
    await connectProtocol(endpoint, client)
    call = reactor.callLater(timeout, client.transport.abortConnection)
    data = await client.done
    if call.active():
        call.cancel()
    return data


async def raw_http(port: int, request: bytes, timeout: float = 5.0) -> RawResponse:
    """One request written byte for byte; the response parsed."""
    return RawResponse(await raw_exchange(port, request, timeout))


class Reply:
    """A complete response: status, headers, body and the events in it."""

    def __init__(self, code: int, headers: Any, body: bytes, fmt: str) -> None:
        self.code = code
        self.headers = headers
        self.body = body
        self.events = parse(fmt, body) if code == 200 else []

    @property
    def event(self) -> Event:
        """The only event of a control response."""
        assert len(self.events) == 1, self.events
        return self.events[0]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def event_element(params: dict[str, str]) -> str:
    """A POST body ``<event name="value" .../>`` with the Java client's escaping."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    return "<event " + "".join(f'{k}="{esc(v)}" ' for k, v in params.items()) + "/>"


class Peer:
    """One Pushlet session driven over HTTP: GET, POST ``<event/>`` or POST form."""

    def __init__(self, harness: Any, fmt: str = "js", via: str = "get") -> None:
        self.harness = harness
        self.format = fmt
        self.via = via
        self.id: str | None = None

    def params(self, event: str, params: dict[str, Any]) -> dict[str, str]:
        out = {"p_event": event}
        if event.startswith("join"):
            out["p_format"] = self.format
        elif self.id is not None:
            out["p_id"] = self.id
        out.update(params)
        return {k: v for k, v in out.items() if v is not None}

    async def send(self, event: str, **params: Any) -> Reply:
        """Send one request event and read the whole response."""
        import treq

        fields = self.params(event, params)
        harness = self.harness
        if self.via == "get":
            response = await harness.get(fields)
        elif self.via == "post-event":
            response = await harness.post(event_element(fields).encode("utf-8"),
                                          content_type="text/xml; charset=UTF-8")
        else:
            response = await harness.post(fields)
        reply = Reply(response.code, response.headers, await treq.content(response), self.format)
        if event.startswith("join") and reply.code == 200 and reply.events:
            self.id = reply.events[0]["p_id"]
        return reply

    async def open(self, event: str, **params: Any) -> Stream:
        """Send a data-channel request (GET) and read its response incrementally."""
        stream = await self.harness.open(self.params(event, params))
        if event.startswith("join"):
            events = await stream.events_until(1)
            self.id = events[0]["p_id"]
        return stream

    async def join(self, **params: Any) -> Reply:
        reply = await self.send("join", **params)
        assert reply.event["p_event"] == "join-ack", reply.body
        return reply

    async def stream(self, subject: str | None = None, **params: Any) -> Stream:
        """Join and open a stream-mode listen on ``subject``; wait for its first ``hb``."""
        if self.id is None:
            await self.join()
        stream = await self.open("listen", p_mode="stream", p_subject=subject, **params)
        await stream.events_until(2)
        return stream


# -- parsing ----------------------------------------------------------------

def parse(fmt: str, body: bytes, *, complete: bool = True) -> list[Event]:
    """The events of a body in format ``fmt``; ``complete=False`` for an open stream."""
    if fmt == "xml":
        return parse_xml(body)
    if fmt == "xml-strict":
        return parse_xml_strict(body, complete=complete)
    return parse_js(body)


def parse_xml(body: bytes) -> list[Event]:
    """Parse bare ``<event/>`` elements exactly as the Java client's EventParser (spec 6.4.1)."""
    text = body.decode("utf-8")
    events = []
    i = 0
    while True:
        start = text.find("<", i)
        if start < 0:
            return events
        end = text.find(">", start)
        if end < 0:
            return events  # incomplete: the Java client would block here
        tag = text[start:end + 1].strip()
        i = end + 1
        if not (tag.startswith("<") and tag.endswith("/>")):
            raise ValueError(f"No start or end tag found: {tag!r}")
        events.append(_java_attributes(tag[1:-2]))


def _java_attributes(inner: str) -> Event:
    fields: Event = {}
    i = inner.find(" ")
    if i < 0:
        return fields
    while True:
        eq = inner.find("=", i)
        if eq < 0:
            return fields
        name = inner[i:eq].strip()
        quote = inner.index('"', eq) + 1
        out = []
        j = quote
        while inner[j] != '"':
            if inner[j] == "\\":
                j += 1
            out.append(inner[j])
            j += 1
        fields[name] = "".join(out)
        i = j + 1


def parse_xml_strict(body: bytes, *, complete: bool = True) -> list[Event]:
    """Parse a ``<pushlet>`` document with minidom (an open stream gets its end tag)."""
    if not complete:
        text = body.decode("utf-8")
        cut = text.rfind("/>")
        if cut < 0:
            return []
        body = (text[:cut + 2] + "</pushlet>").encode()
    document = minidom.parseString(body)
    root = document.documentElement
    assert root.tagName == "pushlet", root.tagName
    return [dict(node.attributes.items()) for node in root.getElementsByTagName("event")]


_SCRIPT = re.compile(r'<script language="JavaScript">parent\.push\((.*?)\);</script>', re.S)
_REFRESH = re.compile(
    r'\n<script language="JavaScript">url=\'((?:[^\'\\]|\\.)*)\';\n setTimeout\("refresh\(\)", (\d+)\);\n'
    r"</script></body></html>")
_JS_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def js_unescape(literal: str) -> str:
    """The value of a JavaScript string literal body (the text between the quotes)."""
    out = []
    i = 0
    while i < len(literal):
        ch = literal[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = literal[i + 1]
        if nxt == "x":
            out.append(chr(int(literal[i + 2:i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(literal[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(_JS_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


_JS_LITERAL = re.compile(r"""'((?:[^'\\\n]|\\.)*)', "((?:[^"\\\n]|\\.)*)"(,|$)""", re.S)


def _push_args(args: str) -> Event:
    fields: Event = {}
    i = 0
    while i < len(args):
        m = _JS_LITERAL.match(args, i)
        if m is None:
            raise ValueError(f"not a parent.push argument list: {args!r} at {i}")
        fields[js_unescape(m.group(1))] = js_unescape(m.group(2))
        i = m.end()
    return fields


def parse_js(body: bytes) -> list[Event]:
    """The ``parent.push`` calls (and the refresh script) of a ``js`` body."""
    text = body.decode("utf-8")
    assert text.startswith(JS_PROLOGUE.decode()[:len(text)]), text[:300]
    events: list[tuple[int, Event]] = []
    for m in _SCRIPT.finditer(text):
        events.append((m.start(), _push_args(m.group(1))))
    for m in _REFRESH.finditer(text):
        events.append((m.start(), {"p_event": "refresh", "p_url": js_unescape(m.group(1)),
                                   "p_wait": m.group(2)}))
    return [event for _, event in sorted(events, key=lambda pair: pair[0])]


def run_js(body: bytes) -> list[Event]:
    """Run every script of a ``js`` body in node with ``parent.push`` defined; return the calls."""
    text = body.decode("utf-8")
    scripts = re.findall(r'<script language="JavaScript">(.*?)</script>', text, re.S)
    program = (
        "const calls = []; const parent = {push: (...a) => calls.push(a)};\n"
        "function setTimeout(f, w) { calls.push(['p_event', 'refresh', 'p_url', url,"
        " 'p_wait', String(w)]); }\n"
        "const document = {location: {}};\n"
        + "".join(f"{script}\n" for script in scripts)
        + "process.stdout.write(JSON.stringify(calls));\n"
    )
    out = subprocess.run(["node", "-e", program], capture_output=True, check=True, timeout=20)
    return [dict(zip(call[::2], call[1::2], strict=True)) for call in json.loads(out.stdout)]
