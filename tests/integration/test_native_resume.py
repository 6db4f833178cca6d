"""Lossless resume on every native transport, over real loopback connections.

One driver per transport connects with subjects, an optional session and an
optional last event id (SSE: the ``Last-Event-ID`` header; XHR, iframe,
long-poll, poll: the ``last_event_id`` query; WebSocket: a ``subscribe``
message with ``last_event_id``) and collects the messages that follow.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from native_client import Message, NativeHarness, events, of_type
from server_support import WaitTimeout, eventually, sleep

from pushpy.core.sessions import EndReason

pytest_plugins = ("native_fixtures",)

TRANSPORTS = ["sse", "xhr", "iframe", "ws", "longpoll", "poll"]


class Connection:
    """One client connection of any transport; ``messages`` excludes ``open``, ``ack`` and ``hb``."""

    session: str
    position: str

    @property
    def messages(self) -> list[Message]:
        return [m for m in self._all() if m["type"] not in ("open", "ack")]

    def _all(self) -> list[Message]:
        raise NotImplementedError

    async def until(self, count: int, kind: str = "event", timeout: float = 2.0) -> list[Message]:
        raise NotImplementedError

    def disconnect(self) -> None:
        raise NotImplementedError


class StreamConnection(Connection):
    def __init__(self, feed: Any) -> None:
        self.feed = feed
        hello = feed.messages[0]
        self.session, self.position = hello["session"], hello["position"]

    def _all(self) -> list[Message]:
        return self.feed.messages

    async def until(self, count: int, kind: str = "event", timeout: float = 2.0) -> list[Message]:
        await self.feed.until(count, kind, timeout)
        return self.messages

    def disconnect(self) -> None:
        self.feed.disconnect()


class PollConnection(Connection):
    """A long-poll or poll client: asks again with its session and position until satisfied."""

    def __init__(self, server: NativeHarness, kind: str) -> None:
        self.server = server
        self.kind = kind
        self.received: list[Message] = []

    async def ask(self, **params: str) -> None:
        code, body = await self.server.get_json(self.kind, **params)
        assert code == 200, body
        self.session, self.position = body["session"], body["position"]
        self.received.extend(body["messages"])

    def _all(self) -> list[Message]:
        return self.received

    async def until(self, count: int, kind: str = "event", timeout: float = 2.0) -> list[Message]:
        waited = 0.0
        while len(of_type(self.received, kind)) < count:
            if waited > timeout:
                raise WaitTimeout(f"{count} {kind} messages not received: {self.received}")
            await self.ask(session=self.session, last_event_id=self.position)
            if self.kind == "poll":
                await sleep(0.02)
                waited += 0.02
            else:
                waited += 0.3
        return self.messages

    def disconnect(self) -> None:
        pass  # a polling client that goes away simply stops asking


class WSConnection(StreamConnection):
    def disconnect(self) -> None:
        self.feed.disconnect()


async def connect(server: NativeHarness, kind: str, subject: str, *, last_id: str | None = None,
                  session: str | None = None) -> Connection:
    """Connect with transport ``kind`` to ``subject``, resuming after ``last_id``."""
    if kind in ("sse", "xhr", "iframe"):
        params = {"subject": subject}
        if session:
            params["session"] = session
        headers = None
        if last_id and kind == "sse":
            headers = {"Last-Event-ID": last_id}
        elif last_id:
            params["last_event_id"] = last_id
        return StreamConnection(await server.opened(kind, headers=headers, **params))
    if kind == "ws" and session in server.sessions:
        # Continuing a live session: its subscriptions are kept, the id goes in the query
        # (as pushpy.js does); a subscribe message would add a second subscription.
        return WSConnection(await server.ws(session=session, last_event_id=last_id))
    if kind == "ws":
        ws = await server.ws(**({"session": session} if session else {}))
        message: dict[str, Any] = {"type": "subscribe", "subject": subject, "ref": "r"}
        if last_id:
            message["last_event_id"] = last_id
        ws.send(message)
        await ws.until(1, "ack")
        return WSConnection(ws)
    connection = PollConnection(server, kind)
    params = {"subject": subject}
    if session:
        params["session"] = session
    if last_id:
        params["last_event_id"] = last_id
    await connection.ask(**params)
    return connection


def delivered(messages: list[Message]) -> list[Message]:
    """The ``recovery`` and ``event`` messages of ``messages``."""
    return [m for m in messages if m["type"] in ("recovery", "event")]


def summary(messages: list[Message]) -> list[tuple]:
    """``(type, id or recovered/count/reason)`` of each message, for exact comparisons."""
    out = []
    for m in messages:
        if m["type"] == "event":
            out.append(("event", m["id"]))
        elif m["type"] == "recovery":
            out.append(("recovery", m["recovered"], m["count"], m.get("reason")))
        else:
            out.append((m["type"],))
    return out


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("old", ["ended", "unknown", "alive-behind"])
@pytest_twisted.ensureDeferred
async def test_resume_delivers_exactly_the_missed_events(native_server, kind, old):
    """Reconnecting with the last id delivers a recovery message, exactly the missed events in order, then
    live ones, whether the old session ended, is unknown or is still alive."""
    server = native_server()
    first = await connect(server, kind, "/r")
    e1, e2 = server.publish("/r", "1"), server.publish("/r/x", "2")
    assert summary(events(await first.until(2))) == [("event", e1), ("event", e2)]
    first.disconnect()
    await sleep(0.05)
    session, last_id = first.session, e2
    if old == "ended":
        server.push.dispatcher.end(server.sessions[first.session], EndReason.EXPIRED)
    elif old == "unknown":
        session = "unknownSessionId00000"
    else:
        last_id = e1  # the client lost e2 on the way: the live session has it delivered
    e3, e4 = server.publish("/r", "3"), server.publish("/r/y", "4")
    server.publish("/other", "not mine")
    second = await connect(server, kind, "/r", last_id=last_id, session=session)
    missed = [e2, e3, e4] if old == "alive-behind" else [e3, e4]
    await second.until(len(missed))
    e5 = server.publish("/r", "5")
    messages = await second.until(len(missed) + 1)
    assert summary(messages) == [("recovery", True, len(missed), None),
                                 *[("event", e) for e in [*missed, e5]]]
    assert (second.session == first.session) is (old == "alive-behind")
    expected = ["2", "3", "4", "5"] if old == "alive-behind" else ["3", "4", "5"]
    assert [m["fields"]["text"] for m in events(messages)] == expected


@pytest.mark.parametrize("kind", ["sse", "xhr", "iframe", "ws"])
@pytest_twisted.ensureDeferred
async def test_resume_with_the_live_session_at_its_position_needs_no_recovery(native_server, kind):
    """A client reconnecting to its live session with the id it last received gets the events queued
    meanwhile, once, without a recovery."""
    server = native_server()
    if kind == "ws":
        ws = await server.ws(subject="/r")
        first: Connection = WSConnection(ws)
    else:
        first = await connect(server, kind, "/r")
    e1 = server.publish("/r", "1")
    await first.until(1)
    first.disconnect()
    await sleep(0.05)
    e2, e3 = server.publish("/r", "2"), server.publish("/r", "3")
    if kind == "ws":
        second: Connection = WSConnection(await server.ws(session=first.session, last_event_id=e1))
    else:
        second = await connect(server, kind, "/r", session=first.session, last_id=e1)
    assert second.session == first.session and second.position == e1
    assert summary(await second.until(2)) == [("event", e2), ("event", e3)]


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_resume_after_trimmed_history_says_so(native_server, kind):
    """When history was trimmed past the client's id, recovery is false with 'history trimmed' and the events
    still kept follow."""
    server = native_server(history_size=2)
    ids = [server.publish("/t", str(i)) for i in range(5)]
    connection = await connect(server, kind, "/t", last_id=ids[0])
    messages = await connection.until(2)
    live = server.publish("/t", "live")
    messages = await connection.until(3)
    assert summary(messages) == [("recovery", False, 2, "history trimmed"),
                                 ("event", ids[3]), ("event", ids[4]), ("event", live)]


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_resume_from_the_last_trimmed_event_is_complete(native_server, kind):
    """A client whose id is the newest event already dropped from history misses nothing: recovery is true."""
    server = native_server(history_size=2)
    ids = [server.publish("/t", str(i)) for i in range(5)]
    connection = await connect(server, kind, "/t", last_id=ids[2])
    messages = await connection.until(2)
    assert summary(messages) == [("recovery", True, 2, None), ("event", ids[3]), ("event", ids[4])]


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(("token", "reason"), [
    ("0badc0de:2", "unknown epoch"),
    ("{epoch}:99", "position ahead of history"),
    ("not-a-position", "malformed position"),
    ("{epoch}:", "malformed position"),
    ("{epoch}:-1", "malformed position"),
])
@pytest_twisted.ensureDeferred
async def test_resume_from_an_unusable_id_says_why(native_server, kind, token, reason):
    """An id from another epoch, from the future or malformed gives recovery false with the reason, then live
    events from now on."""
    server = native_server()
    server.publish("/z", "old")
    server.publish("/z", "older")
    connection = await connect(server, kind, "/z", last_id=token.format(epoch=server.epoch))
    if kind in ("sse", "xhr", "iframe"):
        assert connection.position == f"{server.epoch}:2"  # delivers from now on
    await connection.until(1, "recovery")
    live = server.publish("/z", "new")
    messages = await connection.until(1)
    assert summary(messages) == [("recovery", False, 0, reason), ("event", live)]


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_resume_of_a_prefix_recovers_subjects_created_meanwhile(native_server, kind):
    """A prefix subscription resumes events on subjects that did not exist when the client left, in
    publication order."""
    server = native_server()
    first = await connect(server, kind, "/p")
    e1 = server.publish("/p/a", "1")
    await first.until(1)
    first.disconnect()
    e2 = server.publish("/p/new", "2")
    server.publish("/q", "not mine")
    e3 = server.publish("/p/a", "3")
    e4 = server.publish("/p/deep/er", "4")
    second = await connect(server, kind, "/p", last_id=e1)
    messages = await second.until(3)
    assert summary(messages) == [("recovery", True, 3, None),
                                 ("event", e2), ("event", e3), ("event", e4)]
    assert [m["subject"] for m in events(messages)] == ["/p/new", "/p/a", "/p/deep/er"]


@pytest_twisted.ensureDeferred
async def test_sse_query_last_event_id_wins_over_the_header(native_server):
    """The last_event_id query parameter wins over the Last-Event-ID header."""
    server = native_server()
    ids = [server.publish("/w", str(i)) for i in range(3)]
    feed = await server.opened("sse", headers={"Last-Event-ID": ids[0]}, subject="/w",
                               last_event_id=ids[1])
    messages = await feed.until(1)
    assert feed.messages[0]["position"] == ids[1]
    assert summary(messages[1:]) == [("recovery", True, 1, None), ("event", ids[2])]


@pytest_twisted.ensureDeferred
async def test_ws_resume_via_query(native_server):
    """A WebSocket can also resume with subject and last_event_id in its URL query."""
    server = native_server()
    ids = [server.publish("/w", str(i)) for i in range(3)]
    ws = await server.ws(subject="/w", last_event_id=ids[0])
    assert ws.messages[0]["position"] == ids[0]
    messages = await ws.until(2)
    assert summary(messages[1:]) == [("recovery", True, 2, None), ("event", ids[1]),
                                     ("event", ids[2])]


@pytest_twisted.ensureDeferred
async def test_ws_subscribe_resume_keeps_offset_order_with_queued_events(native_server):
    """Events recovered by a subscribe are merged by id with events already queued for the session, so ids
    arrive increasing and a client resuming from its last id can lose nothing."""
    server = native_server()
    ws = await server.ws(subject="/a")
    start = ws.messages[0]["position"]
    # One TCP write, one server turn: /a is queued for us, /b goes to history only, then /b is resumed.
    ws.send({"type": "publish", "subject": "/a", "fields": {"text": "a"}, "ref": 1})
    ws.send({"type": "publish", "subject": "/b", "fields": {"text": "b"}, "ref": 2})
    ws.send({"type": "subscribe", "subject": "/b", "last_event_id": start, "ref": 3})
    acks = of_type(await ws.until(3, "ack"), "ack")
    a_id, b_id = acks[0]["id"], acks[1]["id"]
    await ws.until(2)
    assert summary(delivered(ws.messages)) == [("recovery", True, 1, None), ("event", a_id),
                                               ("event", b_id)]


@pytest_twisted.ensureDeferred
async def test_ws_subscribe_resume_keeps_queued_events_of_other_subscriptions(native_server):
    """A subscribe with last_event_id drops no queued event of the session's other subscriptions, whatever
    the id."""
    server = native_server()
    ws = await server.ws(subject="/a")
    epoch, last = ws.messages[0]["position"].rsplit(":", 1)
    ahead = f"{epoch}:{int(last) + 1}"  # the id our own publish is about to get
    ws.send({"type": "publish", "subject": "/a", "fields": {"text": "mine"}, "ref": 1})
    ws.send({"type": "subscribe", "subject": "/b", "last_event_id": ahead, "ref": 2})
    acks = of_type(await ws.until(2, "ack"), "ack")
    await ws.until(1)
    assert summary(delivered(ws.messages)) == [("recovery", True, 0, None), ("event", acks[0]["id"])]


@pytest.mark.parametrize("token", ["0badc0de:999", "{epoch}:999"])
@pytest_twisted.ensureDeferred
async def test_unusable_id_on_a_live_session_keeps_its_queue(native_server, token):
    """Continuing a live session with an id of another epoch or from the future reports recovery false and
    still delivers the events queued for the session."""
    server = native_server()
    first = await server.opened("sse", subject="/u")
    session = first.messages[0]["session"]
    first.disconnect()
    await eventually(lambda: not server.sessions[session].channels)
    queued = [server.publish("/u", "1"), server.publish("/u", "2")]
    again = await server.opened("sse", subject="/u", session=session,
                                headers={"Last-Event-ID": token.format(epoch=server.epoch)})
    messages = delivered(await again.until(2))
    assert again.messages[0]["session"] == session
    assert summary(messages)[1:] == [("event", e) for e in queued]
    assert messages[0]["type"] == "recovery" and messages[0]["recovered"] is False


@pytest_twisted.ensureDeferred
async def test_resume_larger_than_the_queue_is_recovered_whole(native_server):
    """A resume that recovers more events than ``native.queue.size`` delivers all of them after ``recovery``."""
    harness = native_server(native_queue_size=5, history_size=50)
    token = harness.push.backplane.position
    for n in range(20):
        harness.push.publish("/big", n=str(n))
    status, body = await harness.get_json("longpoll", subject="/big", last_event_id=token)
    assert status == 200
    kinds = [m["type"] for m in body["messages"]]
    assert kinds[0] == "recovery"
    assert body["messages"][0]["recovered"] is True
    assert [m["fields"]["n"] for m in body["messages"][1:]] == [str(n) for n in range(20)]
