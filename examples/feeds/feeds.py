"""The event sources of the live-feeds example: stock prices and system figures.

Every source is a :class:`pushpy.sources.PullSource` (a timer on the server's
clock publishing one subject); the server runs them through
``PushServer(sources=...)``.  Subjects form a tree so clients pick what they
want by prefix:

- ``/stocks/<market>/<symbol>``: one stock's price (``/stocks`` is every stock,
  ``/stocks/aex`` one market, ``/stocks/aex/asml`` one stock; no symbol of a
  market is the start of another, so a stock's subject matches only itself);
- ``/system/host``: CPU, load and memory of the machine;
- ``/system/server``: sessions and event counts of this pushpy server.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping

from pushpy.sources import PullSource

#: Markets, their stocks and opening prices.
MARKETS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "aex": (("asml", "ASML Holding", 640.0), ("shell", "Shell", 31.2), ("ing", "ING Groep", 13.5),
            ("philips", "Philips", 24.1), ("heineken", "Heineken", 88.0), ("kpn", "KPN", 3.42)),
    "nasdaq": (("aapl", "Apple", 190.0), ("msft", "Microsoft", 410.0), ("nvda", "Nvidia", 120.0),
               ("amzn", "Amazon", 180.0), ("goog", "Alphabet", 165.0), ("intc", "Intel", 31.0)),
}


class StockSource(PullSource):
    """One stock's price on ``/stocks/<market>/<symbol>``, a random walk every 0.5 to 2.5 s / ``speed``.

    Fields: ``market``, ``symbol``, ``name``, ``price``, ``change`` (since the
    open) and ``percent``, as decimal strings.
    """

    def __init__(self, market: str, symbol: str, name: str, opening: float, *, speed: float = 1.0,
                 rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.subject = f"/stocks/{market}/{symbol}"
        self.market, self.symbol, self.name = market, symbol, name
        self.opening = self.price = opening
        self.speed = speed

    def interval(self, rng: random.Random) -> float:
        return rng.uniform(0.5, 2.5) / self.speed

    def produce(self, now: float) -> Mapping[str, object]:
        self.price = max(0.01, self.price * (1 + self.random.gauss(0, 0.004)))
        change = self.price - self.opening
        return {"market": self.market, "symbol": self.symbol, "name": self.name,
                "price": f"{self.price:.2f}", "change": f"{change:+.2f}",
                "percent": f"{100 * change / self.opening:+.2f}"}


def stock_sources(speed: float = 1.0) -> list[StockSource]:
    """A :class:`StockSource` for every stock of :data:`MARKETS`."""
    return [StockSource(market, symbol, name, opening, speed=speed)
            for market, stocks in MARKETS.items() for symbol, name, opening in stocks]


class HostSource(PullSource):
    """``/system/host`` every second / ``speed``: ``cpu`` (% busy since the last event), ``load1``,
    ``load5``, ``load15``, ``memTotal`` and ``memAvailable`` (MiB), ``cpus``.

    Figures the platform does not offer (no ``/proc``) are left out.
    """

    subject = "/system/host"

    def __init__(self, *, speed: float = 1.0, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.speed = speed
        self._cpu = _cpu_times()

    def interval(self, rng: random.Random) -> float:
        return 1.0 / self.speed

    def produce(self, now: float) -> Mapping[str, object]:
        fields: dict[str, object] = {"cpus": os.cpu_count() or 1}
        cpu = _cpu_times()
        if cpu and self._cpu:
            busy, total = cpu[0] - self._cpu[0], cpu[1] - self._cpu[1]
            fields["cpu"] = f"{100.0 * busy / total:.1f}" if total > 0 else "0.0"
        self._cpu = cpu
        if hasattr(os, "getloadavg"):
            fields.update(zip(("load1", "load5", "load15"), (f"{x:.2f}" for x in os.getloadavg()),
                              strict=True))
        fields.update(_memory())
        return fields


class ServerSource(PullSource):
    """``/system/server`` every second / ``speed``: ``sessions`` now, ``published`` and ``delivered``
    events so far, and ``uptime`` in seconds."""

    subject = "/system/server"

    def __init__(self, *, speed: float = 1.0, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self.speed = speed
        self.started = time.monotonic()

    def interval(self, rng: random.Random) -> float:
        return 1.0 / self.speed

    def produce(self, now: float) -> Mapping[str, object]:
        server = self.server
        return {"sessions": len(server.dispatcher.sessions), "published": server.metrics.published,
                "delivered": server.dispatcher.stats.delivered,
                "uptime": int(time.monotonic() - self.started)}


def feed_sources(speed: float = 1.0) -> list[PullSource]:
    """Every source of the example, producing ``speed`` times as often as normal."""
    return [*stock_sources(speed), HostSource(speed=speed), ServerSource(speed=speed)]


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``, or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _memory() -> dict[str, int]:
    """``memTotal`` and ``memAvailable`` in MiB from ``/proc/meminfo`` (empty without it)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    found["mem" + key[3:]] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        return {}
    return found
