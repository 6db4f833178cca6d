"""Native sessions across real nodes: same session id everywhere, unicasts and user events exactly once.

A long-poll client sends each request to the next live node (a round-robin
balancer) with its session id, session key, token and last event id; the
back end sends it unicasts (to its session id) and user events (to its user)
through every node in turn, and one node is SIGKILLed with a long-poll
waiting on it.  The client must keep its session id and receive every event,
exactly once, in order.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

from cluster_support import API_KEY, Node, http, unique_prefix, wait_until, xml_events
from redis_keys import delete_prefix

from pushpy.auth import mint_token

SECRET = "cluster-native-secret"
TOTAL = 40
KILL_AT = 20


class LongPollClient:
    """``pushpy.js``'s long-poll loop, one request per call, each to the next live node."""

    def __init__(self, ports, subject: str, token: str) -> None:
        self.ports = ports
        self.params = {"subject": subject, "token": token}
        self.turn = 0
        self.sessions: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []

    def poll(self, port: int | None = None) -> list[dict[str, Any]] | None:
        """One long-poll; ``None`` when the node died under it (the next goes elsewhere)."""
        if port is None:
            ports = self.ports()
            port = ports[self.turn % len(ports)]
            self.turn += 1
        try:
            status, body = http(port, "GET", "/pushlet/longpoll?" + urlencode(self.params), timeout=10)
        except OSError:
            return None
        assert status == 200, (status, body)
        answer = json.loads(body)
        if "session_key" in answer:
            self.params["session_key"] = answer["session_key"]
        self.params["session"] = answer["session"]
        self.sessions.add(answer["session"])
        if answer["position"]:
            self.params["last_event_id"] = answer["position"]
        found = [m for m in answer["messages"] if m["type"] == "event"]
        self.notices += [m for m in answer["messages"] if m["type"] in ("gap", "close")
                         or (m["type"] == "recovery" and not m["recovered"])]
        self.events += found
        return found


def _until_dead(client: LongPollClient, port: int) -> None:
    while client.poll(port) is not None:
        pass


def send(port: int, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    status, answer = http(port, "POST", "/pushlet/api/publish", body,
                          {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    assert status == 200, answer


def test_a_native_session_moves_between_nodes_and_gets_every_unicast_and_user_event_once(tmp_path):
    prefix = unique_prefix()
    settings = {"auth.token.secret": SECRET}
    nodes = [Node(tmp_path, prefix, settings=settings) for _ in range(3)]
    victim = nodes[1]

    def alive() -> list[int]:
        return [node.port for node in nodes if node.process.poll() is None]

    try:
        for node in nodes:
            node.wait()
        token = mint_token(SECRET, "ann", subscribe=["*"], expires_in=600)
        client = LongPollClient(alive, "/n", token)
        for _ in range(3):
            client.poll()  # the session on every node (a copy from the shared record)
        session = client.params["session"]
        for i in range(TOTAL):
            if i == KILL_AT:
                # Long-polls (each waits 1 s for events) on the victim until it dies under one.
                waiting = threading.Thread(target=lambda: _until_dead(client, victim.port))
                waiting.start()
                wait_until(lambda: victim.stats()["connections"]["total"] >= 1, timeout=5)
                victim.kill()
                waiting.join(10)
            ports = alive()
            target = {"session": session} if i % 2 else {"user": "ann"}
            send(ports[i % len(ports)], {**target, "fields": {"n": str(i)}})
            if i % 4 == 3:
                client.poll()

        def drained() -> bool:
            if len(client.events) < TOTAL:
                client.poll()
            return len(client.events) >= TOTAL

        wait_until(drained, timeout=30, step=0)
        client.poll()  # one more, on the next node: nothing is delivered twice
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(prefix)
    assert [int(e["fields"]["n"]) for e in client.events] == list(range(TOTAL))
    assert client.sessions == {session}  # one session id on every node, before and after the kill
    assert client.notices == []


def test_send_continues_a_session_on_a_node_that_never_held_it(tmp_path):
    """``POST send`` (client messages of the HTTP transports) may land on any node: same session there."""
    prefix = unique_prefix()
    nodes = [Node(tmp_path, prefix, settings={"auth.token.secret": SECRET}) for _ in range(2)]
    try:
        for node in nodes:
            node.wait()
        token = mint_token(SECRET, "ann", subscribe=["*"], publish=["*"], expires_in=600)
        client = LongPollClient(lambda: [nodes[0].port], "/s", token)
        client.poll()
        params = {"session": client.params["session"], "session_key": client.params["session_key"],
                  "token": token}
        body = json.dumps({"type": "subscribe", "subject": "/t", "ref": 1}).encode()
        wrong = urlencode({**params, "session_key": "0" * 32})
        status, answer = http(nodes[1].port, "POST", "/pushlet/send?" + wrong, body,
                              {"Content-Type": "text/plain"})
        assert status == 403, answer
        status, answer = http(nodes[1].port, "POST", "/pushlet/send?" + urlencode(params), body,
                              {"Content-Type": "text/plain"})
        assert status == 200, answer
        [reply] = json.loads(answer)
        assert reply["type"] == "ack" and reply["ref"] == 1, reply
        send(nodes[1].port, {"subject": "/t/x", "fields": {"n": "0"}})
        wait_until(lambda: client.poll() is not None and any(e["subject"] == "/t/x" for e in client.events),
                   timeout=15, step=0)
        assert client.sessions == {params["session"]}
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(prefix)


def test_a_pushlet_session_with_a_token_subscribes_on_another_node(tmp_path):
    """A Pushlet session's copy on a node that never held it keeps its user's grants (asked again from
    the request's token); a token of another user is refused there, and the session lives on."""
    prefix = unique_prefix()
    nodes = [Node(tmp_path, prefix, settings={"auth.token.secret": SECRET}) for _ in range(3)]
    try:
        for node in nodes:
            node.wait()
        ann = mint_token(SECRET, "ann", subscribe=["/t/"], expires_in=600)
        bob = mint_token(SECRET, "bob", subscribe=["*"], expires_in=600)
        status, body = http(nodes[0].port, "GET", "/pushlet/pushlet.srv?" + urlencode(
            {"p_event": "join", "p_format": "xml", "token": ann}))
        [ack] = xml_events(body)
        assert status == 200 and ack["p_event"] == "join-ack", body
        session = ack["p_id"]

        def subscribe(port: int, subject: str, token: str) -> tuple[int, bytes]:
            return http(port, "GET", "/pushlet/pushlet.srv?" + urlencode(
                {"p_event": "subscribe", "p_id": session, "p_subject": subject, "token": token}))

        status, body = subscribe(nodes[2].port, "/t/x", bob)
        assert status == 403, body  # the session is ann's
        status, body = subscribe(nodes[1].port, "/t/x", ann)
        assert status == 200 and b"subscribe-ack" in body, body
        status, body = subscribe(nodes[1].port, "/secret", ann)
        assert b"nack" in body and b"not allowed to subscribe to /secret" in body, body
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(prefix)
