"""The sample sources of the Pushlet demos (spec 11.2, upstream ``TestEventPullSources``).

Subjects, field names, value rules and intervals are those of the original, so
its demo pages work unchanged.  Random integers are drawn inclusive at both
ends, as the original's ``Rand`` does.

:class:`SystemStatusSource` reports this Python process under the JVM's field
names (see :func:`process_figures` for the mapping).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence

from pushpy.sources.base import PullSource

#: The cities of :class:`TemperatureSource`; ``number`` is the index.
CITIES = ("amsterdam", "rotterdam", "leeuwarden", "twente", "limburg")

#: The 24 AEX stocks of :class:`AEXStocksSource` with their base rates; ``number`` is the index.
AEX_STOCKS = (
    ("abn amro", 26), ("aegon", 38), ("ahold", 34), ("akzo nobel", 51),
    ("asm lith h", 26), ("corus plc", 2), ("dsm", 40), ("elsevier", 14),
    ("fortis (nl)", 32), ("getronics", 6), ("gucci", 94), ("hagemeyer", 25),
    ("heineken", 61), ("ing c", 78), ("klm", 66), ("kon olie", 66),
    ("kpn", 13), ("numico c", 44), ("philips, kon", 38), ("tnt", 26),
    ("unilever c", 62), ("vendex kbb", 16), ("vnu", 49), ("wolt-kluw c", 25),
)

#: The slides of :class:`WebPresentationSource` (the original's; the site is gone).
SLIDE_URLS = tuple(
    f"http://www.justobjects.org/cowcatcher/browse/j2ee/slides/ejb/j2ee/ejbover/slide.0.{n}.html"
    for n in range(5)
)


class TemperatureSource(PullSource):
    """``/temperature``: a random city's temperature, every 3 to 5 s.

    Each city gets a base of 5 to 10 the first time it is picked; its value is
    then the base plus -2 to 2.
    """

    subject = "/temperature"

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.bases: dict[int, int] = {}

    def interval(self, rng: random.Random) -> float:
        return rng.randint(3000, 5000) / 1000.0

    def produce(self, now: float) -> Mapping[str, object]:
        number = self.random.randint(0, len(CITIES) - 1)
        if number not in self.bases:
            self.bases[number] = self.random.randint(5, 10)
        value = self.bases[number] + self.random.randint(-2, 2)
        return {"number": number, "city": CITIES[number], "value": value}


class PingSource(PullSource):
    """``/pushlet/ping``: an event without fields every 3 s."""

    subject = "/pushlet/ping"

    def interval(self, rng: random.Random) -> float:
        return 3.0

    def produce(self, now: float) -> Mapping[str, object]:
        return {}


def process_figures() -> dict[str, int]:
    """This process's figures under the JVM ``Runtime`` names of ``/system/jvm``.

    - ``totalMemory``: the resident set size in bytes (memory the process holds,
      as the JVM's committed heap); the peak RSS where ``/proc`` is missing.
    - ``maxMemory``: the address-space limit (``RLIMIT_AS``) if one is set, else
      the machine's physical memory: the most the process could use.
    - ``freeMemory``: ``maxMemory - totalMemory``, the room left.
    - ``threads``: :func:`threading.active_count` (Python threads, as
      ``Thread.activeCount()`` counts Java threads).
    """
    total = _resident_bytes()
    limit = _memory_limit()
    maximum = max(limit, total) if limit else total
    return {"totalMemory": total, "freeMemory": maximum - total, "maxMemory": maximum,
            "threads": threading.active_count()}


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return 0


def _memory_limit() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            return soft
    except (ImportError, OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


class SystemStatusSource(PullSource):
    """``/system/jvm``: memory and thread figures of this process, every 4 s.

    :param figures: returns the field values (default :func:`process_figures`).
    """

    subject = "/system/jvm"

    def __init__(self, *, rng: random.Random | None = None,
                 figures: Callable[[], Mapping[str, object]] = process_figures) -> None:
        super().__init__(rng=rng)
        self.figures = figures

    def interval(self, rng: random.Random) -> float:
        return 4.0

    def produce(self, now: float) -> Mapping[str, object]:
        return dict(self.figures())


class PushletStatusSource(PullSource):
    """``/system/pushlet``: a one-line status of the server in ``publisher``, every 5 s."""

    subject = "/system/pushlet"

    def interval(self, rng: random.Random) -> float:
        return 5.0

    def produce(self, now: float) -> Mapping[str, object]:
        return {"publisher": server_status(self.server)}


def server_status(server: object) -> str:
    """A short status text: sessions now, and the dispatcher's counters."""
    dispatcher = server.dispatcher  # type: ignore[attr-defined]
    stats = dispatcher.stats
    return (f"SessionMgr: {len(dispatcher.sessions)} sessions, {stats.joined} joined, "
            f"{stats.ended} ended, {stats.delivered} events delivered, {stats.dropped} dropped")


class AEXStocksSource(PullSource):
    """``/stocks/aex``: a random stock's rate, every 2 to 4 s.

    The rate is the stock's base plus -2 to 2, then ``.`` and 0 to 99 without
    zero padding, as in the original (``61.5`` may stand for 61.05).
    """

    subject = "/stocks/aex"

    def __init__(self, *, rng: random.Random | None = None,
                 stocks: Sequence[tuple[str, int]] = AEX_STOCKS) -> None:
        super().__init__(rng=rng)
        self.stocks = tuple(stocks)

    def interval(self, rng: random.Random) -> float:
        return rng.randint(2000, 4000) / 1000.0

    def produce(self, now: float) -> Mapping[str, object]:
        number = self.random.randint(0, len(self.stocks) - 1)
        name, base = self.stocks[number]
        units = base + self.random.randint(-2, 2)
        return {"number": number, "name": name, "rate": f"{units}.{self.random.randint(0, 99)}"}


class WebPresentationSource(PullSource):
    """``/webpres/auto``: the next slide URL in ``url``, every 5 s, cycling."""

    subject = "/webpres/auto"

    def __init__(self, *, rng: random.Random | None = None,
                 urls: Sequence[str] = SLIDE_URLS) -> None:
        super().__init__(rng=rng)
        self.urls = tuple(urls)
        self.next_slide = 0

    def interval(self, rng: random.Random) -> float:
        return 5.0

    def produce(self, now: float) -> Mapping[str, object]:
        url = self.urls[self.next_slide]
        self.next_slide = (self.next_slide + 1) % len(self.urls)
        return {"url": url}


class TestSource(PullSource):
    """``/system/test``: a counter ``nr`` from 0 and ``time`` in ms, every 2 s."""

    __test__ = False  # not a pytest test class
    subject = "/system/test"

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.number = 0

    def interval(self, rng: random.Random) -> float:
        return 2.0

    def produce(self, now: float) -> Mapping[str, object]:
        number, self.number = self.number, self.number + 1
        return {"nr": number, "time": int(now * 1000)}


#: The default demo sources, in the order of the original ``sources.properties`` (spec 10.2).
DEFAULT_SOURCES: tuple[type[PullSource], ...] = (
    TemperatureSource, SystemStatusSource, PushletStatusSource,
    AEXStocksSource, WebPresentationSource, PingSource,
)
