"""Session and subscription id policies.

The default policy draws 128 bits from :mod:`secrets` (22 URL-safe
characters).  :class:`PushletIds` gives the original 10-letter shape (about
34 bits, guessable: only for installations that need it).  An application
that chooses ids itself (the original's overridden ``createSession``)
subclasses :class:`SecureIds` and overrides :meth:`SecureIds.session_id`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping

from zope.interface import implementer

from pushpy.interfaces import ISessionIdPolicy

CONSONANTS = "bcdfghjklmnpqrstvwz"
VOWELS = "aeiouy"
#: What an id may look like, whatever the policy: URL-safe, bounded.
VALID_ID = re.compile(r"[A-Za-z0-9_.~-]{1,128}\Z")


def pushlet_string(size: int) -> str:
    """Letters alternating consonant and vowel, consonant first (spec 9.1)."""
    return "".join(secrets.choice(VOWELS if i % 2 else CONSONANTS) for i in range(size))


@implementer(ISessionIdPolicy)
class SecureIds:
    """128-bit random session ids; 5-letter subscription ids."""

    def session_id(self, params: Mapping[str, str]) -> str:
        """A new session id (``params`` are the join request's, unused here)."""
        return secrets.token_urlsafe(16)

    def subscription_id(self) -> str:
        """A new subscription id in the original's 5-letter shape."""
        return pushlet_string(5)


class PushletIds(SecureIds):
    """The original ``randomstring`` ids of ``size`` letters (about 3.4 bits each)."""

    def __init__(self, size: int = 10) -> None:
        self.size = size

    def session_id(self, params: Mapping[str, str]) -> str:
        return pushlet_string(self.size)


class UuidIds(SecureIds):
    """Random UUIDs (122 random bits) as session ids."""

    def session_id(self, params: Mapping[str, str]) -> str:
        return str(uuid.uuid4())


def id_policy(generation: str, size: int = 10) -> ISessionIdPolicy:
    """The policy named by the ``session.id.generation`` key."""
    if generation == "randomstring":
        return PushletIds(size)
    if generation == "uuid":
        return UuidIds()
    return SecureIds()
