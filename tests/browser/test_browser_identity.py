"""pushpy.js in headless Chromium: users, presence, history and the session key, two browser contexts."""

from __future__ import annotations

import uuid

import pytest
from browser_support import SERVER_SETTINGS, Server

from pushpy.auth import mint_token

pytestmark = pytest.mark.browser

SECRET = "browser-identity-secret-0123456789"
FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}


@pytest.fixture(scope="module")
def server():
    """A locked-down server: every page needs a token naming its user."""
    running = Server(f"auth.token.secret={SECRET}", *SERVER_SETTINGS)
    yield running
    running.stop()


def token(user: str) -> str:
    return mint_token(SECRET, user, subscribe=["/t"], publish=["/t", "user:"], expires_in=600)


def ask(page, index: int, call: str, *args):
    """Run ``client.<call>(*args, callback)`` in the page; ``[error message or null, result]``."""
    return page.js("""([i, call, args]) => new Promise(function (resolve) {
        var c = H.clients[i].client;
        c[call].apply(c, args.concat([function (error, result) {
            resolve([error ? error.message : null, result]);
        }]));
    })""", [index, call, list(args)])


@pytest.mark.parametrize("transport", ["websocket", "sse", "iframe", "longpoll"])
def test_users_presence_history_and_session_key(open_page, server, transport):
    """Ann (one transport) and Bob (WebSocket) in separate contexts: a message to the user Ann reaches
    only her; presence and history answer; a dropped connection resumes the same session (the key is kept)."""
    room = f"/t{uuid.uuid4().hex[:10]}"
    ann_page, bob_page = open_page(), open_page()
    ann = ann_page.open([room], transport=transport, token=token("ann"), **FAST)
    bob = bob_page.open([room], transport="websocket", token=token("bob"), **FAST)
    ids = server.publish(room, numbers=(1, 3))
    ann_page.wait_received(ann, 3)
    error, ack = bob_page.js("""([i]) => new Promise(function (resolve) {
        H.clients[i].client.publish(null, {text: 'psst'}, {user: 'ann'}, function (e, a) {
            resolve([e ? e.message : null, a]); }); })""", [bob])
    assert error is None and ack["user"] == "ann" and ack["id"]  # kept for resumes: it has an id
    ann_page.wait("([i]) => H.clients[i].all.some(function (e) { return e.fields.text === 'psst'; })", [ann])
    private = [e for e in ann_page.js("([i]) => H.clients[i].all", [ann])
               if e["fields"].get("text") == "psst"]
    assert private[0]["fields"]["p_user"] == "bob"
    error, _ = ask(bob_page, bob, "publish", room, {"text": "spoof"}, {"user": "ann"})
    assert error is None  # labelled with Ann's room, yet no subscription of hers gets it
    ann_page.wait("([i]) => H.clients[i].all.some(function (e) { return e.fields.text === 'spoof'; })", [ann])
    assert ann_page.js("([i]) => H.clients[i].got.some(function (e) { return e.fields.text === 'spoof'; })",
                       [ann]) is False
    error, _ = ask(bob_page, bob, "publish", None, {"text": "x"}, {"user": "zed"})
    assert error == "pushpy: user has no session: zed"
    error, users = ask(bob_page, bob, "presence", room)
    assert error is None and users == {"ann": 1, "bob": 1}
    error, events = ask(ann_page, ann, "history", room, 2)
    assert error is None and [e["id"] for e in events] == ids[1:]
    error, _ = ask(ann_page, ann, "history", "/secret", 2)
    assert error == "pushpy: not allowed to subscribe to /secret"
    session = ann_page.state(ann)["session"]
    dropped = server.drop(session)
    if dropped and transport != "longpoll":  # a long-poll simply asks again
        ann_page.wait("([i]) => H.clients[i].opens.length >= 2", [ann])
    server.publish(room, {"n": "4"})
    ann_page.wait_received(ann, 4)
    assert ann_page.state(ann)["session"] == session
    assert bob_page.js("([i]) => H.clients[i].all.some(function (e) { return e.fields.text === 'psst'; })",
                       [bob]) is False
    ann_page.js("([i]) => H.clients[i].client.leave()", [ann])
    for _ in range(100):  # leave ends the session at once: presence follows
        error, users = ask(bob_page, bob, "presence", room)
        if users == {"bob": 1}:
            break
        bob_page.js("() => new Promise(function (resolve) { setTimeout(resolve, 50); })")
    assert users == {"bob": 1}
