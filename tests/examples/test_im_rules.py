"""The chat and customer-service apps' rules, on a push server with an injected clock (no sockets)."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest
from example_support import EXAMPLES
from twisted.internet.task import Clock

from pushpy import PushServer
from pushpy.auth import Credentials
from pushpy.errors import ClientError


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


chat_app = load("chat_app", "chat/app.py")
cs_app = load("customer_service_app", "customer_service/app.py")
SECRET = "s" * 32


def session(user: str | None) -> SimpleNamespace:
    """What the authorizer reads of a session: its user."""
    return SimpleNamespace(user=user)


def recorder(server: PushServer) -> list:
    events: list = []
    server.backplane.attach(events.append)
    return events


# -- chat --------------------------------------------------------------------------


@pytest.fixture
def chat():
    chat = chat_app.Chat(SECRET)
    chat.push = PushServer(reactor=Clock(), authorizer=chat.authorizer())
    return chat


def test_chat_join_needs_a_valid_token(chat):
    """A pushpy session joins as the user of the login token; no or a forged token is refused."""
    user, token = chat.login(" ann ")
    assert user == "ann"
    assert chat._join(Credentials(cookies={"pushpy_token": token})).user == "ann"
    with pytest.raises(ClientError, match="log in first"):
        chat._join(Credentials())
    with pytest.raises(ClientError, match="bad signature"):
        chat._join(Credentials(params={"token": token[:-2] + "xx"}))


def test_chat_subscribe_and_publish_rules(chat):
    """Rooms are everyone's, groups their members', private messages go to known users only."""
    for name in ("ann", "bob", "cid"):
        chat.login(name)
    group = chat.create_group("ann", "team", ["bob"])
    ann, cid, anonymous = session("ann"), session("cid"), session(None)
    allowed = ["/chat/room/general/msg", "/chat/room/random/typing", f"/chat/group/{group.id}/msg",
               "/chat/rooms", "/online", "/presence/online", "/chat/room/general/msg,/chat/rooms"]
    assert all(chat._may_subscribe(ann, subject) for subject in allowed)
    refused = ["", ",", "/chat", "/chat/room/general", "/chat/room/gen", "/chat/room/nope/msg",
               "/chat/room/general/msgs", "/chat/group/nope/msg", "/chat/rooms,/secret", "/presence",
               "/cs/visit/x"]
    assert not [subject for subject in refused if chat._may_subscribe(ann, subject)]
    assert not chat._may_subscribe(cid, f"/chat/group/{group.id}/msg")
    assert not chat._may_subscribe(anonymous, "/chat/room/general/msg")
    assert chat._may_publish(ann, "/chat/room/general/msg") and chat._may_publish(ann, "user:cid")
    assert not [subject for subject in ["/chat/rooms", "/online", "/presence/online", "user:nobody",
                                        f"/chat/group/{group.id}/x"] if chat._may_publish(ann, subject)]
    assert not chat._may_publish(cid, f"/chat/group/{group.id}/msg")
    assert not chat._may_publish(anonymous, "user:ann")


def test_new_rooms_and_groups_are_announced(chat):
    """A new room is published on /chat/rooms (once); a new group is sent to each member's sessions."""
    events = recorder(chat.push)
    for name in ("ann", "bob"):
        chat.login(name)
    assert chat.create_room(" Kettles ") == "kettles"
    assert chat.create_room("kettles") == "kettles"
    group = chat.create_group("ann", "team", ["bob", "bob"])
    assert group.members == {"ann", "bob"}
    rooms = [e for e in events if e.fields.get("p_subject") == "/chat/rooms"]
    assert [e.fields["room"] for e in rooms] == ["kettles"]
    notices = [e for e in events if e.fields.get("p_subject") == "/chat/groups"]
    assert sorted(e.target for e in notices) == ["ann", "bob"]
    assert {e.fields["group"] for e in notices} == {group.id}
    for bad in ("-x", "a b", "x" * 33, ""):
        with pytest.raises(chat_app.ApiError):
            chat.create_room(bad)
    with pytest.raises(chat_app.ApiError, match="unknown user: zed"):
        chat.create_group("ann", "team", ["zed"])


