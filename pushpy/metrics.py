# test-case-name: tests.ops.test_metrics
"""What a running server counts, and the two views of it: JSON stats and Prometheus.

Counting happens where things happen, as plain integer attributes: the
dispatcher's :class:`~pushpy.core.dispatcher.Stats` (events received,
delivered, dropped, queue overflows, sessions joined and ended) and the
server's :class:`Counters` (events published, sessions ended by reason,
request errors by kind).  Nothing is computed per event beyond an addition;
gauges (sessions by transport and mode, subscriptions, history sizes) are
computed when someone asks: :func:`snapshot` for ``<root>stats``, and
:class:`PushpyCollector`, a Prometheus collector reading the same numbers on
each scrape of ``<root>metrics``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pushpy import protocol as P
from pushpy.core.sessions import Session, SessionState
from pushpy.heap import gc_stats

if TYPE_CHECKING:
    from pushpy.server import PushServer

#: Request errors by HTTP status: the ``kind`` label.
ERROR_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 414: "too_large",
               429: "rate_limited", 503: "unavailable"}
#: How many recent errors the stats keep.
RECENT_ERRORS = 50


def error_kind(status: int) -> str:
    """The ``kind`` of a request error with HTTP ``status``."""
    return ERROR_KINDS.get(status) or ("server_error" if status >= 500 else "client_error")


class Counters:
    """Counts the server keeps besides the dispatcher's, as plain attributes."""

    __slots__ = ("ended", "errors", "published", "recent_errors", "started")

    def __init__(self, now: float | None = None) -> None:
        #: Events handed to the backplane by this process.
        self.published = 0
        #: Sessions ended, by reason (``expired``, ``leave``, ...).
        self.ended: dict[str, int] = {}
        #: Request errors by kind (:func:`error_kind`).
        self.errors: dict[str, int] = {}
        #: The latest errors, newest last: ``{time, kind, status, path, reason}``.
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self.started = time.time() if now is None else now

    def session_ended(self, session: Any, reason: Any) -> None:
        """Count an ended session by its reason (a dispatcher ``on_end`` callback)."""
        value = getattr(reason, "value", str(reason))
        self.ended[value] = self.ended.get(value, 0) + 1

    def record_error(self, kind: str, *, when: float, status: int | None = None,
                     path: str = "", reason: str = "") -> None:
        """Count one error and keep it among the recent ones."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.recent_errors.append({"time": when, "kind": kind, "status": status,
                                   "path": path[:200], "reason": reason[:300]})


def channel_transport(channel: Any) -> str:
    """The transport of a data channel: ``websocket``, ``sse``, ``xhr``, ``iframe``, ``longpoll``, ...

    A channel may name itself with a ``transport_name`` attribute; the
    built-in ones are recognised by their class.
    """
    name = getattr(channel, "transport_name", None)
    if name:
        return str(name)
    kind = type(channel).__name__
    if kind == "WebSocketChannel":
        return getattr(channel.connection, "transport_name", "websocket")
    if kind == "NativeStreamChannel":
        framing = channel.framing.name
        return "iframe" if framing.startswith("htmlfile") else framing
    if kind == "LongPollChannel":
        return "longpoll"
    if kind in ("StreamChannel", "RefreshChannel"):
        return "pushlet"
    return kind.lower()


def session_labels(session: Session) -> tuple[str, str]:
    """``(transport, mode)`` of a session for the ``pushpy_sessions`` gauge.

    Pushlet sessions are ``pushlet`` with their mode (``stream``, ``pull``,
    ``poll``; ``joined`` before listening).  Sessions of pushpy's own
    transports take the transport of their open connection and the mode it
    implies (``stream``, or ``pull`` for long-poll); without one they are
    ``none``/``none`` (the client is between requests or reconnecting).
    """
    if session.format != P.FORMAT_JSON:
        return "pushlet", session.mode if session.state is SessionState.LISTENING else "joined"
    if not session.channels:
        return "none", "none"
    transport = channel_transport(session.channels[-1])
    return transport, "pull" if transport in ("longpoll", "poll") else "stream"


def snapshot(server: PushServer, now: float | None = None) -> dict[str, Any]:
    """Every number of ``server`` as one JSON-ready dict (``<root>stats``)."""
    now = server.clock.seconds() if now is None else now
    dispatcher = server.dispatcher
    stats = dispatcher.stats
    counters = server.metrics
    by_label: dict[tuple[str, str], int] = {}
    connections: dict[str, int] = {}
    subscriptions = queued = 0
    for session in dispatcher.sessions.values():
        labels = session_labels(session)
        by_label[labels] = by_label.get(labels, 0) + 1
        subscriptions += len(session.subscriptions)
        queued += len(session.queue)
        for channel in session.channels:
            transport = channel_transport(channel)
            connections[transport] = connections.get(transport, 0) + 1
    by_transport: dict[str, int] = {}
    by_mode: dict[str, int] = {}
    for (transport, mode), count in by_label.items():
        by_transport[transport] = by_transport.get(transport, 0) + count
        by_mode[mode] = by_mode.get(mode, 0) + count
    return {
        "time": now,
        "uptime": max(0.0, now - counters.started),
        "sessions": {
            "total": len(dispatcher.sessions),
            "by_transport": by_transport,
            "by_mode": by_mode,
            "by_transport_mode": [{"transport": t, "mode": m, "count": c}
                                  for (t, m), c in sorted(by_label.items())],
            "joined": stats.joined,
            "ended": stats.ended,
            "ended_by_reason": dict(counters.ended),
        },
        "connections": {"total": sum(connections.values()), "by_transport": connections},
        "subscriptions": subscriptions,
        "subjects": len(dispatcher.index),
        "events": {
            "published": counters.published,
            "received": stats.received,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
        },
        "queues": {"queued": queued, "overflows": getattr(stats, "overflows", 0)},
        "history": history_stats(server),
        "backplane": backplane_stats(server),
        "gc": gc_stats(),
        "errors": {"by_kind": dict(counters.errors), "recent": list(counters.recent_errors)},
        "dashboard": {"subject": server.config.stats_subject,
                      "interval": server.config.stats_interval_secs},
    }


def history_stats(server: PushServer) -> dict[str, Any]:
    """Events and subjects kept in history (when the backplane tells), and the newest position."""
    backplane = server.backplane
    out: dict[str, Any] = {"position": getattr(backplane, "position", None)}
    log = getattr(backplane, "history_log", None)
    if log is not None:
        out["events"] = len(log)
        out["subjects"] = log.subject_count()
    return out


def backplane_stats(server: PushServer) -> dict[str, Any]:
    """The backplane's kind, whether it is up, its epoch, and this node's id (Redis)."""
    backplane = server.backplane
    out = {"kind": type(backplane).__name__, "up": bool(getattr(backplane, "connected", True)),
           "state": getattr(backplane, "state", "up"), "epoch": getattr(backplane, "epoch", None)}
    node = getattr(backplane, "node", None)
    if node is not None:
        out["node"] = node
    return out


class PushpyCollector:
    """A Prometheus collector reading a server's numbers on each scrape."""

    def __init__(self, server: PushServer) -> None:
        self.server = server

    def describe(self) -> list[Any]:
        return []  # the metric names are fixed; no collect() at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        snap = snapshot(self.server)
        sessions = snap["sessions"]
        events = snap["events"]

        gauge = GaugeMetricFamily("pushpy_sessions", "Sessions by transport and mode.",
                                  labels=["transport", "mode"])
        for row in sessions["by_transport_mode"]:
            gauge.add_metric([row["transport"], row["mode"]], row["count"])
        yield gauge
        gauge = GaugeMetricFamily("pushpy_connections", "Open data channels by transport.",
                                  labels=["transport"])
        for transport, count in sorted(snap["connections"]["by_transport"].items()):
            gauge.add_metric([transport], count)
        yield gauge
        yield GaugeMetricFamily("pushpy_subscriptions", "Subscriptions of all sessions.",
                                value=snap["subscriptions"])
        yield GaugeMetricFamily("pushpy_subjects", "Distinct subjects subscribed to.",
                                value=snap["subjects"])
        yield GaugeMetricFamily("pushpy_queued_events", "Events waiting in session queues.",
                                value=snap["queues"]["queued"])
        yield CounterMetricFamily("pushpy_sessions_joined", "Sessions created.", value=sessions["joined"])
        counter = CounterMetricFamily("pushpy_sessions_ended", "Sessions ended, by reason.",
                                      labels=["reason"])
        for reason, count in sorted(sessions["ended_by_reason"].items()):
            counter.add_metric([reason], count)
        yield counter
        for name, doc in (("published", "Events published by this process."),
                          ("received", "Events received from the backplane."),
                          ("delivered", "Event copies queued for sessions."),
                          ("dropped", "Events dropped from full session queues.")):
            yield CounterMetricFamily(f"pushpy_events_{name}", doc, value=events[name])
        yield CounterMetricFamily("pushpy_queue_overflows",
                                  "Times a session queue overflowed (one per episode).",
                                  value=snap["queues"]["overflows"])
        history = snap["history"]
        if "events" in history:
            yield GaugeMetricFamily("pushpy_history_events", "Events kept in history.",
                                    value=history["events"])
            yield GaugeMetricFamily("pushpy_history_subjects", "Subjects with a history.",
                                    value=history["subjects"])
        backplane = snap["backplane"]
        yield GaugeMetricFamily("pushpy_backplane_up", "1 when the backplane is connected.",
                                value=1 if backplane["up"] else 0)
        info = InfoMetricFamily("pushpy_backplane", "The backplane in use.")
        info.add_metric([], {"kind": backplane["kind"], "epoch": str(backplane["epoch"])})
        yield info
        counter = CounterMetricFamily("pushpy_request_errors", "Refused or failed requests, by kind.",
                                      labels=["kind"])
        for kind, count in sorted(snap["errors"]["by_kind"].items()):
            counter.add_metric([kind], count)
        yield counter
        yield GaugeMetricFamily("pushpy_uptime_seconds", "Seconds since the server started.",
                                value=snap["uptime"])


def registry(server: PushServer) -> Any:
    """A Prometheus registry with the server's collector and the process collector."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    out = CollectorRegistry(auto_describe=True)
    out.register(PushpyCollector(server))
    ProcessCollector(registry=out)
    return out
