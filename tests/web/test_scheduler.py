"""The shared timer and write coalescing of :mod:`pushpy.web.scheduler`, alone and under many streams."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from webfakes import make_server, parse_events, stream

from pushpy.web.scheduler import Scheduler


class Item:
    """A channel stand-in that records when it fires and flushes."""

    def __init__(self, name: str, log: list, then: list | None = None) -> None:
        self.name = name
        self.log = log
        self.then = then or []
        self.deadline: float | None = None
        self.queued_deadline: float | None = None

    def fire(self, now: float) -> None:
        self.log.append((self.name, now))

    def flush(self) -> None:
        self.log.append(self.name)
        for action in self.then:
            action()


def test_many_deadlines_share_one_delayed_call():
    """Deadlines of many items are served by one reactor delayed call, each fired at its own time."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    items = [Item(str(n), log) for n in range(50)]
    for n, item in enumerate(items):
        scheduler.set(item, 10.0 + n)
        assert len(clock.getDelayedCalls()) == 1
    clock.pump([1] * 70)
    assert log == [(str(n), 10.0 + n) for n in range(50)]
    assert clock.getDelayedCalls() == []


def test_cancelled_deadlines_do_not_fire():
    """A deadline set to ``None`` never fires, and cancelling the last one cancels the reactor call."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    first, second = Item("first", log), Item("second", log)
    scheduler.set(first, 5)
    scheduler.set(second, 10)
    scheduler.set(first, None)
    clock.advance(5)
    assert log == []
    scheduler.set(second, None)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert log == []


def test_deadline_moved_later_fires_once_at_new_time():
    """Moving a deadline later fires it once, at the later time, with still one delayed call."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    item = Item("a", log)
    scheduler.set(item, 5)
    scheduler.set(item, 8)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(5)
    assert log == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(3)
    assert log == [("a", 8)]
    clock.advance(10)
    assert log == [("a", 8)]


def test_deadline_moved_earlier_fires_early_only():
    """Moving a deadline earlier re-arms the timer and the old time does not fire again."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    item = Item("a", log)
    scheduler.set(item, 10)
    scheduler.set(item, 3)
    clock.advance(3)
    assert log == [("a", 3)]
    clock.advance(10)
    assert log == [("a", 3)]
    assert clock.getDelayedCalls() == []


def test_soon_flushes_once_per_turn_in_request_order():
    """Items asking for a flush are flushed once each, after the turn, in the order they first asked."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    a, b, c = Item("a", log), Item("b", log), Item("c", log)
    for item in (a, b, a, c, b):
        scheduler.soon(item)
    assert log == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert log == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []


def test_flush_waits_for_the_poll_after_the_turn():
    """The turn after the one that asked only schedules the flush, so the reactor polls (and answers the
    publishers) in between: a real reactor runs a call scheduled by a delayed call in its next iteration."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    scheduler.soon(Item("a", log))
    (turn,) = clock.getDelayedCalls()
    clock.calls.remove(turn)
    turn.func(*turn.args, **turn.kw)  # the reactor's runUntilCurrent after the turn
    assert log == []
    scheduler.soon(Item("b", log))  # woken by the poll in between: same flush
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert log == ["a", "b"]
    assert clock.getDelayedCalls() == []


def test_flush_requested_during_flush_runs_in_same_pass():
    """An item woken while another flushes is flushed in the same pass, after it."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    late = Item("late", log)
    early = Item("early", log, then=[lambda: scheduler.soon(late)])
    scheduler.soon(early)
    clock.advance(0)
    assert log == ["early", "late"]
    assert clock.getDelayedCalls() == []


def test_failing_flush_is_logged_and_others_still_flush():
    """A flush that raises is logged as a failure and does not keep the other items from flushing."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []

    def boom() -> None:
        raise RuntimeError("broken channel")

    scheduler.soon(Item("bad", log, then=[boom]))
    scheduler.soon(Item("good", log))
    with capturedLogs() as events:
        clock.advance(0)
    assert log == ["bad", "good"]
    failures = [e["log_failure"] for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0].check(RuntimeError)


def test_stop_cancels_reactor_calls():
    """``stop`` cancels the shared timer and the pending flush call."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    scheduler.set(Item("a", log), 5)
    scheduler.soon(Item("b", log))
    scheduler.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert log == []


def test_hundred_open_streams_keep_one_delayed_call():
    """100 open streams with staggered heartbeats keep a single reactor delayed call between them."""
    server, reactor = make_server()
    clients = []
    for _ in range(100):
        clients.append(stream(server))
        assert len(reactor.getDelayedCalls()) == 1
        reactor.advance(0.1)
    for _ in range(450):  # to t = 55 s in steps of 0.1 s
        reactor.advance(0.1)
        assert len(reactor.getDelayedCalls()) == 1
    for n, client in enumerate(clients):
        times = [e["p_time"] for e in client.events() if e["p_event"] == "hb"]
        assert len(times) == 3, n  # the first, then one each read timeout: +20 s, +40 s
    for client in clients:
        client.disconnect()
    assert reactor.getDelayedCalls() == []


def test_ten_events_in_one_turn_reach_stream_in_one_write():
    """Ten events published in one reactor turn reach a stream in one transport write, in publish order."""
    server, reactor = make_server()
    client = stream(server)
    writes = len(client.writes)
    for n in range(10):
        server.publish("/news/a", n=str(n))
    assert len(client.writes) == writes
    reactor.advance(0)
    assert len(client.writes) == writes + 1
    events = parse_events(client.writes[-1])
    assert [e["n"] for e in events] == [str(n) for n in range(10)]
    assert [e["p_seq"] for e in events] == [str(n) for n in range(2, 12)]


def test_one_flush_call_serves_every_woken_stream():
    """Events for many streams in one turn need one reactor call; each stream gets one write."""
    server, reactor = make_server()
    clients = [stream(server, subject=f"/s{n}") for n in range(5)]
    before = [len(c.writes) for c in clients]
    timers = len(reactor.getDelayedCalls())
    for round_ in range(3):
        for n in range(5):
            server.publish(f"/s{n}/x", r=str(round_))
    assert len(reactor.getDelayedCalls()) == timers + 1
    reactor.advance(0)
    assert [len(c.writes) for c in clients] == [b + 1 for b in before]
    for client in clients:
        assert [e["r"] for e in parse_events(client.writes[-1])] == ["0", "1", "2"]


def test_deadlines_close_together_share_one_timer_call():
    """Deadlines within ``SLACK`` of the first due one fire in its timer call, each given the call's time."""
    clock = Clock()
    scheduler = Scheduler(clock)
    log: list = []
    close = [Item(f"c{n}", log) for n in range(5)]
    for n, item in enumerate(close):
        scheduler.set(item, 10.0 + n * Scheduler.SLACK / 5)
    later = Item("later", log)
    scheduler.set(later, 10.0 + 2 * Scheduler.SLACK)
    clock.advance(10.0)
    assert log == [(item.name, 10.0) for item in close]
    clock.advance(2 * Scheduler.SLACK)
    assert log[-1] == ("later", 10.0 + 2 * Scheduler.SLACK)
    assert clock.getDelayedCalls() == []
