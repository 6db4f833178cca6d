"""Events: flat maps of string fields, routed by subject, session or to all.

An :class:`Event` is shared by every session it is delivered to and never
changed after it is published, so a wire codec may cache its encoding on it
(``wire_cache``) and write the same bytes to every matching connection.
Per-copy fields (``p_seq``, ``p_sid``, ``p_label``) are not in ``fields``:
codecs add them at write time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pushpy import protocol as P
from pushpy.errors import UsageError


class Route(enum.Enum):
    """How an event finds its recipients."""

    #: Every session with a subscription matching the event's subject.
    MULTICAST = "multicast"
    #: Every session, whatever its subscriptions.
    BROADCAST = "broadcast"
    #: One session named by ``Event.target``, without a subject check.
    UNICAST = "unicast"
    #: Every session of the user named by ``Event.target`` (tabs, devices), without a subject check.
    USER = "user"


class Event:
    """One published event.

    :param fields: the event's fields, ``p_event`` included; copied.
    :param route: how it is routed.
    :param target: the session id of a unicast, the user id of a user event.
    :param offset: position in the history of its subject, set by the
        backplane when the event is stored; ``None`` for events not kept in
        history (unicast, broadcast, control events).
    :param epoch: the id of the history the offset belongs to.
    """

    __slots__ = ("epoch", "fields", "offset", "route", "target", "wire_cache")

    def __init__(
        self,
        fields: Mapping[str, str],
        *,
        route: Route = Route.MULTICAST,
        target: str | None = None,
        offset: int | None = None,
        epoch: str | None = None,
    ) -> None:
        self.fields = dict(fields)
        self.route = route
        self.target = target
        self.offset = offset
        self.epoch = epoch
        self.wire_cache: dict[str, object] = {}

    @property
    def subject(self) -> str | None:
        """The event's ``p_subject``, or ``None``."""
        return self.fields.get(P.P_SUBJECT)

    @property
    def name(self) -> str:
        """The event's ``p_event``."""
        return self.fields.get(P.P_EVENT, "")

    @property
    def position(self) -> str | None:
        """The resume token ``epoch:offset`` of this event, if it has one."""
        if self.offset is None or self.epoch is None:
            return None
        return f"{self.epoch}:{self.offset}"

    def stored(self, offset: int, epoch: str) -> Event:
        """A copy of this event placed in history at ``offset``."""
        return Event(self.fields, route=self.route, target=self.target,
                     offset=offset, epoch=epoch)

    def __repr__(self) -> str:
        return (f"Event({self.fields!r}, route={self.route.value}, "
                f"target={self.target!r}, offset={self.offset!r})")


def make_event(name: str, now: float, **fields: str) -> Event:
    """A new event named ``name`` stamped with ``p_time``, fields in order."""
    return Event({P.P_EVENT: name, P.P_TIME: str(int(now)), **fields})


def data_event(
    subject: str,
    fields: Mapping[str, object] | None,
    now: float,
    *,
    route: Route = Route.MULTICAST,
    target: str | None = None,
) -> Event:
    """A ``data`` event for server-side publishing.

    Values are converted with ``str``; ``p_event`` becomes ``data``,
    ``p_time`` is set unless given, and ``p_subject`` is ``subject``.
    """
    out = {P.P_EVENT: P.DATA, P.P_TIME: str(int(now))}
    for key, value in (fields or {}).items():
        if not isinstance(key, str):
            raise UsageError(f"field names must be str, not {key!r}")
        out[key] = value if isinstance(value, str) else str(value)
    out[P.P_EVENT] = P.DATA
    if subject:
        out[P.P_SUBJECT] = subject
    if route is Route.MULTICAST and not subject:
        raise UsageError("a multicast event needs a subject")
    if route is Route.UNICAST and not target:
        raise UsageError("a unicast event needs a target session id")
    if route is Route.USER and not target:
        raise UsageError("a user event needs a target user id")
    return Event(out, route=route, target=target)
