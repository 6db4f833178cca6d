"""``<root>stats`` and ``<root>metrics`` scraped over loopback: the numbers move as the server works."""

from __future__ import annotations

import pytest_twisted
from server_support import eventually

from pushpy.core.sessions import EndReason
from pushpy.metrics import Counters, error_kind


def sample(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_twisted.ensureDeferred
async def test_stats_and_metrics_start_at_zero(pushpy_server):
    """A fresh server reports no sessions and no events, both as JSON and for Prometheus."""
    server = pushpy_server()
    stats = await server.stats()
    assert stats["sessions"]["total"] == 0 and stats["events"] == {
        "published": 0, "received": 0, "delivered": 0, "dropped": 0}
    assert stats["backplane"] == {"kind": "MemoryBackplane", "up": True, "state": "up",
                                  "epoch": server.push.backplane.epoch}
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_events_published_total") == 0
    assert sample(metrics, "pushpy_backplane_up") == 1
    assert sample(metrics, "pushpy_backplane_info", kind="MemoryBackplane",
                  epoch=server.push.backplane.epoch) == 1


@pytest_twisted.ensureDeferred
async def test_metrics_answer_the_prometheus_text_format(pushpy_server):
    """``<root>metrics`` is the Prometheus text format, not cached, with pushpy's and the process's
    metrics."""
    server = pushpy_server()
    code, headers, body = await server.get("metrics")
    assert code == 200
    assert headers.getRawHeaders("content-type")[0].startswith("text/plain; version=")
    assert "no-cache" in ",".join(headers.getRawHeaders("cache-control"))
    text = body.decode()
    assert "# TYPE pushpy_events_published_total counter" in text
    assert "# TYPE pushpy_sessions gauge" in text
    assert "process_cpu_seconds_total" in text


@pytest_twisted.ensureDeferred
async def test_sessions_by_transport_and_mode_follow_the_clients(pushpy_server):
    """Connected clients are counted by transport and mode, with their subscriptions and subjects; they
    leave the gauges when they go."""
    server = pushpy_server()
    ws = server.client()
    ws.subscribe("/a", lambda e: None)
    ws.subscribe("/b", lambda e: None)
    await ws.connect()
    sse = server.client(transport="sse")
    sse.subscribe("/a", lambda e: None)
    await sse.connect()
    await eventually(lambda: all(s.channels for s in server.push.dispatcher.sessions.values()))
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_sessions", transport="websocket", mode="stream") == 1
    assert sample(metrics, "pushpy_sessions", transport="sse", mode="stream") == 1
    assert sample(metrics, "pushpy_connections", transport="websocket") == 1
    assert sample(metrics, "pushpy_subscriptions") == 2  # the WebSocket's /a,/b is one subscription
    assert sample(metrics, "pushpy_subjects") == 2
    stats = await server.stats()
    assert stats["sessions"]["by_transport"] == {"websocket": 1, "sse": 1}
    assert stats["sessions"]["by_mode"] == {"stream": 2}
    await ws.close()
    await sse.close()
    for session in list(server.push.dispatcher.sessions.values()):
        server.push.dispatcher.end(session, EndReason.LEAVE)
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_sessions", transport="websocket", mode="stream") == 0
    assert sample(metrics, "pushpy_sessions_joined_total") == 2
    assert sample(metrics, "pushpy_sessions_ended_total", reason="leave") == 2


@pytest_twisted.ensureDeferred
async def test_pushlet_sessions_are_counted_with_their_mode(pushpy_server):
    """A Pushlet join counts as transport pushlet, mode joined; after a pull listen, mode pull."""
    server = pushpy_server()
    code, _, _ = await server.get("pushlet.srv?p_event=join&p_format=xml")
    assert code == 200
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_sessions", transport="pushlet", mode="joined") == 1
    [session] = server.push.dispatcher.sessions.values()
    await server.get(f"pushlet.srv?p_event=listen&p_id={session.id}&p_mode=pull&p_format=xml")
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_sessions", transport="pushlet", mode="pull") == 1


@pytest_twisted.ensureDeferred
async def test_published_delivered_and_history_count_events(pushpy_server):
    """Each publish counts once, each copy queued for a subscriber counts as delivered, and history grows."""
    server = pushpy_server()
    clients = []
    for _ in range(2):
        client = server.client()
        client.subscribe("/news", lambda e: None)
        await client.connect()
        clients.append(client)
    before = await server.metrics()
    for n in range(3):
        server.push.publish("/news/x", {"n": str(n)})
    server.push.publish("/nobody", {"n": "x"})
    after = await server.metrics()

    def grew(name: str) -> float:
        return sample(after, name) - sample(before, name)

    assert grew("pushpy_events_published_total") == 4
    assert grew("pushpy_events_received_total") == 4
    assert grew("pushpy_events_delivered_total") == 6
    assert sample(after, "pushpy_history_events") == 4
    assert sample(after, "pushpy_history_subjects") == 2
    stats = await server.stats()
    assert stats["history"]["position"] == server.push.backplane.position


@pytest_twisted.ensureDeferred
async def test_queue_overflow_counts_drops_and_one_overflow_per_episode(pushpy_server):
    """A session that does not read drops the oldest events: each drop counts, the episode counts once."""
    server = pushpy_server(queue_size=4)
    assert (await server.get("pushlet.srv?p_event=join&p_format=xml"))[0] == 200
    [session] = server.push.dispatcher.sessions.values()
    server.push.dispatcher.subscribe(session, "/q")
    server.push.dispatcher.listen(session, "pull", server.push.clock.seconds())
    for n in range(7):
        server.push.publish("/q", {"n": str(n)})
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_events_dropped_total") == 4  # 3 slots kept
    assert sample(metrics, "pushpy_queue_overflows_total") == 1
    assert sample(metrics, "pushpy_queued_events") == 3


@pytest_twisted.ensureDeferred
async def test_request_errors_are_counted_by_kind_with_their_reason(pushpy_server):
    """Refused requests count by kind, and the latest ones keep their path, status and reason."""
    server = pushpy_server()
    assert (await server.get("pushlet.srv"))[0] == 400
    assert (await server.get("pushlet.srv?p_event=listen&p_id=nosuchsession"))[0] == 400
    assert (await server.get("send?session=nope"))[0] in (404, 405)
    metrics = await server.metrics()
    assert sample(metrics, "pushpy_request_errors_total", kind="bad_request") == 2
    stats = await server.stats()
    recent = stats["errors"]["recent"]
    assert [(e["status"], e["path"]) for e in recent[:2]] == [(400, "/pushlet/pushlet.srv")] * 2
    assert recent[0]["reason"] == "No eventType specified"
    assert recent[1]["reason"] == "Invalid or expired id: nosuchsession"


@pytest_twisted.ensureDeferred
async def test_metrics_can_be_turned_off(pushpy_server):
    """With metrics.enabled off, neither endpoint is served."""
    server = pushpy_server(metrics_enabled=False)
    assert (await server.get("stats"))[0] == 404
    assert (await server.get("metrics"))[0] == 404


def test_error_kinds_by_status():
    """Statuses map to kinds; unknown ones fall back to client or server error."""
    assert [error_kind(s) for s in (400, 403, 404, 413, 414, 429, 503, 418, 502)] == [
        "bad_request", "forbidden", "not_found", "too_large", "too_large", "rate_limited",
        "unavailable", "client_error", "server_error"]


def test_recent_errors_are_bounded():
    """Only the latest errors are kept, however many happen."""
    counters = Counters(0.0)
    for n in range(200):
        counters.record_error("bad_request", when=float(n), status=400, reason=str(n))
    assert counters.errors == {"bad_request": 200}
    assert [e["reason"] for e in counters.recent_errors][-1] == "199"
    assert len(counters.recent_errors) == 50
