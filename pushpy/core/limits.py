"""Limits on what clients publish: fields and bytes per event, publish rate.

Each check raises :class:`~pushpy.errors.ClientError` with a reason naming the
configuration key to raise, so a refused client (and its developer) knows
what happened.  Time is passed in (``now``): no clock here.
"""

from __future__ import annotations

from collections.abc import Mapping

from pushpy.config import Config
from pushpy.core.events import Event
from pushpy.errors import ClientError


def fields_bytes(fields: Mapping[str, str]) -> int:
    """UTF-8 bytes of the names and values of ``fields``."""
    return sum(len(name.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
               for name, value in fields.items())


def event_bytes(event: Event) -> int:
    """:func:`fields_bytes` of ``event``, computed once and cached on it."""
    size = event.wire_cache.get("bytes")
    if size is None:
        size = event.wire_cache["bytes"] = fields_bytes(event.fields)
    return size  # type: ignore[return-value]


def check_event(fields: Mapping[str, str], config: Config) -> None:
    """Refuse an event a client publishes with too many fields or bytes."""
    if len(fields) > config.limit_fields:
        raise ClientError(f"too many fields in one event (at most {config.limit_fields},"
                          " limit.fields)")
    size = fields_bytes(fields)
    if size > config.limit_event_bytes:
        raise ClientError(f"event too large: {size} bytes (at most {config.limit_event_bytes},"
                          " limit.event.bytes)")


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    It starts full.  :meth:`take` spends one token if there is one.
    """

    __slots__ = ("burst", "level", "rate", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.level = float(self.burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token at ``now``; ``False`` when the bucket is empty."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.level = min(float(self.burst), self.level + elapsed * self.rate)
            self.updated = now
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


#: Key of a session's :class:`TokenBucket` in ``Session.data``.
BUCKET = "pushpy.publish_bucket"


def check_publish_rate(data: dict[str, object], config: Config, now: float) -> None:
    """Spend one publish of a session (its ``data`` dict holds the bucket) or refuse."""
    rate = config.limit_publish_rate
    if rate <= 0:
        return
    bucket = data.get(BUCKET)
    if bucket is None:
        bucket = data[BUCKET] = TokenBucket(rate, config.limit_publish_burst, now)
    if not bucket.take(now):  # type: ignore[attr-defined]
        raise ClientError(f"publish rate exceeded (at most {rate:g} a second,"
                          " limit.publish.rate)")
