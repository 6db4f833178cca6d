"""Subjects, subscriptions and the subject index.

Pushlet matching is a plain string prefix: a subscription to ``/stocks``
matches ``/stocks/aex`` and also ``/stocksXYZ`` (spec 8.1).  A comma list
``/a,/b`` is one subscription with one sid that matches either prefix.

:class:`SubjectIndex` finds the subscriptions matching a subject without
scanning sessions: it keeps a dict from prefix to subscriptions and the set of
prefix lengths in use, so a lookup costs one dict probe per distinct length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def split_subjects(subject: str) -> tuple[str, ...]:
    """The non-empty parts of a comma-separated subject list, in order."""
    return tuple(part for part in subject.split(",") if part)


class Subscription:
    """One subscription of one session: a sid, a prefix list and a label.

    ``made`` is the backplane position when it was made (``epoch:offset``, or
    ``None`` when unknown): a server-side revocation removes only what was
    made before it (:mod:`pushpy.core.revocation`).
    """

    __slots__ = ("label", "made", "prefixes", "sid", "subject", "wire_cache")

    def __init__(self, sid: str, subject: str, label: str | None = None,
                 made: str | None = None) -> None:
        self.sid = sid
        self.subject = subject
        self.prefixes = split_subjects(subject)
        self.label = label or None
        self.made = made
        #: Encodings of ``p_sid``/``p_label`` per wire format.
        self.wire_cache: dict[str, bytes] = {}

    def matches(self, subject: str | None) -> bool:
        """Whether an event on ``subject`` matches (no subject never does)."""
        return bool(subject) and subject.startswith(self.prefixes)

    def __repr__(self) -> str:
        return f"Subscription(sid={self.sid!r}, subject={self.subject!r}, label={self.label!r})"


class SubjectIndex:
    """Subscriptions of every session, indexed by prefix."""

    __slots__ = ("_by_prefix", "_lengths", "_sorted_lengths")

    def __init__(self) -> None:
        self._by_prefix: dict[str, dict[Subscription, Any]] = {}
        self._lengths: dict[int, int] = {}
        self._sorted_lengths: tuple[int, ...] = ()

    def add(self, owner: Any, subscription: Subscription) -> None:
        """Index ``subscription``, held by ``owner`` (a session)."""
        for prefix in set(subscription.prefixes):
            holders = self._by_prefix.get(prefix)
            if holders is None:
                holders = self._by_prefix[prefix] = {}
                self._count_length(len(prefix), +1)
            holders[subscription] = owner

    def remove(self, subscription: Subscription) -> None:
        """Forget ``subscription``; unknown ones are ignored."""
        for prefix in set(subscription.prefixes):
            holders = self._by_prefix.get(prefix)
            if holders is None or holders.pop(subscription, None) is None:
                continue
            if not holders:
                del self._by_prefix[prefix]
                self._count_length(len(prefix), -1)

    def match(self, subject: str | None) -> dict[Any, Subscription]:
        """Each owner with a subscription matching ``subject``, once.

        When several subscriptions of one owner match, the one with the
        longest (most specific) matching prefix wins.
        """
        found: dict[Any, Subscription] = {}
        if not subject:
            return found
        by_prefix = self._by_prefix
        size = len(subject)
        for length in self._sorted_lengths:
            if length > size:
                continue
            holders = by_prefix.get(subject[:length])
            if holders:
                for subscription, owner in holders.items():
                    if owner not in found:
                        found[owner] = subscription
        return found

    def subjects(self) -> Iterator[str]:
        """Every prefix some subscription uses."""
        return iter(self._by_prefix)

    def __len__(self) -> int:
        return len(self._by_prefix)

    def _count_length(self, length: int, delta: int) -> None:
        count = self._lengths.get(length, 0) + delta
        if count:
            self._lengths[length] = count
        else:
            del self._lengths[length]
        self._sorted_lengths = tuple(sorted(self._lengths, reverse=True))
