"""The examples' Python parts on an injected clock: the feeds' sources and the notifications' inbox."""

from __future__ import annotations

import random
import sys

from example_support import EXAMPLES
from twisted.internet.task import Clock

from pushpy import PushServer

sys.path[:0] = [str(EXAMPLES / "feeds"), str(EXAMPLES / "notifications")]

import feeds  # noqa: E402
import inbox  # noqa: E402


def test_no_stock_subject_is_the_prefix_of_another():
    """A page subscribed to one stock's subject gets that stock only (subscriptions are prefixes)."""
    subjects = [source.subject for source in feeds.stock_sources()]
    assert len(set(subjects)) == len(subjects) == sum(len(s) for s in feeds.MARKETS.values())
    assert not [(a, b) for a in subjects for b in subjects if a != b and b.startswith(a)]


def test_stock_sources_publish_prices_on_their_subject_at_speed():
    """Each stock source publishes its price walk on /stocks/<market>/<symbol>, ``speed`` times as often."""
    clock = Clock()
    server = PushServer(reactor=clock)
    seen = []
    server.backplane.attach(seen.append)
    source = feeds.StockSource("aex", "kpn", "KPN", 3.42, speed=4, rng=random.Random(7))
    source.activate(server)
    clock.advance(2.5 / 4)  # the longest interval at speed 4
    assert [e.subject for e in seen] == ["/stocks/aex/kpn"]
    fields = seen[0].fields
    assert (fields["market"], fields["symbol"], fields["name"]) == ("aex", "kpn", "KPN")
    price = float(fields["price"])
    assert price > 0 and abs(float(fields["change"]) - (price - 3.42)) <= 0.011
    source.stop()
    assert clock.getDelayedCalls() == []


def test_system_sources_report_figures():
    """/system/host reports CPU, load and memory; /system/server the server's sessions and counts."""
    clock = Clock()
    server = PushServer(reactor=clock)
    host, own = feeds.HostSource(), feeds.ServerSource()
    own.activate(server)
    fields = host.produce(0.0)
    assert 0 <= float(fields.get("cpu", "0")) <= 100 and int(fields["cpus"]) >= 1
    assert set(own.produce(0.0)) == {"sessions", "published", "delivered", "uptime"}
    own.stop()


def test_inbox_keeps_user_notifications_only_and_marks_read():
    """The inbox keeps user events on /notifications (whoever sent them), bounded per user; marking
    read counts and tells the user's sessions the new count."""
    clock = Clock()
    server = PushServer(reactor=clock)
    box = inbox.Inbox(server, keep=3)
    told = []
    server.backplane.attach(lambda e: told.append(e) if e.subject == inbox.READ_SUBJECT else None)
    server.publish("/notifications", {"title": "multicast, not for a user"})
    server.send_to_user("ann", "/elsewhere", {"title": "not a notification"})
    for n in range(4):
        box.notify("ann", f"t{n}", "body", sender="bob")
    server.send_to_user("cid", "/notifications", {"body": "no title"})
    listing = box.listing("ann")
    assert [item["title"] for item in listing["items"]] == ["t3", "t2", "t1"]
    assert listing["unread"] == 3 and listing["items"][0]["sender"] == "bob"
    assert box.listing("cid")["items"][0]["title"] == "no title"
    assert box.mark_read("ann", [listing["items"][1]["id"], "nosuch"]) == 1
    assert [(e.target, e.fields["unread"]) for e in told] == [("ann", "2")]
    assert box.mark_read("ann") == 2 and box.unread("ann") == 0
    assert box.mark_read("ann") == 0 and len(told) == 2
    assert box.listing("nobody") == {"unread": 0, "items": []}
