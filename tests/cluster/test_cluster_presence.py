"""Presence across real nodes: a SIGKILLed node's users get their ``leave`` announced by another node;
requests refused for a session announce nothing; a session that moved stays present."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from cluster_support import (
    Node,
    RedisServer,
    SSEClient,
    http,
    no_traceback,
    poll,
    pushlet,
    token_maker,
    unique_prefix,
    wait_until,
)
from redis_keys import delete_prefix

SECRET = "cluster-presence-secret"
token = token_maker(SECRET)




def actions(client: SSEClient, user: str) -> list[str]:
    """The presence actions ``client`` saw for ``user``, in order."""
    return [e["fields"]["action"] for e in client.events if e["fields"].get("user") == user]


def test_a_killed_nodes_user_leaves_on_the_companion_subject(tmp_path):
    prefix = unique_prefix()
    settings = {"auth.token.secret": SECRET, "backplane.node.ttl.secs": "1.5"}
    victim, survivor = (Node(tmp_path, prefix, settings=settings) for _ in range(2))
    watcher = ann = None
    try:
        victim.wait()
        survivor.wait()
        watcher = SSEClient(lambda: [survivor.port], "/presence/room", survivor.port, token=token("wendy"))
        assert watcher.opened.wait(10)
        ann = SSEClient(lambda: [victim.port], "/room", victim.port, token=token("ann"))
        wait_until(lambda: actions(watcher, "ann") == ["join"])
        ann.stop()
        victim.kill()
        # The victim's heartbeat expires (1.5 s); the survivor reaps it and announces the leave, once.
        wait_until(lambda: actions(watcher, "ann") == ["join", "leave"], timeout=15)
        leave = next(e for e in watcher.events if e["fields"].get("action") == "leave")
        assert leave["fields"]["subject"] == "/room"
        assert "ann left /room (node gone)" in survivor.log()  # announced by the survivor's reaper
    finally:
        for client in (watcher, ann):
            if client is not None:
                client.stop()
        victim.stop()
        survivor.stop()
        delete_prefix(prefix)


def test_refused_requests_for_an_absent_users_session_announce_no_presence(tmp_path):
    """Requests naming ann's sessions with wrong credentials (another user's token, a wrong session
    key), on nodes that do not hold them, change no presence: before the fix each made a copy of the
    session (``join``) and dropped it (``leave``)."""
    prefix = unique_prefix()
    settings = {"auth.token.secret": SECRET, "backplane.node.ttl.secs": "1.5"}
    victim, b, c = (Node(tmp_path, prefix, settings=settings) for _ in range(3))
    watcher = None
    try:
        for node in (victim, b, c):
            node.wait()
        watcher = SSEClient(lambda: [c.port], "/presence/online,/presence/room", c.port,
                            token=token("wendy"))
        assert watcher.opened.wait(10)
        ann = token("ann")
        native = poll(victim.port, subject="/room", token=ann)
        status, events, _ = pushlet(victim.port, p_event="join-listen", p_format="xml", p_mode="pull",
                                    p_subject="/room", token=ann)
        assert status == 200, events
        old = events[0]["p_id"]
        wait_until(lambda: sorted(actions(watcher, "ann")) == ["join", "join"])  # online, /room
        victim.kill()  # ann's sessions are gone with it; their records stay (their lease)
        wait_until(lambda: sorted(actions(watcher, "ann")) == ["join", "join", "leave", "leave"],
                   timeout=15)
        session, key = native["session"], native["session_key"]
        bob = token("bob")
        for port in (b.port, c.port):
            assert poll(port, subject="/room", session=session, session_key="0" * 22,
                        token=ann, status=403) is None
            assert poll(port, subject="/elsewhere", session=session, session_key=key,
                        token=bob)["session"] != session  # someone else's: bob gets his own
            status, _ = http(port, "POST", "/pushlet/send?" + urlencode(
                {"session": session, "session_key": "0" * 22, "token": ann}),
                b'{"type": "hb"}', {"Content-Type": "text/plain"})
            assert status == 403
            for event in ("subscribe", "refresh"):
                assert pushlet(port, p_event=event, p_id=old, p_subject="/room2", token=bob)[0] == 403
        # A request that may continue a session does show ann again (the watcher sees joins).
        assert poll(b.port, subject="/room", session=session, session_key=key,
                    token=ann)["session"] == session
        wait_until(lambda: len(actions(watcher, "ann")) >= 6)
        time.sleep(1)  # nothing else arrives
        assert sorted(actions(watcher, "ann")) == ["join"] * 4 + ["leave"] * 2
    finally:
        if watcher is not None:
            watcher.stop()
        for node in (victim, b, c):
            node.stop()
        delete_prefix(prefix)


def test_a_pushlet_session_that_moved_stays_online_when_its_old_copy_expires(tmp_path):
    """A Pushlet session claimed by another node is present there (``/presence/online``): when the
    copy it left on its first node expires, no ``leave`` is announced while it lives on."""
    prefix = unique_prefix()
    settings = {"auth.token.secret": SECRET, "session.timeout.mins": "0.05"}  # 3 s
    a, b = (Node(tmp_path, prefix, settings=settings) for _ in range(2))
    watcher = None
    try:
        a.wait()
        b.wait()
        watcher = SSEClient(lambda: [b.port], "/presence/online", b.port, token=token("wendy"))
        assert watcher.opened.wait(10)
        ann = token("ann")
        status, events, _ = pushlet(a.port, p_event="join-listen", p_format="xml", p_mode="pull",
                                    p_subject="/room", token=ann)
        session = events[0]["p_id"]
        wait_until(lambda: actions(watcher, "ann") == ["join"])
        started = time.monotonic()
        while time.monotonic() - started < 8:  # a's copy expires (3 s) while b serves the session
            status, events, body = pushlet(b.port, p_event="refresh", p_id=session, token=ann)
            assert status == 200 and not [e for e in events if e["p_event"] in ("nack", "abort")], body
        assert actions(watcher, "ann") == ["join"]
    finally:
        if watcher is not None:
            watcher.stop()
        a.stop()
        b.stop()
        delete_prefix(prefix)


def test_a_stopped_nodes_users_leave_on_the_companion_subject(tmp_path):
    """A node stopped gracefully (SIGTERM) ends its sessions: their users' ``leave`` is announced (by a
    node that stays up, which reaps the stopped one), and the stopping node logs no failure."""
    prefix = unique_prefix()
    settings = {"auth.token.secret": SECRET, "backplane.node.ttl.secs": "1.5"}
    stopping, survivor = (Node(tmp_path, prefix, settings=settings) for _ in range(2))
    watcher = ann = None
    try:
        stopping.wait()
        survivor.wait()
        watcher = SSEClient(lambda: [survivor.port], "/presence/online,/presence/room", survivor.port,
                            token=token("wendy"))
        assert watcher.opened.wait(10)
        ann = SSEClient(lambda: [stopping.port], "/room", stopping.port, token=token("ann"))
        wait_until(lambda: sorted(actions(watcher, "ann")) == ["join", "join"])
        stopping.stop()
        wait_until(lambda: sorted(actions(watcher, "ann")) == ["join", "join", "leave", "leave"], timeout=15)
        time.sleep(1)  # once each
        assert sorted(actions(watcher, "ann")) == ["join", "join", "leave", "leave"]
        assert "Traceback" not in stopping.log(), stopping.log()[-3000:]
    finally:
        for client in (watcher, ann):
            if client is not None:
                client.stop()
        stopping.stop()
        survivor.stop()
        delete_prefix(prefix)


def test_presence_changes_during_a_redis_outage_are_set_right_after_reconnect(tmp_path):
    """Redis is down (both nodes ``degraded``) while ann leaves and bob joins on one node: their
    presence writes fail (a warning each, no traceback); after reconnect that node sets its members
    right, every node's presence() agrees, and the watcher sees bob's join and ann's leave once."""
    redis = RedisServer(tmp_path, persistent=True)
    prefix = unique_prefix()
    a, b = (Node(tmp_path, prefix, redis.url, settings={"auth.token.secret": SECRET}) for _ in range(2))
    watcher = None
    try:
        a.wait()
        b.wait()
        watcher = SSEClient(lambda: [b.port], "/presence/room", b.port, token=token("wendy"))
        assert watcher.opened.wait(10)
        ann = poll(a.port, subject="/room", token=token("ann"))
        wait_until(lambda: actions(watcher, "ann") == ["join"])
        redis.stop()
        wait_until(lambda: all(node.stats()["backplane"]["state"] == "degraded" for node in (a, b)))
        status, _ = http(a.port, "POST", "/pushlet/send?" + urlencode(
            {"session": ann["session"], "session_key": ann["session_key"], "token": token("ann")}),
            b'{"type": "leave"}', {"Content-Type": "text/plain"})
        assert status == 200
        poll(a.port, subject="/room", token=token("bob"))
        redis.start()  # its data back (append-only file): this node's members are as before the outage
        wait_until(lambda: all(node.stats()["backplane"]["state"] == "up" for node in (a, b)), timeout=20)
        seen = (["join"], ["join", "leave"])  # bob's, ann's
        wait_until(lambda: (actions(watcher, "bob"), actions(watcher, "ann")) == seen)
        for node in (a, b):
            status, body = http(node.port, "GET", "/pushlet/presence?" + urlencode(
                {"subject": "/room", "token": token("wendy")}))
            assert status == 200 and json.loads(body)["users"] == {"bob": 1}, body
        time.sleep(1)  # nothing else arrives
        assert (actions(watcher, "bob"), actions(watcher, "ann")) == seen
        log = a.log()
        assert "presence leave of ann on /room deferred: backplane unavailable" in log
        assert "presence join of bob on /room deferred: backplane unavailable" in log
        no_traceback([a, b])
        assert "critical" not in log
    finally:
        if watcher is not None:
            watcher.stop()
        for node in (a, b):
            node.stop()
        redis.kill()
