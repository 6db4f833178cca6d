"""Event sources: scheduling on the server clock, the sample feeds, sources.properties."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from pushpy import PushServer, UsageError
from pushpy.config import Config
from pushpy.interfaces import IEventSource
from pushpy.sources import PullSource, load_sources, samples
from pushpy.sources.loader import JAVA_CLASSES

ORIGINAL_SOURCES_PROPERTIES = """\
#
# Properties file for EventSource objects to be instantiated.
#
# Place this file in the CLASSPATH (e.g. WEB-INF/classes) or directly under WEB-INF.
#
# Each EventSource is defined as <key>=<classname>
# 1. <key> should be unique within this file but may be any name
# 2. <classname> is the full class name
#
source1=nl.justobjects.pushlet.test.TestEventPullSources$TemperatureEventPullSource
source2=nl.justobjects.pushlet.test.TestEventPullSources$SystemStatusEventPullSource
source3=nl.justobjects.pushlet.test.TestEventPullSources$PushletStatusEventPullSource
source4=nl.justobjects.pushlet.test.TestEventPullSources$AEXStocksEventPullSource
source5=nl.justobjects.pushlet.test.TestEventPullSources$WebPresentationEventPullSource
source6=nl.justobjects.pushlet.test.TestEventPullSources$PingEventPullSource
# source7=nl.justobjects.pushlet.test.TestEventPushSources$AEXStocksEventPushSource
"""


class Counter(PullSource):
    """Publishes ``n`` = 0, 1, 2... every 1.5 s on ``/counter``."""

    subject = "/counter"

    def __init__(self) -> None:
        super().__init__(rng=random.Random(1))
        self.n = 0

    def interval(self, rng: random.Random) -> float:
        return 1.5

    def produce(self, now: float) -> Mapping[str, object] | None:
        self.n += 1
        return {"n": self.n - 1}


def make_server(**config: object) -> tuple[Clock, PushServer]:
    clock = Clock()
    return clock, PushServer(Config(**config) if config else None, reactor=clock)


def listener(server: PushServer, subject: str = "/"):
    """A listening session subscribed to ``subject``, as a data channel would leave it."""
    now = server.clock.seconds()
    session = server.dispatcher.join(now)
    server.dispatcher.subscribe(session, subject)
    server.dispatcher.listen(session, "stream", now)
    return session


def received(server: PushServer, session) -> list[dict[str, str]]:
    """The fields of every event queued for ``session`` since the last call."""
    return [dict(event.fields) for event, _ in session.take(server.clock.seconds())]


def times_of_events(clock: Clock, server: PushServer, session, until: float) -> list[float]:
    """Advance ``clock`` to ``until`` call by call; the times at which events arrived."""
    times = []
    while clock.getDelayedCalls():
        due = min(call.getTime() for call in clock.getDelayedCalls())
        if due > until:
            break
        clock.advance(due - clock.seconds())
        if received(server, session):
            times.append(clock.seconds())
    return times


# -- PullSource -----------------------------------------------------------


def test_pull_source_publishes_once_per_interval_starting_one_interval_after_activation():
    """The first event comes one interval after activate, then one per interval."""
    clock, server = make_server()
    session = listener(server)
    source = Counter()
    source.activate(server)
    assert received(server, session) == []
    assert times_of_events(clock, server, session, until=6.0) == [1.5, 3.0, 4.5, 6.0]


def test_pull_source_publishes_produced_fields_as_data_event_on_its_subject():
    """The fields of produce() reach subscribers as a data event on the source's subject."""
    clock, server = make_server()
    session = listener(server, "/counter")
    source = Counter()
    source.activate(server)
    clock.advance(1.5)
    clock.advance(1.5)
    assert received(server, session) == [
        {"p_event": "data", "p_time": "1", "n": "0", "p_subject": "/counter"},
        {"p_event": "data", "p_time": "3", "n": "1", "p_subject": "/counter"},
    ]


def test_pull_source_keeps_one_pending_call_when_activated_twice():
    """A second activate while active changes nothing: one pending call."""
    clock, server = make_server()
    source = Counter()
    source.activate(server)
    source.activate(server)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1.5)
    assert source.n == 1
    assert len(clock.getDelayedCalls()) == 1


