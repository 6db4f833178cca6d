"""Server-side unsubscribe and disconnect across real nodes on one Redis.

The back end revokes through one node's API while the sessions are held by
others: the revocation goes through the ordered log, so an event published
after the API answered never reaches what it removed, on any node; the
session records in Redis lose the subscription too, so a session continued
on another node (one started after the revocation included) stays without it.
"""

from __future__ import annotations

import contextlib
import http.client as httplib
import json
import socket
import threading
from typing import Any
from urllib.parse import urlencode

from cluster_support import (
    API_KEY,
    Node,
    PushletPullClient,
    http,
    publish,
    pushlet,
    running_cluster,
    sse_messages,
    token_maker,
    wait_until,
)
from redis_keys import command

SETTINGS = {"auth.token.secret": "cluster-revocation-secret"}
token = token_maker(SETTINGS["auth.token.secret"])


def api(port: int, op: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = http(port, "POST", f"/pushlet/api/{op}", json.dumps(body).encode(),
                          {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    assert status == 200, answer
    return json.loads(answer)


def record_subjects(prefix: str, session: str) -> list[str]:
    """The subjects of the subscriptions a session's record in Redis holds."""
    return [entry[1] for entry in json.loads(command("HGET", f"{prefix}:session:{session}", "subs") or "[]")]


class Stream:
    """One SSE connection to one node, read in a thread; every message kept."""

    def __init__(self, port: int, **params: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.connection = httplib.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.request("GET", "/pushlet/sse?" + urlencode(params))
        response = self.connection.getresponse()
        assert response.status == 200
        threading.Thread(target=self._read, args=(response,), daemon=True).start()
        self.opened = wait_until(lambda: self.of("open"))[0]

    def _read(self, response: httplib.HTTPResponse) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # AttributeError: closed
            self.messages.extend(sse_messages(response))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == kind]

    def texts(self) -> list[str]:
        return [m["fields"]["text"] for m in self.of("event")]

    def close(self) -> None:
        """Drop the connection (the reading thread holds the socket: shut it down)."""
        if self.connection.sock is not None:
            with contextlib.suppress(OSError):
                self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()


@contextlib.contextmanager
def streams() -> Any:
    """A list to put :class:`Stream` objects in; they are closed afterwards."""
    opened: list[Stream] = []
    try:
        yield opened
    finally:
        for stream in opened:
            stream.close()


def test_unsubscribe_through_one_node_reaches_a_stream_on_another_and_the_record(tmp_path):
    """ann streams on B; the back end revokes ``/chat/room1`` through A and publishes at once:
    B's stream is told, in order, and never gets what followed; bob's does.  The record lost it,
    so the session continued on a node started afterwards (no memory of the revocation) and
    resumed on C from before it stay without it."""
    with running_cluster(tmp_path, settings=SETTINGS) as nodes, streams() as opened:
        a, b, c = nodes
        ann = Stream(b.port, subject="/chat/room1,/news", token=token("ann"))
        bob = Stream(c.port, subject="/chat/room1", token=token("bob"))
        opened += [ann, bob]
        session, key = ann.opened["session"], ann.opened["session_key"]
        start = ann.opened["position"]
        publish(a.port, "/chat/room1", text="before")
        wait_until(lambda: ann.texts() == ["before"])
        answer = api(a.port, "unsubscribe", {"subject": "/chat/room1", "user": "ann", "reason": "moved"})
        for i in range(10):
            node = nodes[i % 3]
            publish(node.port, "/chat/room1", text=f"after{i}")
            publish(node.port, "/news", text=f"news{i}")
        wait_until(lambda: "news9" in ann.texts())
        wait_until(lambda: "after9" in bob.texts())
        assert ann.texts() == ["before", *(f"news{i}" for i in range(10))]
        assert bob.texts() == ["before", *(f"after{i}" for i in range(10))]
        kinds = [m["type"] for m in ann.messages if m["type"] != "hb"]
        assert kinds[:4] == ["open", "event", "unsubscribed", "event"]
        assert ann.of("unsubscribed") == [{"type": "unsubscribed", "subject": "/chat/room1",
                                           "id": answer["id"], "reason": "moved"}]
        wait_until(lambda: record_subjects(a.prefix, session) == ["/news"])
        last = ann.of("event")[-1]["id"]
        ann.close()
        late = Node(tmp_path, a.prefix, settings=SETTINGS)  # knows nothing of the revocation
        nodes.append(late)  # stopped with the others
        late.wait()
        moved = Stream(late.port, session=session, session_key=key, last_event_id=last, token=token("ann"))
        opened.append(moved)
        assert moved.opened["session"] == session
        publish(a.port, "/chat/room1", text="later")
        publish(a.port, "/news", text="news later")
        wait_until(lambda: moved.texts() == ["news later"])
        moved.close()
        resumed = Stream(c.port, session=session, session_key=key, last_event_id=start, token=token("ann"))
        opened.append(resumed)
        wait_until(lambda: "news later" in resumed.texts())
        assert resumed.texts() == [*(f"news{i}" for i in range(10)), "news later"]
        assert [m["id"] for m in resumed.of("unsubscribed")] == [answer["id"]]


def test_unsubscribe_of_a_pushlet_session_moving_between_nodes_at_every_request(tmp_path):
    """A Pushlet pull session (one subscription ``/chat/room1,/news``) refreshes on each node in
    turn; revoked through one node, none of its later refreshes anywhere carries the subject."""
    with running_cluster(tmp_path) as nodes:  # anonymous: revoked by its session id
        ports = [node.port for node in nodes]
        client = PushletPullClient(lambda: ports, "/chat/room1,/news")
        publish(ports[0], "/chat/room1", text="before")
        wait_until(lambda: client.refresh() or [e["text"] for e in client.events] == ["before"])
        api(ports[1], "unsubscribe", {"subject": "/chat/room1", "session": client.session})
        for i in range(6):
            publish(ports[i % 3], "/chat/room1", text=f"after{i}")
            publish(ports[(i + 1) % 3], "/news", text=f"news{i}")
        wait_until(lambda: client.refresh() and "news5" in [e["text"] for e in client.events])
        assert [e["text"] for e in client.events] == ["before", *(f"news{i}" for i in range(6))]
        wait_until(lambda: record_subjects(nodes[0].prefix, client.session) == ["/news"])
        for _ in range(3):
            client.refresh()
        assert len(client.events) == 7


def test_disconnect_through_one_node_ends_the_users_sessions_on_the_others(tmp_path):
    """ann's streams on B and C get ``close`` with ``reconnect: false``; her Pushlet session is
    gone on every node; continuing her stream's session makes a new one; bob streams on."""
    with running_cluster(tmp_path, settings=SETTINGS) as nodes, streams() as opened:
        a, b, c = nodes
        on_b = Stream(b.port, subject="/n", token=token("ann"))
        on_c = Stream(c.port, subject="/n", token=token("ann"))
        bob = Stream(b.port, subject="/n", token=token("bob"))
        opened += [on_b, on_c, bob]
        _, events, _ = pushlet(c.port, p_event="join-listen", p_format="xml", p_mode="pull", p_subject="/n",
                               token=token("ann"))
        session = next(e for e in events if e["p_event"] == "join-listen-ack")["p_id"]
        api(a.port, "disconnect", {"user": "ann", "reason": "banned"})
        publish(a.port, "/n", text="after")
        for stream in (on_b, on_c):
            wait_until(lambda stream=stream: stream.of("close"))
            assert stream.of("close") == [{"type": "close", "reason": "banned", "reconnect": False}]
            assert stream.texts() == []
        wait_until(lambda: bob.texts() == ["after"])
        for node in nodes:
            status, _, body = pushlet(node.port, p_event="refresh", p_id=session, token=token("ann"))
            assert status == 400 and b"Invalid or expired id" in body, (status, body)
        again = Stream(a.port, session=on_b.opened["session"], session_key=on_b.opened["session_key"],
                       subject="/n", token=token("ann"))
        opened.append(again)
        assert again.opened["session"] != on_b.opened["session"]
