"""The customer-service example's queue (examples/customer_service/desk.py), without I/O."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "customer_service"))

from desk import Desk, DeskError, Move


def test_visitor_waits_until_an_agent_is_available() -> None:
    """With no agent a visitor is queued; the first agent to come takes it."""
    desk = Desk()
    assert desk.open("v1") == [Move("v1", None)]
    assert desk.position("v1") == 1
    assert desk.agent_available("ann") == [Move("v1", "ann")]
    assert desk.agent_of("v1") == "ann"
    assert desk.position("v1") is None


def test_visitors_go_to_the_least_busy_agent() -> None:
    """Each visitor goes to the available agent serving the fewest; ties to who waited longest."""
    desk = Desk()
    desk.agent_available("ann")
    desk.agent_available("bob")
    assert desk.open("v1") == [Move("v1", "ann")]
    assert desk.open("v2") == [Move("v2", "bob")]
    assert desk.open("v3") == [Move("v3", "ann")]
    assert desk.visitors_of("ann") == ["v1", "v3"]


def test_full_agents_queue_visitors_in_order() -> None:
    """Past every agent's capacity visitors wait in arrival order; a closed chat frees a place."""
    desk = Desk(capacity=2)
    desk.agent_available("ann")
    desk.open("v1")
    desk.open("v2")
    assert desk.open("v3") == [Move("v3", None)]
    assert desk.open("v4") == [Move("v4", None)]
    assert desk.position("v4") == 2
    assert desk.close("v1") == [Move("v3", "ann")]
    assert desk.position("v4") == 1


def test_open_again_changes_nothing() -> None:
    """A visitor who reloads keeps its agent, or its place in the queue."""
    desk = Desk(capacity=1)
    desk.agent_available("ann")
    desk.open("v1")
    desk.open("v2")
    assert desk.open("v1") == []
    assert desk.open("v2") == []
    assert desk.agent_of("v1") == "ann"
    assert desk.position("v2") == 1


def test_transfer_moves_the_visitor_and_frees_a_place() -> None:
    """A transfer reassigns the visitor; the freed place goes to the queue's head."""
    desk = Desk(capacity=1)
    desk.agent_available("ann")
    desk.open("v1")
    desk.open("v2")
    desk.agent_available("bob")
    assert desk.agent_of("v2") == "bob"
    desk.close("v2")
    assert desk.transfer("v1", "ann", "bob") == [Move("v1", "bob", "ann")]
    assert desk.visitors_of("ann") == []
    assert desk.open("v5") == [Move("v5", "ann")]


def test_transfer_refusals_change_nothing() -> None:
    """Transfers by a stranger, to oneself, to an unknown, away or full agent are refused."""
    desk = Desk(capacity=1)
    desk.agent_available("ann")
    desk.agent_available("bob")
    desk.agent_available("cid")
    desk.open("v1")  # ann
    desk.open("v2")  # bob
    desk.agent_away("cid")
    for by, to, reason in [("bob", "cid", "does not serve"), ("ann", "ann", "same agent"),
                           ("ann", "zed", "not available"), ("ann", "cid", "not available"),
                           ("ann", "bob", "no room")]:
        with pytest.raises(DeskError, match=reason):
            desk.transfer("v1", by, to)
        assert desk.agent_of("v1") == "ann"
    assert desk.visitors_of("bob") == ["v2"]


def test_agent_away_hands_visitors_to_others_or_the_queue_head() -> None:
    """An agent's visitors go to another with room, the rest to the head of the queue, in order."""
    desk = Desk(capacity=2)
    desk.agent_available("ann")
    desk.agent_available("bob")
    for visitor in ("v1", "v2", "v3", "v4"):
        desk.open(visitor)
    desk.close("v2")  # bob has room for one
    desk.open("v5")   # bob again: full
    desk.close("v4")
    assert desk.visitors_of("ann") == ["v1", "v3"]
    assert desk.visitors_of("bob") == ["v5"]
    desk.open("v6")  # bob
    desk.open("v7")  # queued
    assert desk.agent_away("bob") == [Move("v5", None, "bob"), Move("v6", None, "bob")]
    assert list(desk.queue) == ["v5", "v6", "v7"]
    assert desk.close("v1") == [Move("v5", "ann")]
    assert desk.agent_available("bob") == [Move("v6", "bob"), Move("v7", "bob")]


def test_agent_away_reassigns_at_once_when_another_has_room() -> None:
    """A visitor of an agent who leaves goes straight to an agent with room (one move per visitor)."""
    desk = Desk(capacity=3)
    desk.agent_available("ann")
    desk.open("v1")
    desk.agent_available("bob")
    assert desk.agent_away("ann") == [Move("v1", "bob", "ann")]
    assert desk.agent_of("v1") == "bob"
    assert desk.agent_away("nobody") == []


def test_capacity_must_be_positive() -> None:
    """A desk whose agents could serve nobody is a mistake."""
    with pytest.raises(ValueError):
        Desk(capacity=0)
