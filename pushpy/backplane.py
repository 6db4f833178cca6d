"""The in-process backplane: history and fan-out within one process.

It implements :class:`pushpy.interfaces.IBackplane` synchronously with the
core's :class:`~pushpy.core.history.History`.  A clustered backplane (Redis)
implements the same interface; the dispatcher cannot tell them apart.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from pushpy.core.events import Event
from pushpy.core.history import History, Recovery
from pushpy.core.presence import Presence
from pushpy.interfaces import IBackplane

Receiver = Callable[[Event], object]


@implementer(IBackplane)
class MemoryBackplane:
    """Publishes to receivers in this process; keeps per-subject history.

    :param now: returns the current time (injected for tests).
    """

    def __init__(self, *, history_size: int = 100, history_ttl: float = 600.0,
                 max_subjects: int = 100_000, now: Callable[[], float] = time.time,
                 epoch: str | None = None) -> None:
        self.now = now
        self.history_log = History(epoch or secrets.token_hex(4), max_events=history_size,
                                   max_age=history_ttl, max_subjects=max_subjects)
        self._receivers: list[Receiver] = []
        self.presence_store = Presence()

    @property
    def epoch(self) -> str:
        return self.history_log.epoch

    @property
    def position(self) -> str:
        return self.history_log.position

    def attach(self, receiver: Receiver) -> None:
        self._receivers.append(receiver)

    def detach(self, receiver: Receiver) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    def publish(self, event: Event) -> Event:
        event = self.history_log.append(event, self.now())
        for receiver in self._receivers:
            receiver(event)
        return event

    def history(self, subject: str, count: int) -> list[Event]:
        return self.history_log.last(subject, count, self.now())

    def since(self, position: str | None, matches: Callable[[str], bool],
              owners: frozenset[tuple[str, str]] = frozenset()) -> Recovery:
        return self.history_log.since(position, matches, self.now(), owners)

    def presence_enter(self, subject: str, user: str, member: str) -> bool:
        return self.presence_store.enter(subject, user, member)

    def presence_leave(self, subject: str, user: str, member: str) -> bool:
        return self.presence_store.leave(subject, user, member)

    def presence(self, subject: str) -> dict[str, int]:
        return self.presence_store.members(subject)

    def trim(self) -> None:
        """Drop expired history (called periodically by the server)."""
        self.history_log.trim(self.now())


def backplane_from_config(config: Any, reactor: Any, now: Callable[[], float]) -> Any:
    """The backplane ``config.backplane`` names: in-process when empty, else Redis."""
    if not config.backplane:
        return MemoryBackplane(history_size=config.history_size, history_ttl=config.history_ttl_secs,
                               max_subjects=config.history_max_subjects, now=now)
    from pushpy.cluster.redis_backplane import RedisBackplane

    return RedisBackplane(config.backplane, reactor=reactor, prefix=config.backplane_prefix,
                          log_size=config.backplane_log_size, history_ttl=config.history_ttl_secs,
                          outbox_size=config.backplane_outbox_size,
                          node_ttl=config.backplane_node_ttl_secs, now=now)
