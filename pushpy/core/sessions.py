"""Sessions: lease, subscriptions, queue and the data channels attached.

How a session moves (all transitions happen in this module or in
:class:`pushpy.core.dispatcher.Dispatcher`, which owns the registry)::

    join ──> JOINED ──listen──> LISTENING ──leave/expiry/abort──> ENDED
                 └──────────────leave/expiry──────────────────────┘

Events reach a session only while it is LISTENING (spec 14.1.20); they wait
in its bounded queue until a data channel takes them.  A data channel is any
object with ``wake()`` (events are waiting) and ``end(reason)`` (the session is
over: write the closing event and finish).  Events go to the channel attached
last (spec 14.1.21: exactly one channel gets each event).
"""

from __future__ import annotations

import contextlib
import enum
from typing import Protocol

from pushpy import protocol as P
from pushpy.core.events import Event, make_event
from pushpy.core.queues import ByteBoundedQueue, EventQueue
from pushpy.core.subjects import Subscription


class SessionState(enum.Enum):
    #: Joined, not listening: events for it are dropped.
    JOINED = "joined"
    #: Listening: events are queued for its data channels.
    LISTENING = "listening"
    #: Over; its id is no longer valid.
    ENDED = "ended"


class EndReason(enum.Enum):
    """Why a session ended; every reason but ``LEAVE`` writes ``abort``."""

    LEAVE = "leave"
    EXPIRED = "expired"
    LIVENESS = "liveness"
    OVERFLOW = "overflow"
    DISCONNECT = "disconnect"
    SHUTDOWN = "shutdown"
    #: Ended by the application (``PushServer.disconnect``): its client should not reconnect.
    REVOKED = "revoked"

    @property
    def aborts(self) -> bool:
        """Whether open data channels get an ``abort`` (spec 14.2 fix 6)."""
        return self is not EndReason.LEAVE


class Channel(Protocol):
    """A data channel as the core sees it."""

    def wake(self) -> None:
        """Events are waiting in the session's queue."""

    def end(self, reason: EndReason) -> None:
        """The session ended: write the closing event and finish."""


#: Key in ``Session.data``: the reason the application gave when it ended the session.
END_TEXT = "pushpy.end_text"


def end_text(session: Session, reason: EndReason) -> str:
    """What a client is told about why ``session`` ended: the application's reason, else ``reason``'s name."""
    text = session.data.get(END_TEXT)
    return text if isinstance(text, str) and text else reason.value


#: An item in a session queue: the shared event and the subscription that
#: matched it (``None`` for broadcast, unicast and server notices).
Delivery = tuple[Event, Subscription | None]


class Session:
    """One client session."""

    __slots__ = (
        "address", "channels", "created", "data", "deadline", "floor", "format", "id",
        "last_active", "last_alive", "made", "mode", "position", "queue", "queued_deadline",
        "state", "subscriptions", "timeout", "user", "user_agent",
    )

    def __init__(self, session_id: str, *, format: str, user_agent: str, address: str,
                 now: float, timeout: float, queue_size: int, queue_bytes: int = 0) -> None:
        self.id = session_id
        self.format = format
        self.user_agent = user_agent
        self.address = address
        self.created = now
        self.timeout = timeout
        self.last_active = now
        self.last_alive = now
        self.mode = P.MODE_STREAM
        self.state = SessionState.JOINED
        self.subscriptions: dict[str, Subscription] = {}
        # queue.size slots of which one stays free, as in the original (spec 9.2).
        self.queue = (ByteBoundedQueue(queue_size - 1, queue_bytes) if queue_bytes
                      else EventQueue(queue_size - 1))
        self.channels: list[Channel] = []
        self.position: str | None = None
        #: Live events up to this log offset are queued already (read from the log by a
        #: resume that got ahead of this node's live delivery): skipped, then ``None``.
        self.floor: int | None = None
        self.user: str | None = None
        self.data: dict[str, object] = {}
        self.deadline: float | None = None
        self.queued_deadline: float | None = None
        #: The backplane position when the session was made (see :class:`~pushpy.core.subjects.Subscription`).
        self.made: str | None = None

    @property
    def listening(self) -> bool:
        return self.state is SessionState.LISTENING

    @property
    def expires_at(self) -> float:
        """When the lease runs out unless renewed."""
        return self.last_active + self.timeout

    def attach(self, channel: Channel) -> None:
        """Make ``channel`` the one that receives this session's events."""
        self.channels.append(channel)
        if self.queue:
            channel.wake()

    def detach(self, channel: Channel) -> None:
        """Forget ``channel`` (it finished or its client went away)."""
        with contextlib.suppress(ValueError):
            self.channels.remove(channel)

    def take(self, now: float) -> list[Delivery]:
        """Everything queued, oldest first, after a ``nack`` if any were dropped.

        Taking is a data-channel cycle: it renews the lease and liveness.
        """
        self.last_active = self.last_alive = now
        items = self.queue.drain()
        dropped = self.queue.dropped
        if dropped:
            self.queue.dropped = 0
            reason = P.QUEUE_OVERFLOW.format(count=dropped)
            if self.format == P.FORMAT_JSON:
                notice = make_event(P.GAP, now, p_reason=reason, dropped=str(dropped))
            else:
                notice = make_event(P.NACK, now, p_id=self.id, p_reason=reason)
            items.insert(0, (notice, None))
        return items

    def give_back(self, items: list[Delivery]) -> None:
        """Queue ``items`` again (taken, never written), before what was queued since."""
        if items:
            self.queue.refill(items + self.queue.drain())
            for channel in list(self.channels):
                channel.wake()

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state.value} {self.format}/{self.mode}>"
