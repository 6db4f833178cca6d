"""The service desk: which agent talks to which visitor, and who waits.

Plain Python, no I/O: the app calls it and publishes what it returns.  Each
call that changes an assignment returns the :class:`Move` list it caused, in
order, so the app can tell the visitors and agents concerned.

- A visitor who opens a chat goes to the available agent with the fewest
  visitors (ties: the agent who has waited longest since their last
  assignment), or waits in the queue when every agent is full or away.
- An agent who becomes available takes visitors from the head of the queue up
  to their capacity; one who goes away hands their visitors back to the head
  of the queue, in the order they came, and they are reassigned at once when
  another agent has room.
- An agent may transfer a visitor to another available agent with room.
- Opening again (a visitor reloading the page) changes nothing.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field


class DeskError(Exception):
    """A request the desk refuses; the message says why (shown to the agent)."""


@dataclass(frozen=True, slots=True)
class Move:
    """``visitor`` now talks to ``agent`` (``None``: waits in the queue); ``previous`` had it before."""

    visitor: str
    agent: str | None
    previous: str | None = None


@dataclass(slots=True)
class Agent:
    name: str
    capacity: int
    available: bool = False
    visitors: list[str] = field(default_factory=list)
    #: Order of the agent's last assignment (lower: waited longer).
    last: int = 0

    @property
    def free(self) -> int:
        return self.capacity - len(self.visitors) if self.available else 0


class Desk:
    """Agents, their visitors and the queue.

    :param capacity: how many visitors an agent serves at once.
    """

    def __init__(self, capacity: int = 3) -> None:
        if capacity < 1:
            raise ValueError("an agent must be able to serve at least one visitor")
        self.capacity = capacity
        self.agents: dict[str, Agent] = {}
        self.queue: deque[str] = deque()
        self._assigned: dict[str, str] = {}
        self._clock = itertools.count(1)

    # -- queries -------------------------------------------------------------

    def agent_of(self, visitor: str) -> str | None:
        """The agent serving ``visitor``, or ``None``."""
        return self._assigned.get(visitor)

    def position(self, visitor: str) -> int | None:
        """``visitor``'s place in the queue (1: next), or ``None`` when not waiting."""
        try:
            return self.queue.index(visitor) + 1
        except ValueError:
            return None

    def visitors_of(self, agent: str) -> list[str]:
        """The visitors ``agent`` serves, in the order they were assigned."""
        found = self.agents.get(agent)
        return list(found.visitors) if found else []

    def available_agents(self) -> list[str]:
        """Names of the agents who are available, sorted."""
        return sorted(name for name, agent in self.agents.items() if agent.available)

    # -- visitors ------------------------------------------------------------

    def open(self, visitor: str) -> list[Move]:
        """``visitor`` asks for a chat: assigned, or queued; nothing when already either."""
        if visitor in self._assigned or visitor in self.queue:
            return []
        agent = self._pick()
        if agent is None:
            self.queue.append(visitor)
            return [Move(visitor, None)]
        return [self._assign(visitor, agent)]

    def close(self, visitor: str) -> list[Move]:
        """``visitor`` ends the chat; its agent's freed place goes to the queue's head."""
        if visitor in self.queue:
            self.queue.remove(visitor)
            return []
        name = self._assigned.pop(visitor, None)
        if name is None:
            return []
        self.agents[name].visitors.remove(visitor)
        return self._drain()

    # -- agents --------------------------------------------------------------

    def agent_available(self, name: str) -> list[Move]:
        """Agent ``name`` is ready for visitors: it takes waiting ones up to its capacity."""
        agent = self.agents.setdefault(name, Agent(name, self.capacity))
        agent.available = True
        return self._drain()

    def agent_away(self, name: str) -> list[Move]:
        """Agent ``name`` leaves: its visitors go back to the head of the queue and on to others."""
        agent = self.agents.get(name)
        if agent is None:
            return []
        agent.available = False
        handed_back = agent.visitors
        agent.visitors = []
        for visitor in handed_back:
            del self._assigned[visitor]
        self.queue.extendleft(reversed(handed_back))
        moves = [Move(visitor, None, name) for visitor in handed_back]
        drained = self._drain()
        reassigned = {move.visitor: move for move in drained}
        # One move per handed-back visitor: straight to the new agent when there was room.
        moves = [Move(m.visitor, reassigned.pop(m.visitor).agent, name) if m.visitor in reassigned else m
                 for m in moves]
        return moves + list(reassigned.values())

    def transfer(self, visitor: str, by: str, to: str) -> list[Move]:
        """Agent ``by`` hands ``visitor`` to agent ``to``.

        :raises DeskError: ``by`` does not serve ``visitor``, or ``to`` is
            ``by``, unknown, away or full.
        """
        if self._assigned.get(visitor) != by:
            raise DeskError(f"{by} does not serve {visitor}")
        if to == by:
            raise DeskError("a visitor cannot be transferred to the same agent")
        target = self.agents.get(to)
        if target is None or not target.available:
            raise DeskError(f"agent {to} is not available")
        if not target.free:
            raise DeskError(f"agent {to} has no room")
        self.agents[by].visitors.remove(visitor)
        return [self._assign(visitor, target, previous=by), *self._drain()]

    # -- internals -----------------------------------------------------------

    def _pick(self) -> Agent | None:
        candidates = [agent for agent in self.agents.values() if agent.free > 0]
        if not candidates:
            return None
        return min(candidates, key=lambda agent: (len(agent.visitors), agent.last, agent.name))

    def _assign(self, visitor: str, agent: Agent, previous: str | None = None) -> Move:
        agent.visitors.append(visitor)
        agent.last = next(self._clock)
        self._assigned[visitor] = agent.name
        return Move(visitor, agent.name, previous)

    def _drain(self) -> list[Move]:
        moves = []
        while self.queue:
            agent = self._pick()
            if agent is None:
                break
            moves.append(self._assign(self.queue.popleft(), agent))
        return moves
