"""Per-subject event history with one offset sequence, for lossless resume.

Every multicast event stored here gets the next **offset** of one counter
shared by all subjects of this history, and the history has an **epoch**, a
random id fixed when it is created.  A client's resume position is therefore
one token, ``epoch:offset`` of the last event it saw, however many subjects or
prefixes it listens to (see ``docs/design.md``).  Offsets of one subject are
increasing but not contiguous.

Events routed to a session, a user or everyone (unicast, user, broadcast) are
kept too, each target in a log of its own keyed by :func:`route_key`, so a
session resuming from its position also gets what was addressed to it; a
resume names the targets it owns (:func:`owner_keys`).

Each subject (and target) keeps at most ``max_events`` events no older than ``max_age``
seconds.  Every subject remembers the highest offset it has dropped
(``trimmed``), so a resume can tell exactly whether it missed something on a
subject it matches; a subject forgotten entirely (idle past ``max_age`` or
pushed out by ``max_subjects``) raises one history-wide mark.  A resume that
cannot prove it lost nothing says so: ``recovered`` is false with a reason.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pushpy.core.events import Event, Route

#: The log key of a routed event: (route tag, target); a subject's key is the subject itself.
RouteKey = tuple[str, str]
_TAGS = {Route.UNICAST: "s", Route.USER: "u", Route.BROADCAST: "b"}


def route_key(event: Event) -> RouteKey | None:
    """The key of the target log of a routed event; ``None`` for a multicast one."""
    tag = _TAGS.get(event.route)
    if tag is None:
        return None
    return tag, "" if event.route is Route.BROADCAST else (event.target or "")


def owner_keys(session_id: str | None, user: str | None) -> frozenset[RouteKey]:
    """The targets a session owns: itself, its user (if any), everyone."""
    keys = {("b", "")}
    if session_id:
        keys.add(("s", session_id))
    if user:
        keys.add(("u", user))
    return frozenset(keys)


def wanted(event: Event, matches: Callable[[str], bool], owners: frozenset[RouteKey]) -> bool:
    """Whether a resume with ``matches`` (subjects) and ``owners`` (targets) gets ``event``."""
    key = route_key(event)
    return matches(event.subject or "") if key is None else key in owners


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a resume found: the missed events in order, and whether that is all.

    ``upto``: the log offset the read reached, when the log can be ahead of
    this node's live delivery (Redis): the resumed session must then skip live
    events up to it (:attr:`Session.floor <pushpy.core.sessions.Session.floor>`).
    """

    events: list[Event] = field(default_factory=list)
    recovered: bool = True
    reason: str | None = None
    upto: int | None = None


def live_floor(recovery: Recovery, position: str | None) -> int | None:
    """After ``recovery``, the offset up to which live events are repeats, or ``None``.

    ``position`` is this node's live position: when the log read reached
    further (Redis: the reply can overtake the pub/sub messages), the events
    between are in the recovery already and will arrive live too.
    """
    if recovery.upto is None or recovery.reason == "unknown epoch":
        return None
    parsed = parse_position(position)
    return recovery.upto if recovery.upto > (parsed[1] if parsed else 0) else None


def parse_position(token: str | None) -> tuple[str, int] | None:
    """Split ``epoch:offset``; ``None`` for a missing or malformed token."""
    if not token:
        return None
    epoch, sep, offset = token.rpartition(":")
    if not sep or not epoch or not (offset.isascii() and offset.isdigit()) or len(offset) > 18:
        return None
    return epoch, int(offset)


class _SubjectLog:
    __slots__ = ("entries", "trimmed")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, Event]] = deque()
        self.trimmed = 0


