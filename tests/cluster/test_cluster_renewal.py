"""Session records outlive their TTL while their session lives, and expire on every node once it is gone.

Short timeouts (2 to 3 s) on real nodes: a native session whose connection
stays open on one node, a Pushlet stream, and a Pushlet pull client whose
requests go round robin, each live for several TTLs and then continue on
another node; once their client goes away, the session is unknown everywhere.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from cluster_support import (
    Node,
    PushletPullClient,
    PushletStream,
    SSEClient,
    http,
    publish,
    pushlet,
    running_cluster,
    wait_until,
)
from redis_keys import command

NATIVE_TTL = 2.0
PUSHLET_TTL = 3.0  # session.timeout.mins = 0.05
LIVE = 3.5 * PUSHLET_TTL  # seconds a session is kept alive in each test: several TTLs


def idle(*nodes: Node) -> bool:
    """Whether no node holds a session any more."""
    return all(node.stats()["sessions"]["total"] == 0 for node in nodes)


def poll(port: int, **params: str) -> dict:
    status, body = http(port, "GET", "/pushlet/poll?" + urlencode(params))
    assert status == 200, (status, body)
    return json.loads(body)


def test_an_open_native_connection_keeps_its_record_and_a_gone_client_expires_everywhere(tmp_path):
    with running_cluster(tmp_path, 2, {"native.session.timeout.secs": str(NATIVE_TTL)}) as (a, b):
        sse = SSEClient(lambda: [a.port], "/r", a.port)
        try:
            assert sse.opened.wait(10)
            session, key = sse.session, sse.key
            record = f"{a.prefix}:session:{session}"
            time.sleep(LIVE)  # over 5 TTLs: only a's renewals (every third of it) keep the record
            assert command("PTTL", record) > 0
            answer = poll(b.port, subject="/r", session=session, session_key=key)
            assert answer["session"] == session  # continued on b from the record
            # That connect ended the stream on a (as on one node); the client reconnects to a,
            # resuming from its position.
            wait_until(lambda: sse.connections == 2)
            publish(b.port, "/r", n="1")
            wait_until(lambda: [e["fields"]["n"] for e in sse.events] == ["1"])
        finally:
            sse.stop()
        # The client is gone: a's copy (no connection) and b's copy expire, and so does the record.
        wait_until(lambda: command("EXISTS", record) == 0 and idle(a, b), timeout=4 * NATIVE_TTL + 5)
        for node in (a, b):
            answer = poll(node.port, subject="/r", session=session, session_key=key)
            assert answer["session"] != session  # a new session: the old one is gone everywhere


def test_an_open_pushlet_stream_keeps_its_record_and_its_session_is_served_elsewhere(tmp_path):
    with running_cluster(tmp_path, 2, {"session.timeout.mins": str(PUSHLET_TTL / 60)}) as (a, b):
        stream = PushletStream(a.port, {"p_event": "join-listen", "p_subject": "/s"})
        try:
            session = stream.session()
            time.sleep(LIVE)  # no request but the open stream: a renews the record
            assert command("PTTL", f"{a.prefix}:session:{session}") > 0
            status, events, body = pushlet(b.port, p_event="subscribe", p_id=session, p_subject="/t")
            assert status == 200 and events[0]["p_event"] == "subscribe-ack", body
            publish(b.port, "/t", n="1")  # b told a of the new subscription: the stream gets it
            wait_until(lambda: [e.get("n") for e in stream.events() if e.get("p_event") == "data"] == ["1"])
        finally:
            stream.close()  # a dropped stream ends a Pushlet session, on every node
        wait_until(lambda: pushlet(b.port, p_event="subscribe", p_id=session, p_subject="/u")[0] == 400,
                   timeout=10)


def test_a_pushlet_pull_session_lives_on_requests_and_expires_everywhere_without_them(tmp_path):
    with running_cluster(tmp_path, 2, {"session.timeout.mins": str(PUSHLET_TTL / 60)}) as nodes:
        ports = [node.port for node in nodes]
        client = PushletPullClient(lambda: ports, "/p")
        client.refresh()  # the listen made on one node, refreshes alternate
        started, sent = time.monotonic(), 0
        while time.monotonic() - started < LIVE:
            publish(ports[sent % 2], "/p", n=str(sent))
            sent += 1
            client.refresh()
            time.sleep(0.5)
        wait_until(lambda: client.refresh() is not None and len(client.events) >= sent, timeout=10)
        assert [int(e["n"]) for e in client.events] == list(range(sent))
        # No more requests: the session expires on both nodes and in Redis.
        wait_until(lambda: command("EXISTS", f"{nodes[0].prefix}:session:{client.session}") == 0
                   and idle(*nodes),
                   timeout=2 * PUSHLET_TTL + 5)
        for port in ports:
            assert pushlet(port, p_event="refresh", p_id=client.session)[0] == 400
