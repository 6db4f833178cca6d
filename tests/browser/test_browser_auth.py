"""pushpy.js with a signed token on a locked-down server (``auth.token.secret``), in headless Chromium."""

from __future__ import annotations

import uuid

import pytest
from browser_support import SERVER_SETTINGS, Server

from pushpy.auth import mint_token

pytestmark = pytest.mark.browser

SECRET = "browser-test-secret-0123456789"
FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}


@pytest.fixture(scope="module")
def server():
    """A server that requires a token for everything."""
    running = Server(f"auth.token.secret={SECRET}", *SERVER_SETTINGS)
    yield running
    running.stop()


@pytest.mark.parametrize("transport", ["websocket", "sse", "xhr", "iframe", "longpoll", "poll"])
def test_token_option_authenticates_every_request(page, server, transport):
    """With ``token``, the client connects, receives its granted subject and publishes where granted;
    a refused publish comes back as an error with the reason."""
    topic = f"/auth{uuid.uuid4().hex[:8]}"
    token = mint_token(SECRET, "alice", subscribe=[topic + "/"], publish=[topic + "/chat/"])
    client = page.open([topic + "/"], transport=transport, token=token, **FAST)
    server.publish(topic + "/news", {"text": "granted"})
    page.wait_received(client, 1)
    error, ack = page.publish(client, topic + "/chat/1", {"text": "mine"})
    assert error is None and ack["type"] == "ack"
    error, nack = page.publish(client, topic + "/news", {"text": "forged"})
    assert nack["type"] == "nack" and nack["reason"] == f"not allowed to publish to {topic}/news"
    page.wait_received(client, 2)
    assert [e["fields"]["text"] for e in page.got(client)] == ["granted", "mine"]


def test_without_a_token_the_client_never_opens(page, server):
    """Without a token every transport is refused, so the client reports errors and never opens."""
    client = page.start(["/x/"], transports=["sse", "longpoll"], **FAST)
    page.page.wait_for_timeout(1500)
    state = page.state(client)
    assert state["opens"] == 0 and state["state"] != "open"