def test_passivate_cancels_the_pending_call_and_activate_resumes():
    """Passivate leaves no delayed call and produces nothing; activate starts a fresh interval."""
    clock, server = make_server()
    session = listener(server)
    source = Counter()
    source.activate(server)
    clock.advance(1.0)
    source.passivate()
    assert clock.getDelayedCalls() == []
    assert not source.active
    clock.advance(10)
    assert received(server, session) == []
    source.activate(server)
    clock.advance(1.4)
    assert received(server, session) == []
    clock.advance(0.1)
    assert [fields["n"] for fields in received(server, session)] == ["0"]


def test_stop_cancels_the_pending_call_and_forgets_the_server():
    """Stop leaves no delayed call, drops the server, and nothing is published after it."""
    clock, server = make_server()
    session = listener(server)
    source = Counter()
    source.activate(server)
    source.stop()
    assert clock.getDelayedCalls() == []
    assert source.server is None
    clock.advance(10)
    assert received(server, session) == []


def test_produce_returning_none_publishes_nothing_and_keeps_the_schedule():
    """None from produce() skips that tick only."""
    clock, server = make_server()
    session = listener(server)
    source = Counter()
    source.produce = lambda now: None if clock.seconds() < 2 else {"n": "late"}
    source.activate(server)
    clock.advance(1.5)
    assert received(server, session) == []
    clock.advance(1.5)
    assert [fields["n"] for fields in received(server, session)] == ["late"]


def test_failing_produce_is_logged_and_the_source_keeps_running():
    """An exception in produce() is logged as a failure and the next tick still publishes."""
    clock, server = make_server()
    session = listener(server)
    source = Counter()
    calls = []

    def produce(now: float) -> Mapping[str, object]:
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("feed down")
        return {"n": len(calls)}

    source.produce = produce
    source.activate(server)
    with capturedLogs() as events:
        clock.advance(1.5)
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["subject"] == "/counter"
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1.5)
    assert [fields["n"] for fields in received(server, session)] == ["2"]


def test_fields_that_cannot_be_published_are_logged_and_the_source_keeps_running():
    """A field name no format can carry fails in publish; that is logged and the schedule kept."""
    clock, server = make_server()
    source = Counter()
    source.produce = lambda now: {"bad name": "x"}
    source.activate(server)
    with capturedLogs() as events:
        clock.advance(1.5)
    assert [e["log_failure"].check(UsageError) for e in events if "log_failure" in e] == [UsageError]
    assert len(clock.getDelayedCalls()) == 1


def test_server_activates_sources_at_start_and_stops_them_at_shutdown():
    """PushServer runs its sources as a service: events flow after start, no timer is left after stop."""
    clock, server = make_server()
    source = Counter()
    server.sources.append(source)
    server.startService()
    session = listener(server)
    clock.advance(1.5)
    assert [fields["n"] for fields in received(server, session)] == ["0"]
    server.stopService()
    _settle(server)
    assert not source.active
    assert clock.getDelayedCalls() == []


def test_server_leaves_sources_idle_when_sources_activate_is_false():
    """With sources.activate=false the server starts no source."""
    clock, server = make_server(sources_activate=False)
    source = Counter()
    server.sources.append(source)
    server.startService()
    assert not source.active
    server.stopService()
    _settle(server)
    assert clock.getDelayedCalls() == []


# -- the samples ----------------------------------------------------------

SAMPLES = [
    # class, subject, shortest and longest interval, field names
    (samples.TemperatureSource, "/temperature", 3.0, 5.0, {"number", "city", "value"}),
    (samples.PingSource, "/pushlet/ping", 3.0, 3.0, set()),
    (samples.SystemStatusSource, "/system/jvm", 4.0, 4.0,
     {"totalMemory", "freeMemory", "maxMemory", "threads"}),
    (samples.PushletStatusSource, "/system/pushlet", 5.0, 5.0, {"publisher"}),
    (samples.AEXStocksSource, "/stocks/aex", 2.0, 4.0, {"number", "name", "rate"}),
    (samples.WebPresentationSource, "/webpres/auto", 5.0, 5.0, {"url"}),
    (samples.TestSource, "/system/test", 2.0, 2.0, {"nr", "time"}),
]


