"""Run the pushpy benchmark: every scenario against every target, one table.

    python bench/run.py [--quick] [--scenario fanout,latency,...] [--targets naive,pushlet-xml,...]

Each (scenario, target) gets a fresh server subprocess on a loopback port;
the load client (``load.py``) and the publisher run as separate processes.
Figures are shown with their ratio to the ``naive`` target measured in the
same run (the machine is shared and noisy: compare ratios, not absolutes).
See README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import Handle, Job, PublishJob, raise_nofile, source_addresses, start_publisher, start_workers
from targets import TARGETS, Target

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    fanout_subs: int
    fanout_msgs: int
    latency_subs: int
    latency_rate: float
    latency_seconds: float
    idle_conns: int
    idle_seconds: float
    churn_seconds: float
    subjects_sessions: int
    subjects_msgs: int
    pull_clients: int
    pull_rate: float
    pull_seconds: float
    heartbeat: float
    stall: float


QUICK = Sizes(fanout_subs=200, fanout_msgs=300, latency_subs=200, latency_rate=100, latency_seconds=1.0,
              idle_conns=1000, idle_seconds=1.0, churn_seconds=1.0, subjects_sessions=1000, subjects_msgs=300,
              pull_clients=200, pull_rate=100, pull_seconds=1.0, heartbeat=0.5, stall=0.75)
#: ``--quick`` without ``--targets``: one target per kind, so it stays near a minute.
QUICK_TARGETS = ("naive", "pushlet-xml", "pushlet-pull", "pushpy-sse", "pushpy-ws", "python-socketio")
FULL = Sizes(fanout_subs=1000, fanout_msgs=2000, latency_subs=1000, latency_rate=100, latency_seconds=10,
             idle_conns=10_000, idle_seconds=10, churn_seconds=10, subjects_sessions=10_000,
             subjects_msgs=2000, pull_clients=1000, pull_rate=100, pull_seconds=10, heartbeat=10.0, stall=5.0)


# -- servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A target's server process; CPU and RSS come from /proc/<pid>."""

    def __init__(self, target: Target, heartbeat: float, log: Path, profile: Path | None,
                 pushpy_src: Path | None = None) -> None:
        self.port = free_port()
        self.spy: subprocess.Popen | None = None
        self.profile = profile
        argv = [sys.executable, str(BENCH / target.script), "--port", str(self.port),
                "--heartbeat", str(heartbeat), *target.args]
        if pushpy_src is not None and target.script == "pushpy_server.py":
            argv += ["--src", str(pushpy_src)]
        self.log = log
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("w"),
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        line = b""
        while time.time() < deadline and not line.startswith(b"READY"):
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
        if not line.startswith(b"READY"):
            self.stop()
            raise RuntimeError(f"{target.name} did not start; see {log}")

    def start_profile(self) -> None:
        if self.profile is not None:
            self.spy = subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "--pid", str(self.proc.pid), "--format", "raw",
                 "--rate", "200", "-o", str(self.profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_profile(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(15)
            except subprocess.TimeoutExpired:
                self.spy.kill()
            self.spy = None

    def cpu(self) -> float:
        """CPU seconds of every thread so far (``schedstat``: nanoseconds, not 10 ms ticks),
        the server's worker processes included (``--workers``)."""
        total = 0
        for pid in [self.proc.pid, *self.children()]:
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def children(self) -> list[int]:
        """Process ids of the server's direct children (its workers, if any)."""
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            return [int(pid) for pid in text.split()]
        return []

    def rss(self) -> int:
        """Resident memory in bytes, the server's worker processes included (``--workers``)."""
        total = 0
        for pid in [self.proc.pid, *self.children()]:
            with contextlib.suppress(OSError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.stop_profile()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# -- helpers ----------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


class _NoProfile:
    """A server seen without its profiler (for warm-up phases)."""

    def __init__(self, server: Server) -> None:
        self.cpu = server.cpu

    def start_profile(self) -> None:
        pass

    def stop_profile(self) -> None:
        pass


class Meter:
    """Server CPU, machine CPU and wall time between :meth:`start` and :meth:`stop`."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def start(self) -> None:
        self.cpu0, self.busy0, self.t0 = self.server.cpu(), machine_busy(), time.time()
        self.server.start_profile()

    def stop(self) -> None:
        self.server.stop_profile()
        self.cpu, self.busy, self.wall = (self.server.cpu() - self.cpu0, machine_busy() - self.busy0,
                                          time.time() - self.t0)

    def other(self, ours: float) -> float:
        """CPU used by processes outside the benchmark (and kernel work), % of one core."""
        return max(0.0, (self.busy - self.cpu - ours) / self.wall * 100)


@dataclass
class Ctx:
    server: Server
    target: Target
    sizes: Sizes
    args: argparse.Namespace
    sources: list[str]

    def job(self, mode: str, channels: list[str], **kw: Any) -> Job:
        return Job(mode=mode, port=self.server.port, channels=channels, sources=self.sources,
                   stream=self.target.stream, pull=self.target.pull, **kw)

    def workers_for(self, n: int) -> int:
        return max(self.args.workers, math.ceil(n / 15_000))

    def publisher(self, channel: str, count: int, rate: float | None = None) -> Handle:
        return start_publisher(PublishJob(
            port=self.server.port, recipe=self.target.publisher(self.args.pushlet_publish),
            channel=channel, count=count, concurrency=self.args.pub_concurrency, rate=rate))


def connect(ctx: Ctx, job: Job) -> tuple[list[Handle], int]:
    handles = start_workers(job, ctx.workers_for(len(job.channels)))
    timeout = 60 + len(job.channels) / 200
    connected = sum(h.recv(timeout)["conns"] for h in handles)
    if connected < len(job.channels):
        print(f"    ! {ctx.target.name}: {connected} of {len(job.channels)} connections subscribed",
              file=sys.stderr)
    return handles, connected


def ask_all(handles: list[Handle], command: str, timeout: float = 60) -> list[dict[str, Any]]:
    for h in handles:
        h.pipe.send(command)
    return [h.recv(timeout) for h in handles]


def stop_all(handles: list[Handle]) -> list[dict[str, Any]]:
    try:
        return ask_all(handles, "stop")
    finally:
        for h in handles:
            h.close()


#: Seconds the publisher may take: python-socketio publishes 2,000 messages to 1,000 subscribers in
#: 100 s on a quiet machine, and in over 300 s when other processes take the cores.
PUBLISH_TIMEOUT = 900.0


def drain(handles: list[Handle], expected: int, stall: float, limit: float = 180) -> int:
    """Wait until ``expected`` deliveries arrived, or none arrived for ``stall`` seconds."""
    end = time.time() + limit
    seen, since = -1, time.time()
    while time.time() < end:
        total = sum(s["delivered"] for s in ask_all(handles, "stats"))
        if total >= expected:
            return total
        if total != seen:
            seen, since = total, time.time()
        elif time.time() - since > stall:
            return total
        time.sleep(0.1)
    return seen


def client_cpu(stats: list[dict[str, Any]], seconds: float) -> float:
    """The busiest load-client process, in % of one core."""
    return max((s["cpu"] / seconds * 100 for s in stats), default=0.0)


def percentile(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


# -- scenarios ------------------------------------------------------------------------------


def fanout(ctx: Ctx) -> dict[str, float]:
    """Deliveries/s and loss: subscribers on one channel, N messages as fast as acknowledged."""
    s = ctx.sizes
    handles, subs = connect(ctx, ctx.job("stream", ["bench"] * s.fanout_subs))
    meter = Meter(ctx.server)
    try:
        ask_all(handles, "reset")
        meter.start()
        pub = ctx.publisher("bench", s.fanout_msgs)
        sent = pub.recv(PUBLISH_TIMEOUT)
        pub.close()
        delivered = drain(handles, subs * s.fanout_msgs, s.stall)
        meter.stop()
    finally:
        stats = stop_all(handles)
    if "error" in sent:
        raise RuntimeError(f"publisher: {sent['error']}")
    last = max(st["last"] for st in stats)
    seconds = max(1e-6, last - sent["start"])
    ours = sum(st["cpu"] for st in stats) + sent["cpu"]
    return {
        "deliveries/s": delivered / seconds,
        "loss %": 100.0 * (1 - delivered / (subs * s.fanout_msgs)),
        "server CPU us/delivery": meter.cpu / max(1, delivered) * 1e6,
        "events/read": delivered / max(1, sum(st["reads"] for st in stats)),
        "publish/s": sent["ok"] / max(1e-6, sent["end"] - sent["start"]),
        "server CPU %": meter.cpu / meter.wall * 100,
        "client CPU % (max)": client_cpu(stats, stats[0]["wall"]),
        "other CPU %": meter.other(ours),
        "subscribers": subs,
        "conns dropped": sum(st["dropped"] for st in stats),
        "publish refused": sent["errors"] + sent["rejected"],
    }


def latency(ctx: Ctx) -> dict[str, float]:
    """Publish-to-delivery latency at a fixed publish rate (timestamp in the payload)."""
    s = ctx.sizes
    track = max(1, s.latency_subs // 100)
    handles, subs = connect(ctx, ctx.job("stream", ["bench"] * s.latency_subs, track_every=track))
    count = int(s.latency_rate * s.latency_seconds)
    try:
        ask_all(handles, "reset")
        pub = ctx.publisher("bench", count, rate=s.latency_rate)
        sent = pub.recv(s.latency_seconds * 5 + 60)
        pub.close()
        delivered = drain(handles, subs * count, s.stall)
    finally:
        stats = stop_all(handles)
    samples = [x for st in stats for x in st["latencies"]]
    return {
        "p50 ms": percentile(samples, 50) / 1e6,
        "p99 ms": percentile(samples, 99) / 1e6,
        "max ms": (max(samples) / 1e6) if samples else float("nan"),
        "loss %": 100.0 * (1 - delivered / (subs * count)),
        "client CPU % (max)": client_cpu(stats, stats[0]["wall"]),
        "publish refused": sent.get("errors", 0) + sent.get("rejected", 0),
        "conns dropped": sum(st["dropped"] for st in stats),
    }


def idle(ctx: Ctx) -> dict[str, float]:
    """Memory per held streaming connection and server CPU while idle (heartbeats on)."""
    s = ctx.sizes
    warm = min(100, s.idle_conns // 10)
    first, _ = connect(ctx, ctx.job("stream", [f"i{n}" for n in range(warm)]))
    handles = list(first)
    try:
        time.sleep(min(0.5, s.stall))
        rss0 = ctx.server.rss()
        more, held = connect(ctx, ctx.job("stream", [f"i{n}" for n in range(warm, s.idle_conns)]))
        handles += more
        time.sleep(s.stall)
        rss1 = ctx.server.rss()
        ask_all(handles, "reset")
        meter = Meter(ctx.server)
        meter.start()
        time.sleep(s.idle_seconds)
        meter.stop()
        stats = ask_all(handles, "stats")
    finally:
        final = stop_all(handles)
    alive = sum(st["conns"] for st in stats) - sum(st["dropped"] for st in final)
    return {
        "KB/conn": (rss1 - rss0) / max(1, held) / 1024,
        "server CPU %": meter.cpu / meter.wall * 100,
        "conns held": alive,
        "hb bytes/conn/s": sum(st["bytes"] for st in stats) / max(1, alive) / meter.wall,
        "server RSS MB": rss1 / 2**20,
    }


def churn(ctx: Ctx) -> dict[str, float]:
    """Subscribe-then-disconnect cycles per second with parallel clients."""
    s = ctx.sizes
    rss0 = ctx.server.rss()
    job = ctx.job("churn", ["bench"], churn_parallel=ctx.args.churn_parallel, churn_seconds=s.churn_seconds)
    meter = Meter(ctx.server)
    meter.start()
    handles = start_workers(job, ctx.args.workers)
    try:
        results = [h.recv(s.churn_seconds + 120) for h in handles]
    finally:
        for h in handles:
            h.close()
    meter.stop()
    time.sleep(0.5)
    seconds = max(r["seconds"] for r in results)
    cycles = sum(r["cycles"] for r in results)
    return {
        "cycles/s": cycles / seconds,
        "server CPU us/cycle": meter.cpu / max(1, cycles) * 1e6,
        "failed": sum(r["failed"] for r in results),
        "connect p50 ms": max(r["connect_p50_ms"] or 0 for r in results),
        "RSS growth MB": (ctx.server.rss() - rss0) / 2**20,
        "client CPU % (max)": client_cpu(results, seconds),
        "other CPU %": meter.other(sum(r["cpu"] for r in results)),
    }


def subjects(ctx: Ctx) -> dict[str, float]:
    """Publishing to one subject with 100 sessions, then with many: the cost must not grow."""
    s = ctx.sizes
    few = 100
    refused = [0]

    def phase(handles: list[Handle], profile: bool) -> tuple[float, float, int]:
        ask_all(handles, "reset")
        meter = Meter(ctx.server)
        if not profile:
            meter.server = _NoProfile(ctx.server)
        meter.start()
        pub = ctx.publisher("s00000", s.subjects_msgs)
        sent = pub.recv(PUBLISH_TIMEOUT)
        pub.close()
        if "error" in sent:
            raise RuntimeError(f"publisher: {sent['error']}")
        got = drain(handles, s.subjects_msgs, s.stall)
        meter.stop()
        refused[0] += sent["errors"] + sent["rejected"]
        return sent["ok"] / (sent["end"] - sent["start"]), meter.cpu / max(1, sent["ok"]) * 1e6, got

    handles, _ = connect(ctx, ctx.job("stream", [f"s{n:05d}" for n in range(few)]))
    try:
        rate_few, cost_few, got_few = phase(handles, False)
        more, _ = connect(ctx, ctx.job("stream", [f"s{n:05d}" for n in range(few, s.subjects_sessions)]))
        handles += more
        time.sleep(0.5)
        rate_many, cost_many, got_many = phase(handles, True)
    finally:
        final = stop_all(handles)
    n = s.subjects_sessions
    return {
        f"publish/s @{few}": rate_few,
        f"publish/s @{n}": rate_many,
        f"server us/publish @{few}": cost_few,
        f"server us/publish @{n}": cost_many,
        "cost growth x": cost_many / cost_few,
        "loss %": 100.0 * (1 - (got_few + got_many) / (2 * s.subjects_msgs)),
        "conns dropped": sum(st["dropped"] for st in final),
        "publish refused": refused[0],
    }


def pull(ctx: Ctx) -> dict[str, float]:
    """Request/response cycles per second of many pull clients while messages flow."""
    s = ctx.sizes
    handles, clients = connect(ctx, ctx.job("pull", ["bench"] * s.pull_clients))
    count = int(s.pull_rate * s.pull_seconds)
    meter = Meter(ctx.server)
    try:
        ask_all(handles, "reset")
        meter.start()
        pub = ctx.publisher("bench", count, rate=s.pull_rate)
        sent = pub.recv(s.pull_seconds * 5 + 60)
        pub.close()
        stats = ask_all(handles, "stats")
        meter.stop()
    finally:
        stop_all(handles)
    seconds = max(st["wall"] for st in stats)
    cycles = sum(st["cycles"] for st in stats)
    return {
        "cycles/s": cycles / seconds,
        "server CPU us/cycle": meter.cpu / max(1, cycles) * 1e6,
        "deliveries/s": sum(st["delivered"] for st in stats) / seconds,
        "server CPU %": meter.cpu / meter.wall * 100,
        "client CPU % (max)": client_cpu(stats, seconds),
        "other CPU %": meter.other(sum(st["cpu"] for st in stats) + sent.get("cpu", 0.0)),
        "errors": sum(st["errors"] + st["dropped"] for st in stats) + sent.get("errors", 0)
        + sent.get("rejected", 0),
        "clients": clients,
    }


SCENARIOS: dict[str, Callable[[Ctx], dict[str, float]]] = {
    "fanout": fanout, "latency": latency, "idle": idle, "churn": churn, "subjects": subjects, "pull": pull,
}


def applies(scenario: str, target: Target) -> bool:
    return target.pull is not None if scenario == "pull" else target.stream is not None


# -- output ---------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if abs(value) >= 1000 or (abs(value) >= 1 and float(value).is_integer()):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


#: Counts and context, shown without a ratio.
NO_RATIO = {"rounds", "conns dropped", "subscribers", "clients", "conns held", "failed", "errors",
            "publish errors", "publish refused", "loss %", "other CPU %", "client CPU % (max)"}
#: The figure that picks the best of ``--repeat`` rounds: (metric, higher is better).
PRIMARY = {"fanout": ("deliveries/s", True), "latency": ("p99 ms", False), "idle": ("KB/conn", False),
           "churn": ("cycles/s", True), "subjects": ("cost growth x", False), "pull": ("cycles/s", True)}


def best(rounds: list[dict[str, float]], scenario: str) -> dict[str, float]:
    """The round with the best primary figure (noise from other processes only slows things down)."""
    metric, higher = PRIMARY[scenario]
    usable = [r for r in rounds if not math.isnan(r.get(metric, math.nan))]
    if not usable:
        return rounds[0]
    pick = (max if higher else min)(usable, key=lambda r: r[metric])
    return {**pick, "rounds": len(rounds)} if len(rounds) > 1 else pick


#: The issue's targets: (scenario, metric, target, op, bound, reference target or None for absolute).
GOALS = [
    *[("fanout", "deliveries/s", t, ">=", 1.0, "naive") for t in ("pushlet-xml", "pushpy-sse")],
    *[("fanout", "deliveries/s", t, ">=", 0.7, "naive-transport") for t in ("pushlet-xml", "pushpy-sse")],
    *[("fanout", "server CPU us/delivery", t, "<=", 1.0, "naive") for t in ("pushlet-xml", "pushpy-sse")],
    ("fanout", "deliveries/s", "pushpy-ws", ">=", 3.0, "python-socketio"),
    ("fanout", "deliveries/s", "pushpy-socketio", ">=", 3.0, "python-socketio"),
    *[("latency", "p99 ms", t, "<=", 1.0, "naive") for t in ("pushlet-xml", "pushpy-sse")],
    *[("idle", "KB/conn", t, "<=", 10.0, None) for t in ("pushlet-xml", "pushpy-sse", "pushpy-ws")],
    *[("idle", "server CPU %", t, "<", 5.0, None) for t in ("pushlet-xml", "pushpy-sse", "pushpy-ws")],
    ("idle", "conns held", "pushpy-sse-redis-4w", ">=", 50_000.0, None),  # --set idle_conns=50000
    ("idle", "KB/conn", "pushpy-sse-redis-4w", "<=", 10.0, None),
    ("pull", "cycles/s", "pushlet-pull", ">=", 5000.0, None),
]


def goals(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The issue's targets that this run measured, each with its figure and PASS/FAIL."""
    lines = []
    for scenario, metric, name, op, bound, ref in GOALS:
        value = results.get(scenario, {}).get(name, {}).get(metric)
        if value is None:
            continue
        if ref is not None:
            base = results[scenario].get(ref, {}).get(metric)
            if not base:
                continue
            value, what = value / base, f"{name} / {ref}"
        else:
            what = name
        ok = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {scenario} {metric}: {what} = {fmt(value)} "
                     f"(goal {op} {fmt(bound)})")
    return "\n".join(lines)


def table(results: dict[str, dict[str, dict[str, float]]], targets: list[str], markdown: bool) -> str:
    """One row per (scenario, metric), one column per target; ``value (ratio to naive)``."""
    rows = [["scenario", "metric", *targets]]
    for scenario, per_target in results.items():
        metrics: list[str] = []
        for found in per_target.values():
            metrics += [m for m in found if m not in metrics]
        base = per_target.get("naive", {})
        for metric in metrics:
            row = [scenario, metric]
            for name in targets:
                value = per_target.get(name, {}).get(metric)
                if value is None:
                    row.append("-")
                    continue
                cell = fmt(value)
                ref = base.get(metric)
                if (name != "naive" and metric not in NO_RATIO and ref and not math.isnan(ref)
                        and not math.isnan(value)):
                    cell += f" ({value / ref:.2f}x)"
                row.append(cell)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
        return "\n".join(lines)
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 2**20
    versions = []
    for package in ("twisted", "python-socketio", "aiohttp"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    return (f"{os.cpu_count()} cores {model}, {mem} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}")


# -- main -----------------------------------------------------------------------------------


def run_one(scenario: str, target: Target, sizes: Sizes, args: argparse.Namespace, sources: list[str],
            logs: Path, profiles: Path | None, round_: int) -> dict[str, float] | None:
    """One scenario against one target on a fresh server; ``None`` if it failed."""
    t0 = time.time()
    tag = f"{scenario}-{target.name}" + (f"-{round_ + 1}" if args.repeat > 1 else "")
    profile = profiles / f"{tag}.txt" if profiles else None
    found = None
    src = args.revisions.get(target.name, args.pushpy_src)
    server = Server(target, sizes.heartbeat, logs / f"{tag}.log", profile, src)
    try:
        found = SCENARIOS[scenario](Ctx(server, target, sizes, args, sources))
    except Exception as e:
        print(f"    ! {tag} failed: {e!r}", file=sys.stderr)
    finally:
        died = not server.alive()
        server.stop()
    if died:
        print(f"    ! {tag}: the server died; see {server.log}", file=sys.stderr)
    summary = ", ".join(f"{k}={fmt(v)}" for k, v in list((found or {}).items())[:3])
    print(f"  {scenario:9} {target.name:16} {time.time() - t0:5.1f}s  {summary}", flush=True)
    return found


def report(results: dict[str, dict[str, dict[str, float]]], targets: list[str], markdown: bool) -> None:
    """The table of ``results`` and the goal checks."""
    shown = [t for t in targets if any(t in per_target for per_target in results.values())]
    print(table(results, shown, markdown))
    checks = goals(results)
    if checks:
        print("\n# goals of the performance issue (ratios within this run)")
        print(checks)


def show(path: Path, markdown: bool) -> None:
    data = json.loads(path.read_text())
    print(f"# {data['date']}  {data['command']}\n# {data['machine']}\n# pushpy {data.get('revision', '?')}")
    found = {t for r in data["results"].values() for t in r}
    targets = [t for t in TARGETS if t in found] + sorted(t for t in found if t not in TARGETS)
    report(data["results"], targets, markdown)


def export(rev: str, into: Path) -> tuple[Path, str]:
    """``pushpy/`` and ``webroot/`` of git revision ``rev``, extracted under ``into``; and its short hash."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    folder = into / f"pushpy-{short}"
    if folder.exists():
        return folder, short
    folder.mkdir()
    archive = subprocess.run(["git", "archive", rev, "pushpy", "webroot"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder, short


def revision(rev: str | None = None) -> str:
    if rev:
        return f"{rev} (exported with git archive)"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pushpy"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" + uncommitted changes in pushpy/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description="pushpy benchmark: every scenario against every target.")
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute in all")
    parser.add_argument("--scenario", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument("--targets", help=f"comma-separated, from {','.join(TARGETS)}, or 'all' "
                        f"(the default; with --quick: {','.join(QUICK_TARGETS)})")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds per scenario (targets interleaved); the best round is shown")
    parser.add_argument("--workers", type=int, default=2, help="load-client processes (more if needed)")
    parser.add_argument("--pub-concurrency", type=int, default=4, help="publisher requests in flight")
    parser.add_argument("--pushlet-publish", choices=("protocol", "api"), default="protocol",
                        help="pushpy targets: Pushlet p_event=publish (default) or the bench-only endpoint")
    parser.add_argument("--churn-parallel", type=int, default=25, help="churn loops per client process")
    parser.add_argument("--sources", type=int, default=250, help="127.0.0.x source addresses")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a size, e.g. --set idle_conns=19000 --set fanout_msgs=500")
    parser.add_argument("--pushpy-rev", metavar="REV",
                        help="serve pushpy as of this git revision (exported; the work tree is left alone) "
                        "instead of the work tree, e.g. HEAD: immune to edits in progress")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server during each measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--show", metavar="FILE", help="print the table of a --json file; run nothing")
    args = parser.parse_args()
    if args.show:
        show(Path(args.show), args.markdown)
        return

    sizes = QUICK if args.quick else FULL
    for item in args.set:
        name, _, value = item.partition("=")
        sizes = Sizes(**{**sizes.__dict__, name: type(getattr(sizes, name))(value)})
    scenarios = [s for s in args.scenario.split(",") if s]
    if args.targets in (None, "all"):
        targets = list(QUICK_TARGETS if args.quick and args.targets is None else TARGETS)
    else:
        targets = [t for t in args.targets.split(",") if t]
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    for name in targets:
        if name.partition("@")[0] not in TARGETS:
            parser.error(f"unknown target {name!r}")
    raise_nofile()
    logs = Path(tempfile.mkdtemp(prefix="pushpy-bench-"))
    profiles = Path(args.profile) if args.profile else None
    if profiles:
        profiles.mkdir(parents=True, exist_ok=True)
    sources = source_addresses(args.sources)
    args.pushpy_src, pinned = None, None
    if args.pushpy_rev:
        args.pushpy_src, pinned = export(args.pushpy_rev, logs)
    # NAME@REV: the pushpy target NAME served from git revision REV, beside the others (A/B in one run).
    args.revisions, exported, named = {}, {}, {}
    for name in targets:
        base, _, rev = name.partition("@")
        if rev:
            if TARGETS[base].script != "pushpy_server.py":
                parser.error(f"{name}: only pushpy targets can be served from a revision")
            if rev not in exported:
                exported[rev] = export(rev, logs)[0]
            args.revisions[name] = exported[rev]
            named[name] = dataclasses.replace(TARGETS[base], name=name)
    started = time.time()
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {command}", flush=True)
    print(f"# {machine()}", flush=True)
    print(f"# pushpy {revision(pinned)}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"# sizes: {sizes}", flush=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for scenario in scenarios:
        rounds: dict[str, list[dict[str, float]]] = {}
        for round_ in range(args.repeat):
            for name in targets:
                target = named.get(name) or TARGETS[name]
                if not applies(scenario, target):
                    continue
                found = run_one(scenario, target, sizes, args, sources, logs, profiles, round_)
                if found:
                    rounds.setdefault(name, []).append(found)
        results[scenario] = {name: best(found, scenario) for name, found in rounds.items()}
    print()
    report(results, targets, args.markdown)
    print(f"\n# {time.time() - started:.0f}s in all; server logs in {logs}")
    if profiles:
        print(f"# py-spy profiles (collapsed stacks) in {profiles}; "
              f"summary: python bench/profile.py {profiles}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": command,
            "machine": machine(), "revision": revision(pinned), "sizes": sizes.__dict__, "results": results,
        }, indent=1))


if __name__ == "__main__":
    main()
