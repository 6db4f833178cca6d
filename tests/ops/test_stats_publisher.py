"""The stats publisher of dashboard.html: published for listeners only, with rates and busy subjects."""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from pushpy.config import Config
from pushpy.server import PushServer


def started(**config: object) -> tuple[Clock, PushServer]:
    clock = Clock()
    server = PushServer(Config(**{"stats_interval_secs": 2.0, **config}), reactor=clock)
    server.startService()
    return clock, server


def listener(server: PushServer, subject: str):
    session = server.dispatcher.join(server.clock.seconds(), format="json")
    server.dispatcher.subscribe(session, subject)
    server.dispatcher.listen(session, "stream", server.clock.seconds())
    return session


def stats_events(server: PushServer, session) -> list[dict]:
    return [json.loads(event.fields["stats"]) for event, _ in session.take(server.clock.seconds())
            if event.subject == "/pushpy/stats"]


def test_nothing_is_published_without_a_listener_of_the_stats_subject():
    """With nobody on /pushpy/stats, not even a catch-all / subscriber, no stats event is published."""
    clock, server = started()
    everything = listener(server, "/")
    clock.pump([2.0] * 5)
    assert stats_events(server, everything) == []
    assert server.metrics.published == 0
    assert not server.stats_publisher.counting
    server.stopService()


def test_listeners_get_stats_every_interval_with_rates_and_busiest_subjects():
    """A subscriber of /pushpy/stats gets one event per interval: the snapshot, the event rates since the
    previous tick and the subjects that were busiest meanwhile."""
    clock, server = started()
    dashboard = listener(server, "/pushpy/stats")
    clock.advance(2.0)  # first tick: published, and counting per subject starts
    assert server.stats_publisher.counting
    [first] = stats_events(server, dashboard)
    assert first["sessions"]["total"] == 1 and first["interval"] == 2.0
    for n in range(6):
        server.publish("/busy", {"n": str(n)})
    server.publish("/quiet", {"n": "x"})
    clock.advance(2.0)
    [second] = stats_events(server, dashboard)
    assert second["busiest"][:2] == [{"subject": "/busy", "events": 6, "rate": 3.0},
                                     {"subject": "/quiet", "events": 1, "rate": 0.5}]
    assert second["rates"]["published"] == 4.0  # 7 events and the first stats event, in 2 s
    assert second["time"] == 4.0 and second["dashboard"] == {"subject": "/pushpy/stats", "interval": 2.0}
    server.dispatcher.unsubscribe(dashboard)
    clock.advance(2.0)
    assert not server.stats_publisher.counting  # nobody listens: the per-event counting stops
    server.stopService()
    clock.advance(0)  # the turn stopService waits for the closing bytes
    assert not clock.getDelayedCalls()


def test_interval_zero_turns_it_off():
    """stats.interval.secs=0 runs no timer and publishes nothing."""
    clock, server = started(stats_interval_secs=0)
    listener(server, "/pushpy/stats")
    assert all("StatsPublisher" not in repr(call) for call in clock.getDelayedCalls())
    clock.pump([2.0] * 3)
    assert server.metrics.published == 0
    server.stopService()
