# test-case-name: tests.ops.test_stats_publisher
"""The server's stats published through pushpy itself, for ``dashboard.html``.

:class:`StatsPublisher` publishes one event every ``stats.interval.secs`` on
``stats.subject`` (``/pushpy/stats``): its field ``stats`` is a JSON text
with the numbers of :func:`pushpy.metrics.snapshot`, the event rates over the
last interval and the busiest subjects.  The events are kept in history like
any other, so a dashboard that opens resumes from the oldest one and draws
what history holds at once.

Nothing is published while nobody is subscribed to the stats subject itself
(a catch-all ``/`` subscription does not count), and counting events per
subject, which costs a call per published event, happens only meanwhile.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pushpy.core.events import Event, Route
from pushpy.metrics import snapshot

if TYPE_CHECKING:
    from pushpy.server import PushServer

#: Subjects listed as the busiest, at most.
BUSIEST = 10
#: Recent errors sent with each stats event, at most.
ERRORS = 10


class StatsPublisher:
    """Publishes a server's stats on a subject every interval, while the server runs."""

    log = Logger()

    def __init__(self, server: PushServer, *, subject: str | None = None,
                 interval: float | None = None) -> None:
        self.server = server
        self.subject = subject or server.config.stats_subject
        self.interval = server.config.stats_interval_secs if interval is None else interval
        self._loop: LoopingCall | None = None
        self._counts: dict[str, int] | None = None
        self._last: dict[str, Any] | None = None

    @property
    def counting(self) -> bool:
        """Whether events are being counted per subject (someone listens)."""
        return self._counts is not None

    def start(self) -> None:
        if self.interval <= 0 or self._loop is not None:
            return
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.server.clock
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._count_subjects(False)

    def tick(self) -> None:
        """Publish the stats if someone listens; count subjects only while someone does."""
        now = self.server.clock.seconds()
        events = self._events()
        listened = self.listened()
        if listened:
            try:
                stats = self.stats(now, events)
                self.server.publish(self.subject, {"stats": json.dumps(stats, separators=(",", ":"))})
            except Exception:
                self.log.failure("publishing the stats on {subject} failed", subject=self.subject)
        self._last = {"time": now, "events": events}
        self._count_subjects(listened)

    def stats(self, now: float, events: dict[str, int]) -> dict[str, Any]:
        """The stats of this tick: the snapshot, rates since the last tick, busiest subjects."""
        snap = snapshot(self.server, now)
        last = self._last
        elapsed = now - last["time"] if last is not None else 0.0
        snap["rates"] = {name: max(0, count - last["events"][name]) / elapsed if elapsed > 0 else 0.0
                         for name, count in events.items()} if last is not None else \
            dict.fromkeys(events, 0.0)
        counts = self._counts or {}
        busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:BUSIEST]
        if self._counts is not None:
            self._counts = {}
        snap["busiest"] = [{"subject": subject, "events": count,
                            "rate": count / elapsed if elapsed > 0 else 0.0}
                           for subject, count in busiest]
        snap["errors"]["recent"] = snap["errors"]["recent"][-ERRORS:]
        snap["interval"] = self.interval
        return snap

    def _events(self) -> dict[str, int]:
        stats = self.server.dispatcher.stats
        return {"published": self.server.metrics.published, "received": stats.received,
                "delivered": stats.delivered, "dropped": stats.dropped}

    def listened(self) -> bool:
        """Whether a session subscribed to the stats subject itself (``/`` alone does not count)."""
        subject = self.subject
        for subscription in self.server.dispatcher.index.match(subject).values():
            if any(len(p) > 1 and subject.startswith(p) for p in subscription.prefixes):
                return True
        return False

    def _count_subjects(self, wanted: bool) -> None:
        if wanted and self._counts is None:
            self._counts = {}
            self.server.backplane.attach(self._count)
        elif not wanted and self._counts is not None:
            self._counts = None
            self.server.backplane.detach(self._count)

    def _count(self, event: Event) -> None:
        counts = self._counts
        if counts is not None and event.route is Route.MULTICAST:
            subject = event.subject or ""
            counts[subject] = counts.get(subject, 0) + 1
