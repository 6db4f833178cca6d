"""A native session's connections and ends across real nodes behave as on one node.

A second connection of a session ends the first, wherever each is; a session
ended by its queue overflowing is over on every node (its client gets a new
session), unless it had moved on and only a copy left behind overflowed; a
node that missed a session's end while cut off from Redis ends its copy once
reconnected.
"""

from __future__ import annotations

import http.client as httplib
import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

from cluster_support import (
    CuttableRelay,
    Node,
    http,
    poll,
    publish,
    running_cluster,
    unique_prefix,
    wait_until,
)
from redis_keys import delete_prefix


class RawSSE:
    """One SSE connection of a native session, never reconnecting: its messages, and whether it ended."""

    def __init__(self, port: int, **params: str) -> None:
        self.connection = httplib.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.request("GET", "/pushlet/sse?" + urlencode(params),
                                headers={"Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.status
        self.messages: list[dict[str, Any]] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        data: list[str] = []
        try:
            while line := self.response.readline():
                text = line.decode("utf-8").rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].strip())
                elif not text and data:
                    self.messages.append(json.loads("\n".join(data)))
                    data = []
        except (OSError, ValueError, AttributeError, httplib.HTTPException):
            pass  # closed by the test (its socket gone under the reader)
        finally:
            self.ended.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def close(self) -> None:
        self.connection.close()


def second_connection(first_port: int, second_port: int) -> tuple[RawSSE, RawSSE]:
    """A session's SSE connection on ``first_port``, then a second one of it on ``second_port``."""
    first = RawSSE(first_port, subject="/t")
    wait_until(lambda: first.of("open"))
    opened = first.of("open")[0]
    second = RawSSE(second_port, subject="/t", session=opened["session"],
                    session_key=opened["session_key"])
    wait_until(lambda: second.of("open"))
    assert second.of("open")[0]["session"] == opened["session"]
    return first, second


def test_a_second_connection_on_another_node_ends_the_first_as_on_one_node(tmp_path):
    with running_cluster(tmp_path, 2) as (a, b):
        local = second_connection(a.port, a.port)
        across = second_connection(a.port, b.port)
        try:
            for first, _ in (local, across):
                assert first.ended.wait(10), "the first connection is still served"
            publish(b.port, "/t", n="1")
            for first, second in (local, across):
                wait_until(lambda second=second: second.of("event"))
                time.sleep(0.5)  # nothing else arrives
                assert [e["fields"]["n"] for e in second.of("event")] == ["1"]
                assert not second.ended.is_set()
                assert not first.of("event")
            # The first connection ends the same way on either node (no close message: a takeover).
            assert ({m["type"] for m in across[0].messages} - {"hb"}
                    == {m["type"] for m in local[0].messages} - {"hb"} == {"open"})
            assert not across[0].of("close")
        finally:
            for pair in (local, across):
                for connection in pair:
                    connection.close()


def test_a_session_ended_by_overflow_is_over_on_every_node(tmp_path):
    settings = {"queue.overflow.policy": "abort", "native.queue.size": "5"}
    with running_cluster(tmp_path, 2, settings=settings) as (a, b):
        first = poll(a.port, subject="/o")
        session, key = first["session"], first["session_key"]
        for i in range(10):  # nobody reads: its queue on a overflows, which ends it
            publish(b.port, "/o", n=str(i))
        wait_until(lambda: a.stats()["sessions"]["ended_by_reason"].get("overflow") == 1)
        for port in (a.port, b.port):  # on a as on b: a new session
            assert poll(port, subject="/o", session=session, session_key=key)["session"] != session


def test_a_copy_left_behind_that_overflows_does_not_end_the_session(tmp_path):
    settings = {"queue.overflow.policy": "abort", "native.queue.size": "5"}
    with running_cluster(tmp_path, 2, settings=settings) as (a, b):
        first = poll(a.port, subject="/o")
        session, key = first["session"], first["session_key"]
        stream = RawSSE(b.port, subject="/o", session=session, session_key=key)  # moves to b
        try:
            wait_until(lambda: stream.of("open"))
            for i in range(10):  # read on b; a's copy (no connection) overflows and ends alone
                publish(b.port, "/o", n=str(i))
            wait_until(lambda: len(stream.of("event")) == 10)
            wait_until(lambda: a.stats()["sessions"]["ended_by_reason"].get("overflow") == 1)
            time.sleep(0.5)
            assert not stream.ended.is_set()
        finally:
            stream.close()
        assert poll(a.port, subject="/o", session=session, session_key=key)["session"] == session


def test_a_copy_whose_end_notice_was_missed_ends_after_reconnect(tmp_path):
    """b is cut off from Redis (commands and pub/sub) while the session ends on a: it misses the
    ``end`` notice, and keeps its copy; once reconnected it finds the tombstone and ends the copy."""
    relay = CuttableRelay()
    prefix = unique_prefix()
    a = Node(tmp_path, prefix)
    b = Node(tmp_path, prefix, relay.url)
    try:
        a.wait()
        b.wait()
        first = poll(a.port, subject="/m")
        session, key = first["session"], first["session_key"]
        assert poll(b.port, subject="/m", session=session, session_key=key)["session"] == session
        relay.cut()
        wait_until(lambda: b.stats()["backplane"]["state"] == "degraded")
        assert send(a.port, session, key, {"type": "leave"}) == 200  # ended on a (the tombstone)
        assert b.stats()["sessions"]["total"] == 1  # b missed it: its copy is served still
        assert send(b.port, session, key, {"type": "hb"}) == 200
        relay.reopen()
        wait_until(lambda: b.stats()["backplane"]["state"] == "up", timeout=20)
        wait_until(lambda: b.stats()["sessions"]["total"] == 0)
        assert send(b.port, session, key, {"type": "hb"}) == 404
        assert poll(b.port, subject="/m", session=session, session_key=key)["session"] != session
    finally:
        a.stop()
        b.stop()
        relay.cut()
        delete_prefix(prefix)


def send(port: int, session: str, key: str, message: dict[str, Any]) -> int:
    """``POST send`` of one client message; the status."""
    status, _ = http(port, "POST", "/pushlet/send?" + urlencode({"session": session, "session_key": key}),
                     json.dumps(message).encode(), {"Content-Type": "text/plain"})
    return status
