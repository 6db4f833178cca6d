"""Presence: which users are on a subject, counted by their members (sessions).

A user is present on a subject while at least one of their members is: a
user with three tabs in a room leaves it when the last tab does.
:class:`Presence` is the in-process store behind
:meth:`pushpy.backplane.MemoryBackplane.presence_enter`; a clustered
backplane keeps the same state in shared storage.  Which subjects a session
is present on is decided by :func:`presence_subjects`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pushpy.core.subjects import Subscription, split_subjects

#: The prefix of the companion subject carrying a subject's join/leave events.
PRESENCE_PREFIX = "/presence"
#: The reserved subject every session with a user is present on: who is online.
ONLINE = "/online"


def presence_subject(subject: str) -> str:
    """The companion subject of ``subject``'s join/leave events (``/presence/chat/room1``)."""
    return PRESENCE_PREFIX + (subject if subject.startswith("/") else "/" + subject)


def presence_subjects(subscriptions: Iterable[Subscription]) -> set[str]:
    """The subjects a session with these subscriptions is present on.

    Every subject of every subscription (a comma list counts each part), but
    neither the companion subjects (listening to a room's presence is not
    being in it) nor the reserved :data:`ONLINE`.
    """
    out: set[str] = set()
    for subscription in subscriptions:
        for part in split_subjects(subscription.subject):
            if part != ONLINE and not part.startswith(PRESENCE_PREFIX + "/"):
                out.add(part)
    return out


class Presence:
    """Members of users on subjects: ``subject -> user -> {member, ...}``."""

    __slots__ = ("_subjects",)

    def __init__(self) -> None:
        self._subjects: dict[str, dict[str, set[str]]] = {}

    def enter(self, subject: str, user: str, member: str) -> bool:
        """Add ``member`` of ``user`` on ``subject``; true when the user was absent before."""
        users = self._subjects.setdefault(subject, {})
        members = users.get(user)
        if members is None:
            users[user] = {member}
            return True
        members.add(member)
        return False

    def leave(self, subject: str, user: str, member: str) -> bool:
        """Remove ``member``; true when ``user`` is now absent (and was present before)."""
        users = self._subjects.get(subject)
        members = users.get(user) if users is not None else None
        if members is None or member not in members:
            return False
        members.discard(member)
        if members:
            return False
        del users[user]
        if not users:
            del self._subjects[subject]
        return True

    def sync(self, members: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """Hold exactly ``members`` ((subject, user, member)); the (subject, user, ``join``/``leave``)
        changes of who is present."""
        before = {(subject, user) for subject, users in self._subjects.items() for user in users}
        self._subjects = {}
        for subject, user, member in members:
            self._subjects.setdefault(subject, {}).setdefault(user, set()).add(member)
        after = {(subject, user) for subject, users in self._subjects.items() for user in users}
        return ([(subject, user, "join") for subject, user in sorted(after - before)]
                + [(subject, user, "leave") for subject, user in sorted(before - after)])

    def members(self, subject: str) -> dict[str, int]:
        """The users present on ``subject`` and how many members each has there."""
        return {user: len(members) for user, members in self._subjects.get(subject, {}).items()}

    def __len__(self) -> int:
        """How many subjects have someone present."""
        return len(self._subjects)
