"""pushpy.js in headless Chromium: fallback, downgrade behind a buffering proxy, recycling, gaps."""

from __future__ import annotations

import uuid

import pytest
from browser_support import SERVER_SETTINGS, Server

pytestmark = pytest.mark.browser

FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}
STREAMING = ["websocket", "sse", "xhr", "iframe"]


def subject() -> str:
    return f"/t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def small_server():
    """A server that recycles streaming responses after 4 KB."""
    running = Server("stream.max.bytes=4096", *SERVER_SETTINGS)
    yield running
    running.stop()


def test_works_without_websocket_and_eventsource(open_page, server):
    """With window.WebSocket and window.EventSource deleted, the client picks XHR streaming and works."""
    page = open_page(init_script="delete window.WebSocket; delete window.EventSource;")
    assert page.js("() => [typeof WebSocket, typeof EventSource]") == ["undefined", "undefined"]
    topic = subject()
    client = page.open([topic], **FAST)
    server.publish(topic, {"text": "hello"})
    error, ack = page.publish(client, topic, {"text": "from page"})
    assert error is None and ack["id"]
    page.wait_received(client, 2)
    assert [e["fields"]["text"] for e in page.got(client)] == ["hello", "from page"]
    state = page.state(client)
    assert state["transports"] == ["xhr"] and state["errors"] == []


def test_falls_back_when_websocket_fails_to_open(open_page, server):
    """A WebSocket that cannot connect is replaced by the next transport, SSE."""
    refused = """
      (function () {
        var Real = window.WebSocket;
        window.WebSocket = function (url) {
          return new Real(url.replace(/:\\/\\/[^\\/]+/, '://127.0.0.1:9'));
        };
      })();"""
    page = open_page(init_script=refused)
    topic = subject()
    client = page.open([topic], **FAST)
    server.publish(topic, {"text": "via sse"})
    page.wait_received(client, 1)
    state = page.state(client)
    assert state["transports"] == ["websocket", "sse"]
    assert state["errors"] == ["websocket closed (1006)"]


@pytest.mark.parametrize("first", STREAMING)
def test_downgrades_to_longpoll_behind_buffering_proxy(open_page, server, first):
    """Behind a proxy holding streamed bytes back, the client switches to long-poll and keeps delivering."""
    page = open_page(url=server.proxy + "/test/page.html")
    topic = subject()
    client = page.start([topic], transports=[first, "longpoll", "poll"], openTimeout=1500, **FAST)
    page.wait_opens(client, 1)
    server.publish(topic, numbers=(1, 3))
    error, ack = page.publish(client, topic, {"n": "4"})
    assert error is None and ack["id"]
    page.wait_received(client, 4)
    server.publish(topic, numbers=(5, 6))
    page.wait_received(client, 6)
    assert page.numbers(client, topic) == [1, 2, 3, 4, 5, 6]
    state = page.state(client)
    assert state["transports"] == [first, "longpoll"]
    assert state["errors"] == ["timeout"]
    assert state["url"].startswith(server.proxy)


def test_default_client_downgrades_from_websocket_behind_buffering_proxy(open_page, server):
    """With the default transport list, a held WebSocket upgrade leads straight to long-poll."""
    page = open_page(url=server.proxy + "/test/page.html")
    topic = subject()
    client = page.start([topic], openTimeout=1500, **FAST)
    page.wait_opens(client, 1)
    server.publish(topic, {"n": "1"})
    page.wait_received(client, 1)
    assert page.state(client)["transports"] == ["websocket", "longpoll"]


@pytest.mark.parametrize("transport", ["sse", "xhr", "iframe"])
def test_recycled_streams_lose_nothing(open_page, small_server, transport):
    """A stream recycled after stream.max.bytes reconnects and resumes: every event once, in order."""
    page = open_page(url=small_server.page_url)
    topic = subject()
    client = page.open([topic], transport=transport, **FAST)
    padding = "x" * 400
    for first in range(1, 41, 10):
        small_server.publish(topic, {"pad": padding}, numbers=(first, first + 9))
        page.wait_received(client, first + 9)
    page.page.wait_for_timeout(200)
    assert page.numbers(client, topic) == list(range(1, 41))
    state = page.state(client)
    assert state["opens"] >= 3 and state["transports"] == [transport] and state["gaps"] == []


@pytest.mark.parametrize(("position", "reason"), [("history", "history trimmed"),
                                                   ("deadbeef:3", "unknown epoch")])