class History:
    """The bounded history of every subject of one backplane."""

    def __init__(self, epoch: str, *, max_events: int = 100, max_age: float = 600.0,
                 max_subjects: int = 100_000) -> None:
        self.epoch = epoch
        self.max_events = max_events
        self.max_age = max_age
        # At least one: the subject being appended to must not be forgotten.
        self.max_subjects = max(1, max_subjects)
        self.last_offset = 0
        self._forgotten = 0
        self._logs: OrderedDict[str | RouteKey, _SubjectLog] = OrderedDict()

    @property
    def position(self) -> str:
        """The token of the newest stored event (``epoch:0`` when empty)."""
        return f"{self.epoch}:{self.last_offset}"

    def append(self, event: Event, now: float) -> Event:
        """Store an event (in its subject's log, or its target's); return the copy carrying its offset."""
        subject: str | RouteKey = route_key(event) or event.subject or ""
        self.last_offset += 1
        stored = event.stored(self.last_offset, self.epoch)
        log = self._logs.get(subject)
        if log is None:
            log = self._logs[subject] = _SubjectLog()
            self._forget_excess()
        else:
            self._logs.move_to_end(subject)
        if self.max_events <= 0:
            log.trimmed = stored.offset
            return stored
        log.entries.append((now, stored))
        if len(log.entries) > self.max_events:
            log.trimmed = log.entries.popleft()[1].offset
        return stored

    def last(self, subject: str, count: int, now: float) -> list[Event]:
        """The newest ``count`` events of exactly ``subject``, oldest first."""
        log = self._logs.get(subject)
        if log is None or count <= 0:
            return []
        self._trim_log(subject, log, now)
        entries = list(log.entries)[-count:]
        return [event for _, event in entries]

    def since(self, token: str | None, matches: Callable[[str], bool],
              now: float, owners: frozenset[RouteKey] = frozenset()) -> Recovery:
        """Events after position ``token``: on subjects ``matches`` accepts, to targets in ``owners``."""
        position = parse_position(token)
        if position is None:
            return Recovery(recovered=False, reason="malformed position")
        epoch, offset = position
        if epoch != self.epoch:
            return Recovery(recovered=False, reason="unknown epoch")
        if offset > self.last_offset:
            return Recovery(recovered=False, reason="position ahead of history")
        self.trim(now)
        recovered, reason = True, None
        if offset < self._forgotten:
            recovered, reason = False, "history expired"
        runs = []
        for key, log in self._logs.items():
            if not (key in owners if isinstance(key, tuple) else matches(key)):
                continue
            if log.trimmed > offset:
                recovered, reason = False, "history trimmed"
            run = []
            for _, event in reversed(log.entries):
                if event.offset <= offset:
                    break
                run.append(event)
            if run:
                run.reverse()
                runs.append(run)
        events = list(heapq.merge(*runs, key=_offset)) if len(runs) > 1 else (
            runs[0] if runs else [])
        return Recovery(events=events, recovered=recovered, reason=reason)

    def trim(self, now: float) -> None:
        """Drop events older than ``max_age`` and forget empty idle subjects."""
        for subject, log in list(self._logs.items()):
            self._trim_log(subject, log, now)

    def __len__(self) -> int:
        return sum(len(log.entries) for log in self._logs.values())

    def subject_count(self) -> int:
        """How many subjects (and targets of routed events) have a history."""
        return len(self._logs)

    def _trim_log(self, subject: str | RouteKey, log: _SubjectLog, now: float) -> None:
        horizon = now - self.max_age
        entries = log.entries
        while entries and entries[0][0] < horizon:
            log.trimmed = entries.popleft()[1].offset
        if not entries:
            self._forget(subject, log)

    def _forget_excess(self) -> None:
        while len(self._logs) > self.max_subjects:
            subject, log = next(iter(self._logs.items()))
            if log.entries:
                log.trimmed = log.entries[-1][1].offset
            self._forget(subject, log)

    def _forget(self, subject: str | RouteKey, log: _SubjectLog) -> None:
        self._forgotten = max(self._forgotten, log.trimmed)
        del self._logs[subject]


def _offset(event: Event) -> int:
    return event.offset or 0
