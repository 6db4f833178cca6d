"""Server-side revocation: the application removes subscriptions or ends sessions.

Authorization is asked when a session subscribes.  When the application later
takes a right back (a conversation transferred to another agent, a user removed
from a group, a ban) it calls :meth:`pushpy.PushServer.unsubscribe` or
:meth:`~pushpy.PushServer.disconnect`, which publish a **revocation**: an event
named :data:`~pushpy.protocol.UNSUBSCRIBED` or :data:`~pushpy.protocol.DISCONNECTED`,
routed to a user (every session of theirs) or to one session.  It goes through
the backplane like any event, so every process applies it at its place in the
one order of events: an event stored after it never reaches what it removed.

- An unsubscribe removes from each subscription the prefixes that
  :func:`overlaps` the subject: the subject, those under it
  (``/chat/room1/typing``) and broader ones (``/chat``), which cannot be cut
  down (``docs/security.md``).  A comma list keeps its other prefixes and its
  sid.  Events of the removed prefixes still queued for the session are dropped.
- A disconnect ends the session (:attr:`~pushpy.core.sessions.EndReason.REVOKED`).

Only what was made before the revocation is affected: sessions and
subscriptions carry the backplane position at which they were made (``made``),
so a subscription allowed again afterwards stays, on a node that sees the
revocation late too.  A dispatcher remembers the revocations it applied for a
while (:class:`Remembered`), for the copies of sessions it makes later from
records written before (:mod:`pushpy.cluster.sessions`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pushpy import protocol as P
from pushpy.core.events import Event, Route
from pushpy.core.history import parse_position

#: Names of revocation events.
REVOCATIONS = frozenset({P.UNSUBSCRIBED, P.DISCONNECTED})


def overlaps(prefix: str, subject: str) -> bool:
    """Whether a subscription prefix receives events of ``subject`` or of a subject under it.

    Pushlet's string prefix rule both ways: ``/chat/room1`` and ``/chat`` both
    overlap ``/chat/room1``, and so do ``/chat/room1/typing`` and ``/chat/room10``
    (revoke ``/chat/room1/`` to spare the latter).
    """
    return prefix.startswith(subject) or subject.startswith(prefix)


def revocation(name: str, now: float, *, user: str | None, session: str | None,
               reason: str, subject: str | None = None) -> Event:
    """A revocation event for every session of ``user``, or for the session ``session``."""
    fields = {P.P_EVENT: name, P.P_TIME: str(int(now)), P.P_REASON: reason}
    if subject is not None:
        fields[P.P_SUBJECT] = subject
    if user is not None:
        return Event(fields, route=Route.USER, target=user)
    return Event(fields, route=Route.UNICAST, target=session)


def is_revocation(event: Event) -> bool:
    return event.name in REVOCATIONS and (event.route is Route.USER or event.route is Route.UNICAST)


def concerns(event: Event, session: Any) -> bool:
    """Whether the revocation ``event`` is addressed to ``session`` (its user, or its id)."""
    if event.route is Route.USER:
        return session.user is not None and event.target == session.user
    return event.target == session.id


def predates(made: str | None, event: Event, epoch: str) -> bool:
    """Whether something made at position ``made`` comes before the revocation ``event``.

    Unknown positions count as before: a revocation fails closed.  Of two
    histories (the Redis log was lost), the current one (``epoch``) is the newer.
    """
    at = parse_position(event.position)
    was = parse_position(made)
    if at is None or was is None:
        return True
    if was[0] == at[0]:
        return was[1] < at[1]
    return at[0] == epoch


class Remembered:
    """The revocations a dispatcher saw in the last ``keep`` seconds (at most ``limit``), by target."""

    def __init__(self, keep: float, limit: int = 10_000) -> None:
        self.keep = keep
        self.limit = limit
        self._seen: OrderedDict[str, tuple[float, Event]] = OrderedDict()
        self._by_target: dict[tuple[str, str], dict[str, Event]] = {}

    def add(self, event: Event, now: float) -> None:
        position = event.position
        if position is None or position in self._seen:
            return
        self._seen[position] = (now, event)
        self._by_target.setdefault(_target(event), {})[position] = event
        self.trim(now)

    def of(self, session: Any) -> list[Event]:
        """The remembered revocations addressed to ``session``, oldest first."""
        found = list(self._by_target.get(("s", session.id), {}).values())
        if session.user is not None:
            found += self._by_target.get(("u", session.user), {}).values()
        return sorted(found, key=lambda event: event.offset or 0)

    def trim(self, now: float) -> None:
        seen = self._seen
        while seen:
            position, (when, event) = next(iter(seen.items()))
            if when >= now - self.keep and len(seen) <= self.limit:
                break
            del seen[position]
            key = _target(event)
            mine = self._by_target.get(key)
            if mine is not None:
                mine.pop(position, None)
                if not mine:
                    del self._by_target[key]

    def __len__(self) -> int:
        return len(self._seen)


def _target(event: Event) -> tuple[str, str]:
    return ("u" if event.route is Route.USER else "s", event.target or "")
