"""pushpy.js leaves when its page is closed for good, not when it goes to the back/forward cache.

Ann and Bob are two users in separate browser contexts; Bob follows the room's presence.  Sessions keep
the default lease (``native.session.timeout.secs`` 60 s), so a ``leave`` within seconds of Ann's page
closing can only come from the leave pushpy.js sends on ``pagehide``.
"""

from __future__ import annotations

import uuid

import pytest
from browser_support import SERVER_SETTINGS, Page, Server
from chromium import CHROMIUM, CHROMIUM_ARGS

from pushpy.auth import mint_token

pytestmark = pytest.mark.browser

SECRET = "browser-unload-secret-0123456789abc"
FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}
PRESENCE = "([i, action]) => H.clients[i].got.some(function (e) { return e.fields.action === action; })"


@pytest.fixture(scope="module")
def server():
    """A server where every page needs a token naming its user; sessions keep the 60 s default lease."""
    running = Server(f"auth.token.secret={SECRET}", *SERVER_SETTINGS)
    yield running
    running.stop()


def token(user: str) -> str:
    return mint_token(SECRET, user, subscribe=["/u", "/presence/u"], publish=["/u"], expires_in=600)


def watch(open_page, room: str) -> tuple[Page, int]:
    """Bob's page, following the presence of ``room`` over WebSocket."""
    page = open_page()
    return page, page.open([f"/presence{room}"], transport="websocket", token=token("bob"), **FAST)


def sleep_in(page: Page, millis: int) -> None:
    page.js("ms => new Promise(function (resolve) { setTimeout(resolve, ms); })", millis)


@pytest.mark.parametrize("transport, how", [
    ("websocket", "page"), ("websocket", "context"), ("sse", "page"), ("sse", "context"),
    ("longpoll", "page"), ("longpoll", "context"), ("iframe", "page"), ("poll", "context")])
def test_closing_the_page_leaves_presence_at_once(open_page, server, transport, how):
    """Closing Ann's tab (or her whole browser context) makes Bob see her leave within seconds."""
    room = f"/u{uuid.uuid4().hex[:10]}"
    bob_page, bob = watch(open_page, room)
    ann_page = open_page()
    ann_page.open([room], transport=transport, token=token("ann"), **FAST)
    bob_page.wait(PRESENCE, [bob, "join"])
    if how == "page":
        ann_page.page.close(run_before_unload=True)
    else:
        ann_page.page.context.close()
    bob_page.wait(PRESENCE, [bob, "leave"], timeout=5_000)


def test_navigating_away_leaves_presence(open_page, server):
    """Following a link to another page ends the session as closing the tab does."""
    room = f"/u{uuid.uuid4().hex[:10]}"
    bob_page, bob = watch(open_page, room)
    ann_page = open_page()
    ann_page.open([room], transport="sse", token=token("ann"), **FAST)
    bob_page.wait(PRESENCE, [bob, "join"])
    ann_page.page.goto("about:blank")
    bob_page.wait(PRESENCE, [bob, "leave"], timeout=5_000)


def test_leave_on_unload_false_keeps_the_session(open_page, server):
    """With ``leaveOnUnload: false`` a closed page's session stays until its lease ends (a quick reload
    could continue it); an explicit ``leave()`` still ends it."""
    room = f"/u{uuid.uuid4().hex[:10]}"
    bob_page, bob = watch(open_page, room)
    ann_page = open_page()
    ann_page.open([room], transport="sse", token=token("ann"), leaveOnUnload=False, **FAST)
    bob_page.wait(PRESENCE, [bob, "join"])
    ann_page.page.close(run_before_unload=True)
    sleep_in(bob_page, 1500)  # a beacon arrives within ~100 ms (see the test above)
    users = bob_page.js("""([i, room]) => new Promise(function (resolve) {
        H.clients[i].client.presence(room, function (e, users) { resolve(users); }); })""", [bob, room])
    assert users == {"ann": 1}
    assert bob_page.js(PRESENCE, [bob, "leave"]) is False


# -- the back/forward cache ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bfcache_browser(browser):
    """Chromium with its back/forward cache on (Playwright turns it off by default)."""
    launched = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           ignore_default_args=["--disable-back-forward-cache"])
    yield launched
    launched.close()


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_back_forward_cache_keeps_the_session(open_page, server, bfcache_browser, transport):
    """A page that goes to the back/forward cache and comes back keeps its session and presence (no leave)
    and receives events again."""
    room = f"/u{uuid.uuid4().hex[:10]}"
    bob_page, bob = watch(open_page, room)
    context = bfcache_browser.new_context()
    try:
        cacheable = server.origin + "/test/cacheable.html"  # page.html is no-store: never cached
        ann_page = Page(context.new_page(), cacheable)
        ann_page.js("""() => { window.restored = []; window.addEventListener('pageshow', function (e) {
            window.restored.push(e.persisted); }); }""")
        ann = ann_page.open([room], transport=transport, token=token("ann"), **FAST)
        bob_page.wait(PRESENCE, [bob, "join"])
        session = ann_page.state(ann)["session"]
        ann_page.page.goto(cacheable + "?elsewhere")
        ann_page.page.go_back(wait_until="commit")
        ann_page.wait("() => window.restored && window.restored.length > 0")
        assert ann_page.js("() => window.restored") == [True]  # the same document, from the cache
        server.publish(room, {"n": "1"})
        ann_page.wait_received(ann, 1)
        assert ann_page.state(ann)["session"] == session
        sleep_in(bob_page, 300)
        assert bob_page.js(PRESENCE, [bob, "leave"]) is False
    finally:
        context.close()