# -- customer service ------------------------------------------------------------------


@pytest.fixture
def desk():
    clock = Clock()
    service = cs_app.Service(SECRET, capacity=1, grace=10.0)
    service.push = PushServer(reactor=clock, authorizer=service.authorizer())
    return service, clock


def test_visitor_queued_then_assigned_with_news_for_everyone(desk):
    """An agent coming takes the queued visitor: the agent, the visitor and the conversation are told."""
    service, _ = desk
    events = recorder(service.push)
    assert service.open("v1", "Vera")["position"] == 1
    state = service.set_available("ann", True)
    assert state["visitors"] == [{"visitor": "v1", "name": "Vera", "subject": "/cs/visit/v1"}]
    to_ann = [e.fields for e in events if e.target == "agent:ann"]
    assert to_ann[-1]["kind"] == "assigned" and to_ann[-1]["visitor"] == "v1"
    status = [e.fields for e in events if e.target == "visitor:v1"]
    assert status[0]["position"] == "1" and status[-1]["agent"] == "ann"
    said = [e.fields["text"] for e in events if e.fields.get("p_subject") == "/cs/visit/v1"]
    assert said == ["Chat opened. An agent will be with you soon.", "ann is now helping you."]


def test_who_may_read_and_write_a_conversation(desk):
    """A visitor reads their own conversation, an agent those they serve; nobody writes for another."""
    service, _ = desk
    service.set_available("ann", True)
    service.open("v1", "")
    service.open("v2", "")  # queued: ann serves one at a time
    assert service._may_subscribe(session("visitor:v1"), "/cs/visit/v1")
    assert service._may_subscribe(session("agent:ann"), "/cs/visit/v1,/cs/agents")
    refused = [("visitor:v1", "/cs/visit/v2"), ("visitor:v1", "/cs/agents"), ("agent:ann", "/cs/visit/v2"),
               ("agent:bob", "/cs/visit/v1"), ("visitor:v1", "/cs/visit/v"), (None, "/cs/visit/v1"),
               ("agent:ann", "")]
    assert not [pair for pair in refused if service._may_subscribe(session(pair[0]), pair[1])]
    with pytest.raises(cs_app.ApiError, match="not your visitor"):
        service.agent_says("ann", "v2", "hello")
    with pytest.raises(cs_app.ApiError, match="1 to 2000"):
        service.agent_says("ann", "v1", " ")
    with pytest.raises(cs_app.ApiError, match="agent bob is not available"):
        service.transfer("ann", "v1", "bob")
    with pytest.raises(cs_app.ApiError, match="visitors only"):
        service.visitor("agent:ann")


def test_presence_check_moves_visitors_of_gone_agents_and_ends_gone_visitors(desk):
    """With nobody online, an available agent leaves the desk at once; a visitor's chat closes after grace."""
    service, clock = desk
    events = recorder(service.push)
    service.set_available("ann", True)
    service.open("v1", "Vera")
    service.check_presence()
    assert service.desk.available_agents() == [] and service.desk.position("v1") == 1
    # ann leaves the desk: the conversation is taken from her sessions before she is told.
    assert [(e.name, e.fields.get("kind") or e.subject) for e in events if e.target == "agent:ann"] == [
        ("data", "assigned"), ("unsubscribed", "/cs/visit/v1"), ("data", "removed")]
    clock.advance(9)
    service.check_presence()
    assert "v1" in service.visitors
    clock.advance(2)
    service.check_presence()
    assert "v1" not in service.visitors and service.desk.position("v1") is None
    assert [e.fields["text"] for e in events if e.subject == "/cs/visit/v1" and e.name == "data"][-1] == \
        "The visitor left."