def test_gap_is_reported_when_history_cannot_fill_it(page, server, position, reason):
    """Resuming from a position the history no longer covers raises a 'gap' event with the reason."""
    topic = subject()
    if position == "history":
        position = server.publish(topic, {"n": "0"})[0]
        server.publish(topic, numbers=(1, 120))  # history keeps 100 per subject
    client = page.open([topic], transport="websocket", lastEventId=position, **FAST)
    page.wait("i => H.clients[i].gaps.length > 0", client)
    gaps = page.state(client)["gaps"]
    assert gaps == [{"reason": reason, "recovered": False, "dropped": None}]


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
def test_runtime_subscriptions_survive_a_new_session(page, server, transport):
    """Subjects added at runtime are resumed in a new session, and unsubscribing one of them works after."""
    a, b = subject(), subject()
    client = page.open([a], transport=transport, **FAST)
    page.js("([i, s]) => H.subscribe(i, s)", [client, b])
    page.page.wait_for_timeout(300)  # the subscribe message is acknowledged
    server.publish(b, {"n": "1"})
    page.wait_received(client, 1)
    assert server.end(page.state(client)["session"])
    server.publish(b, {"n": "2"})  # while the client has no session
    server.publish(a, {"n": "3"})
    page.wait_received(client, 3)
    page.js("([i, s]) => H.clients[i].client.unsubscribe(s)", [client, a])
    page.page.wait_for_timeout(300)
    server.publish(a, {"n": "4"})
    server.publish(b, {"n": "5"})
    page.wait_received(client, 4)
    page.page.wait_for_timeout(300)
    assert [(e["subject"], e["fields"]["n"]) for e in page.got(client)] == [
        (b, "1"), (b, "2"), (a, "3"), (b, "5")]
    assert page.state(client)["errors"] == []


@pytest.mark.parametrize("transport", ["websocket", "xhr"])
def test_unicast_from_page_reaches_only_the_addressed_session(open_page, transport):
    """A publish with {to: session} reaches that client's 'event' listeners only, with its id."""
    pages = [open_page() for _ in range(3)]
    clients = [p.open([], transport=transport, **FAST) for p in pages]
    target = pages[1].state(clients[1])["session"]
    error, ack = pages[0].publish(clients[0], "/private", {"text": "psst"}, to=target)
    assert error is None and ack["id"]
    pages[1].wait("i => H.clients[i].all.length > 0", clients[1])
    (event,) = pages[1].js("i => H.clients[i].all", clients[1])
    assert (event["subject"], event["id"], event["fields"]["text"]) == ("/private", ack["id"], "psst")
    pages[2].page.wait_for_timeout(200)
    assert pages[0].js("i => H.clients[i].all", clients[0]) == []
    assert pages[2].js("i => H.clients[i].all", clients[2]) == []


def test_close_stops_the_client(page, server):
    """After close() the client stays closed, receives nothing and fails new publishes."""
    topic = subject()
    client = page.open([topic], transport="websocket", **FAST)
    page.js("i => H.clients[i].client.close()", client)
    server.publish(topic, {"n": "1"})
    error, ack = page.publish(client, topic, {"n": "2"})
    page.page.wait_for_timeout(300)
    state = page.state(client)
    assert (state["state"], state["received"], state["opens"]) == ("closed", 0, 1)
    assert error == "pushpy: client closed" and ack is None


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_revoked_subjects_are_dropped_and_a_disconnect_closes_for_good(page, server, transport):
    """The server takes a subject back: the client drops it (and what is under it), a new connection
    does not ask for it again.  The application ends the session: the client closes, for good."""
    kept, taken = subject(), subject()
    client = page.open([kept, f"{taken}/a", taken], transport=transport, **FAST)
    session = page.state(client)["session"]
    server.revoke(session, taken)
    page.wait("i => H.clients[i].revoked.length", client)
    assert page.js("i => H.clients[i].revoked", client) == [
        {"subject": taken, "reason": "revoked by test", "subjects": [f"{taken}/a", taken]}]
    assert page.js("i => H.clients[i].client._subs.map(s => s.subject)", client) == [kept]
    server.drop(session)  # the connection is cut: the client reconnects, to the same session
    if transport != "longpoll":  # (a long-poll just polls again)
        page.wait_opens(client, 2)
    opens = page.state(client)["opens"]
    server.publish(taken, {"n": "1"})
    server.publish(f"{taken}/a", {"n": "2"})
    server.publish(kept, {"n": "3"})
    page.wait_received(client, 1)
    assert [e["fields"]["n"] for e in page.got(client)] == ["3"]
    assert server.subscriptions(page.state(client)["session"]) == [kept]
    server.revoke(page.state(client)["session"])
    page.wait("i => H.clients[i].client.state === 'closed'", client)
    page.page.wait_for_timeout(500)
    state = page.state(client)
    assert (state["state"], state["opens"]) == ("closed", opens)
    closes = page.js("i => H.clients[i].closes", client)
    assert closes[-1] == {"reason": "closed by server: disconnected by test", "reconnecting": False,
                          "wasOpen": True}