def run_sample(source: PullSource, count: int) -> tuple[list[float], list[dict[str, str]]]:
    """Activate ``source`` on a fresh server; the intervals and fields of its first ``count`` events."""
    clock, server = make_server()
    session = listener(server)
    source.activate(server)
    intervals, events = [], []
    for _ in range(count):
        (call,) = clock.getDelayedCalls()
        intervals.append(call.getTime() - clock.seconds())
        clock.advance(intervals[-1])
        events.extend(received(server, session))
    source.stop()
    assert clock.getDelayedCalls() == []
    return intervals, events


@pytest.mark.parametrize(("cls", "subject", "shortest", "longest", "names"), SAMPLES,
                         ids=[row[0].__name__ for row in SAMPLES])
def test_sample_publishes_its_fields_on_its_subject_at_its_interval(cls, subject, shortest, longest, names):
    """Each sample source publishes exactly its spec 11.2 fields on its subject at its interval."""
    intervals, events = run_sample(cls(rng=random.Random(7)), 60)
    assert len(events) == 60
    assert all(shortest <= i <= longest for i in intervals)
    if shortest != longest:
        assert len(set(intervals)) > 1
    for fields in events:
        assert fields.pop("p_event") == "data"
        assert fields.pop("p_subject") == subject
        assert fields.pop("p_time")
        assert set(fields) == names


def test_sample_sources_provide_ievent_source():
    """Every sample source provides IEventSource."""
    for cls, *_ in SAMPLES:
        assert verifyObject(IEventSource, cls())


def test_temperature_value_is_a_fixed_base_of_5_to_10_plus_minus_2_per_city():
    """Each city's values stay within 2 of one base of 5 to 10 picked the first time the city comes up."""
    _, events = run_sample(samples.TemperatureSource(rng=random.Random(3)), 300)
    values: dict[str, set[int]] = {}
    for fields in events:
        assert fields["city"] == samples.CITIES[int(fields["number"])]
        values.setdefault(fields["city"], set()).add(int(fields["value"]))
    assert set(values) == set(samples.CITIES)
    for seen in values.values():
        assert any(seen <= set(range(base - 2, base + 3)) for base in range(5, 11))
        assert len(seen) == 5


def test_aex_rate_is_base_plus_minus_2_then_dot_and_unpadded_0_to_99():
    """AEX events name one of the 24 stocks by number; the rate is base±2, '.', 0-99 unpadded."""
    _, events = run_sample(samples.AEXStocksSource(rng=random.Random(5)), 400)
    assert len(samples.AEX_STOCKS) == 24
    fractions = set()
    for fields in events:
        name, base = samples.AEX_STOCKS[int(fields["number"])]
        assert fields["name"] == name
        units, fraction = fields["rate"].split(".")
        assert base - 2 <= int(units) <= base + 2
        assert re.fullmatch(r"0|[1-9][0-9]?", fraction)
        fractions.add(int(fraction))
    assert {fields["name"] for fields in events} == {name for name, _ in samples.AEX_STOCKS}
    assert min(fractions) < 10 <= max(fractions)


def test_web_presentation_cycles_through_five_slide_urls():
    """The url field walks the five slides in order and starts over."""
    _, events = run_sample(samples.WebPresentationSource(), 7)
    urls = [fields["url"] for fields in events]
    assert len(set(samples.SLIDE_URLS)) == 5
    assert urls == [*samples.SLIDE_URLS, *samples.SLIDE_URLS[:2]]


def test_test_source_counts_from_zero_and_stamps_clock_milliseconds():
    """The /system/test source numbers its events 0, 1, 2 and sends the clock in ms."""
    _, events = run_sample(samples.TestSource(), 3)
    assert [(f["nr"], f["time"]) for f in events] == [("0", "2000"), ("1", "4000"), ("2", "6000")]


def test_ping_carries_no_fields_of_its_own():
    """A ping is a bare data event on /pushlet/ping."""
    _, events = run_sample(samples.PingSource(), 1)
    assert events == [{"p_event": "data", "p_time": "3", "p_subject": "/pushlet/ping"}]


def test_system_status_publishes_the_figures_it_is_given():
    """The /system/jvm event carries the probe's figures under the JVM names."""
    figures = {"totalMemory": 100, "freeMemory": 20, "maxMemory": 120, "threads": 3}
    _, events = run_sample(samples.SystemStatusSource(figures=lambda: figures), 1)
    assert events == [{"p_event": "data", "p_time": "4", "p_subject": "/system/jvm",
                       "totalMemory": "100", "freeMemory": "20", "maxMemory": "120", "threads": "3"}]


