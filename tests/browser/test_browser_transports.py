"""pushpy.js in headless Chromium, each transport forced: delivery, publishing, escaping, resume."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.browser

TRANSPORTS = ["websocket", "sse", "xhr", "iframe", "longpoll", "poll"]
#: Client options that keep the tests fast.
FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}

MARKUP = {
    "chinese": "推送服务器：你好，世界！",  # noqa: RUF001
    "img": '<img src=x onerror="window.top.pwned=1;alert(1)">',
    "script": "</script><script>window.top.pwned=2;alert(2)</script>",
    "entities": "&lt;b&gt; &amp; \"quotes\" 'single'",
    "separators": "line\u2028para\u2029tab\tnl\n",
    "emoji": "😀 back\\slash",
}


def subject() -> str:
    """A subject no other test uses."""
    return f"/t{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_and_receive(page, server, transport):
    """A client forced onto each transport opens and receives what the server publishes."""
    topic = subject()
    client = page.open([topic], transport=transport, **FAST)
    ids = server.publish(topic + "/a", {"text": "one"}) + server.publish(topic, {"text": "two"})
    server.publish(subject(), {"text": "not for us"})
    page.wait_received(client, 2)
    got = page.got(client)
    assert [(e["subject"], e["id"], e["fields"]["text"]) for e in got] == [
        (topic + "/a", ids[0], "one"), (topic, ids[1], "two")]
    assert got[0]["fields"]["p_subject"] == topic + "/a"
    state = page.state(client)
    assert (state["transport"], state["state"], state["lastEventId"]) == (transport, "open", ids[1])
    assert state["transports"] == [transport]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_publish_from_page_reaches_other_page(open_page, transport):
    """A publish from a page (over the transport's send path) reaches a client in another browser context."""
    topic = subject()
    sender_page, receiver_page = open_page(), open_page()
    receiver = receiver_page.open([topic], transport=transport, **FAST)
    sender = sender_page.open([], transport=transport, **FAST)
    error, ack = sender_page.publish(sender, topic + "/chat", {"text": "hi", "count": 3, "ok": True})
    assert error is None
    assert ack["type"] == "ack" and ack["op"] == "publish" and ack["id"]
    receiver_page.wait_received(receiver, 1)
    (event,) = receiver_page.got(receiver)
    assert event["id"] == ack["id"]
    assert {k: event["fields"][k] for k in ("text", "count", "ok")} == {
        "text": "hi", "count": "3", "ok": "true"}
    assert event["fields"]["p_from"] == sender_page.state(sender)["session"]
    error, nack = sender_page.publish(sender, topic, {"bad name": "x"})
    assert error.startswith("pushpy: invalid field name") and nack["type"] == "nack"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unicode_and_markup_arrive_intact_and_inert(page, server, transport):
    """Chinese text and markup-like values arrive unchanged and never run as script or markup."""
    topic = subject()
    client = page.open([topic], transport=transport, **FAST)
    server.publish(topic + "/server", MARKUP)
    error, _ = page.publish(client, topic + "/page", MARKUP)
    assert error is None
    page.wait_received(client, 2)
    for event in page.got(client):
        assert {k: event["fields"][k] for k in MARKUP} == MARKUP
    page.page.wait_for_timeout(100)  # let any injected image or script run
    assert page.dialogs == []
    assert page.js("() => window.pwned") is None
    for frame in page.page.frames:
        assert frame.evaluate("() => document.querySelectorAll('img').length") == 0


@pytest.mark.parametrize(("transport", "how"), [
    *[(t, "abort") for t in TRANSPORTS if t != "poll"],  # a poll holds no connection to cut
    *[(t, "end") for t in TRANSPORTS],
])
def test_resume_after_server_drop_loses_nothing(page, server, transport, how):
    """After the server cuts the connection (or ends the session), every event arrives once, in order."""
    topic = subject()
    client = page.open([topic], transport=transport, **FAST)
    server.publish(topic, numbers=(1, 5))
    page.wait_received(client, 5)
    session = page.state(client)["session"]
    if how == "abort":
        assert server.drop(session) == 1
    else:
        assert server.end(session) is True
    server.publish(topic, numbers=(6, 10))  # while the client is away
    page.wait_received(client, 10)
    server.publish(topic, numbers=(11, 15))
    page.wait_received(client, 15)
    page.page.wait_for_timeout(200)  # no duplicate trails behind
    assert page.numbers(client, topic) == list(range(1, 16))
    state = page.state(client)
    assert state["transport"] == transport and state["gaps"] == []
    # An ended session is replaced; a cut connection resumes the same one.  (Chromium retries
    # a long-poll whose reused connection was reset by itself, so the client may not notice.)
    assert (state["session"] == session) is (how == "abort")
    if how == "end" and transport != "poll":
        assert state["closes"] == 1  # told by the server's "close" message
    if how == "abort" and transport != "longpoll":
        assert state["closes"] == 1 and state["opens"] == 2
