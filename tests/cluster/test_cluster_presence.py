"""Presence across real nodes: a SIGKILLed or stopped node's users get their ``leave`` announced by
another node."""

from __future__ import annotations

import time

from cluster_support import Node, SSEClient, token_maker, unique_prefix, wait_until
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