def test_process_figures_report_this_process_consistently():
    """The default figures are non-negative ints with free = max - total and at least one thread."""
    figures = samples.process_figures()
    assert set(figures) == {"totalMemory", "freeMemory", "maxMemory", "threads"}
    assert all(isinstance(v, int) and v >= 0 for v in figures.values())
    assert figures["totalMemory"] > 0
    assert figures["freeMemory"] == figures["maxMemory"] - figures["totalMemory"]
    assert figures["threads"] >= 1


def test_pushlet_status_reports_the_session_count():
    """The publisher field is a one-line status naming the live session count."""
    clock, server = make_server()
    session = listener(server)
    listener(server)
    source = samples.PushletStatusSource()
    source.activate(server)
    clock.advance(5)
    (fields,) = received(server, session)
    assert fields["publisher"].startswith("SessionMgr: 2 sessions, 2 joined, 0 ended")
    assert "\n" not in fields["publisher"]


# -- load_sources ---------------------------------------------------------


def test_load_sources_without_a_file_gives_the_six_demo_sources():
    """None gives new instances of the six sources of the original sources.properties, in order."""
    sources = load_sources(None)
    assert [type(s) for s in sources] == list(samples.DEFAULT_SOURCES)
    assert [s.subject for s in sources] == ["/temperature", "/system/jvm", "/system/pushlet",
                                            "/stocks/aex", "/webpres/auto", "/pushlet/ping"]
    assert all(verifyObject(IEventSource, s) for s in sources)
    assert load_sources(None)[0] is not sources[0]


def test_load_sources_reads_the_original_pushlet_file_as_is(tmp_path):
    """Pushlet's sources.properties, Java class names and comments included, gives the six samples."""
    path = tmp_path / "sources.properties"
    path.write_text(ORIGINAL_SOURCES_PROPERTIES)
    assert [type(s) for s in load_sources(str(path))] == list(samples.DEFAULT_SOURCES)


def test_load_sources_maps_every_java_sample_including_the_test_source():
    """The seven Java sample names map to the seven pushpy samples."""
    assert sorted(cls.__name__ for cls in JAVA_CLASSES.values()) == sorted(
        row[0].__name__ for row in SAMPLES)


def test_load_sources_imports_python_classes_by_dotted_or_colon_name(tmp_path):
    """module.ClassName and module:ClassName both name a Python source class."""
    path = tmp_path / "sources.properties"
    path.write_text("a=pushpy.sources.samples.TestSource\nb = pushpy.sources.samples:PingSource\n")
    assert [type(s) for s in load_sources(path)] == [samples.TestSource, samples.PingSource]


@pytest.mark.parametrize(("line", "complaint"), [
    ("bad=no.such.module.Source", "cannot import no.such.module"),
    ("bad=pushpy.sources.samples.NoSuchSource", "has no NoSuchSource"),
    ("bad=NoModule", "expected module.ClassName"),
    ("bad=", "expected module.ClassName"),
    ("bad=collections.OrderedDict", "is not an event source"),
    ("bad=pushpy.config.load_config", "is not an event source"),
    ("bad=nl.justobjects.pushlet.test.TestEventPushSources$AEXStocksEventPushSource",
     "no pushpy equivalent"),
    ("bad=os.path.join", "cannot create the source"),
])
def test_load_sources_refuses_a_bad_line_naming_it(tmp_path, line, complaint):
    """A line whose class cannot be imported, built or is no source raises UsageError naming the line."""
    path = tmp_path / "sources.properties"
    path.write_text(f"# demo\ngood=pushpy.sources.samples.PingSource\n{line}\n")
    with pytest.raises(UsageError) as info:
        load_sources(path)
    message = str(info.value)
    assert line in message
    assert complaint in message
    assert str(path) in message


def test_load_sources_refuses_a_missing_file(tmp_path):
    """An unreadable sources file is a UsageError naming it."""
    path = tmp_path / "missing.properties"
    with pytest.raises(UsageError, match="missing.properties"):
        load_sources(path)


def _settle(server):
    """Let the turn that ``stopService`` waits for (so aborts reach the sockets) pass."""
    server.clock.advance(0)
