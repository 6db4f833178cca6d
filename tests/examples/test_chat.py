"""The chat example (``examples/chat``) in headless Chromium: several users, each in a browser context."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request

import pytest
from example_support import wait_for

pytestmark = pytest.mark.browser

_names = itertools.count(1)

#: Messages of the conversation on screen, as [from, text] pairs.
SHOWN = ("() => Array.from(document.querySelectorAll('#messages .message'))"
         ".map(li => [li.querySelector('.from').textContent, li.querySelector('.text').textContent])")
HAS_TEXT = ("t => Array.from(document.querySelectorAll('#messages .message .text'))"
            ".some(e => e.textContent === t)")


@pytest.fixture(scope="module")
def app(start_example):
    """The chat app; a user whose pages are gone leaves the online list after 3 s."""
    return start_example("chat", "--session-timeout", "3")


def unique(name: str) -> str:
    return f"{name}{next(_names)}"


def login(open_page, app, name: str, transport: str | None = None):
    """A page of a new browser context, logged in as ``name`` and connected."""
    page = open_page(app.url("/" + (f"?transport={transport}" if transport else "")))
    page.fill("#login-name", name)
    page.click("#login-button")
    wait_for(page, "() => window.chat.transport")
    if transport:
        assert page.evaluate("() => window.chat.client.transport") == transport
    return page


def say(page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def open_conversation(page, key: str) -> None:
    page.click(f"li[data-key='{key}'] button")
    wait_for(page, "k => window.chat.current === k && window.chat.conversations[k].loaded", key)


def test_room_over_websocket_iframe_and_longpoll_with_history(app, open_page):
    """Users on WebSocket, hidden iframe and long-poll talk in a new room; a late joiner sees its history."""
    ann = login(open_page, app, unique("ann"), "websocket")
    bob = login(open_page, app, unique("bob"), "iframe")
    room = unique("room")
    ann.fill("#room-name", room)
    ann.click("#room-form button")
    wait_for(ann, "k => window.chat.current === k && window.chat.conversations[k].loaded", f"room:{room}")
    wait_for(bob, "k => document.querySelector(`li[data-key='${k}']`)", f"room:{room}")
    open_conversation(bob, f"room:{room}")
    say(ann, "hello from the websocket")
    wait_for(bob, HAS_TEXT, "hello from the websocket")
    say(bob, "hello from the iframe")
    wait_for(ann, HAS_TEXT, "hello from the iframe")
    carol = login(open_page, app, unique("carol"), "longpoll")
    open_conversation(carol, f"room:{room}")
    wait_for(carol, "() => document.querySelectorAll('#messages .message').length === 2")
    shown = [text for _, text in carol.evaluate(SHOWN)]
    assert shown == ["hello from the websocket", "hello from the iframe"]
    say(carol, "and from long-poll")
    for page in (ann, bob):
        wait_for(page, HAS_TEXT, "and from long-poll")
    assert ann.evaluate(SHOWN) == bob.evaluate(SHOWN)
    # leaving the room stops its messages
    bob.click("#leave")
    wait_for(bob, "k => !window.chat.conversations[k].joined", f"room:{room}")
    say(ann, "bob is gone")
    wait_for(carol, HAS_TEXT, "bob is gone")
    assert bob.evaluate("k => window.chat.conversations[k].messages.length", f"room:{room}") == 0


def test_private_message_reaches_every_tab_of_its_recipient_only(app, open_page):
    """A private message reaches both tabs of its recipient and the sender, and nobody else."""
    names = [unique("ann"), unique("bob"), unique("carol")]
    ann, bob, carol = (login(open_page, app, name) for name in names)
    bob_tab = bob.context.new_page()
    bob_tab.goto(app.url("/?transport=longpoll"))  # the same user, by the cookie
    wait_for(bob_tab, "() => window.chat.transport && window.chat.user")
    wait_for(ann, "k => document.querySelector(`#online li[data-key='${k}'] button`)", f"user:{names[1]}")
    open_conversation(ann, f"user:{names[1]}")
    say(ann, "just for bob")
    for page in (bob, bob_tab):
        wait_for(page, "([k, t]) => (window.chat.conversations[k] || {messages: []}).messages"
                 ".some(m => m.text === t)", [f"user:{names[0]}", "just for bob"])
    assert bob.evaluate("k => window.chat.conversations[k].unread", f"user:{names[0]}") == 1
    wait_for(ann, HAS_TEXT, "just for bob")
    # a later message to carol arrives after it would have: carol never saw bob's
    open_conversation(ann, f"user:{names[2]}")
    say(ann, "now for carol")
    wait_for(carol, "k => window.chat.conversations[k] && window.chat.conversations[k].messages.length",
             f"user:{names[0]}")
    seen = carol.evaluate("() => Object.values(window.chat.conversations)"
                          ".flatMap(c => c.messages.map(m => m.text))")
    assert "now for carol" in seen and "just for bob" not in seen


def test_online_list_follows_users_coming_and_going(app, open_page):
    """A user who logs in appears in the others' online list; closing their browser removes them."""
    ann_name, bob_name = unique("ann"), unique("bob")
    ann = login(open_page, app, ann_name, "sse")
    bob = login(open_page, app, bob_name, "iframe")
    wait_for(ann, "n => window.chat.online[n]", bob_name)
    wait_for(ann, "k => document.querySelector(`#online li[data-key='${k}']`)", f"user:{bob_name}")
    wait_for(bob, "n => window.chat.online[n]", ann_name)
    bob.context.close()
    wait_for(ann, "k => !document.querySelector(`#online li[data-key='${k}']`)", f"user:{bob_name}")
    assert ann.evaluate("n => window.chat.online[n]", ann_name)


def test_logging_out_leaves_the_online_list_at_once(start_example, open_page):
    """Log out sends pushpy's ``leave``: the others see the user go well before the session timeout."""
    patient = start_example("chat", "--session-timeout", "60")
    ann_name, bob_name = unique("ann"), unique("bob")
    ann = login(open_page, patient, ann_name)
    bob = login(open_page, patient, bob_name, "longpoll")
    wait_for(ann, "n => window.chat.online[n]", bob_name)
    bob.click("#logout")
    wait_for(bob, "() => !document.getElementById('login').hidden")
    wait_for(ann, "n => !window.chat.online[n]", bob_name, timeout=10_000)


def test_typing_indicator(app, open_page):
    """Typing in a room shows '<name> is typing…' to the others in it, not to the typist."""
    ann_name = unique("ann")
    ann = login(open_page, app, ann_name, "longpoll")
    bob = login(open_page, app, unique("bob"), "websocket")
    ann.type("#text", "hel")
    wait_for(bob, "n => document.getElementById('typing').textContent.indexOf(n + ' is typing') === 0",
             ann_name)
    assert ann.evaluate("() => document.getElementById('typing').textContent") == ""


def test_groups_are_for_their_members(app, open_page):
    """A new group appears at once on its members' pages and carries their messages; others are refused."""
    ann_name, bob_name = unique("ann"), unique("bob")
    ann = login(open_page, app, ann_name)
    bob = login(open_page, app, bob_name, "iframe")
    carol = login(open_page, app, unique("carol"))
    ann.fill("#group-name", "team")
    ann.fill("#group-members", f" {bob_name} ")
    ann.click("#group-form button")
    key = wait_for(ann, "() => window.chat.current && window.chat.current.indexOf('group:') === 0 &&"
                   " window.chat.conversations[window.chat.current].loaded && window.chat.current")
    wait_for(bob, "k => document.querySelector(`#groups li[data-key='${k}']`)", key)
    say(ann, "team only")
    wait_for(bob, "k => window.chat.conversations[k].messages.some(m => m.text === 'team only')", key)
    group = key.split(":", 1)[1]
    refused = carol.evaluate("""g => Promise.all([
        fetch('/pushlet/history?subject=/chat/group/' + g + '/msg').then(r => r.status),
        new Promise(done => window.chat.client.send(
            {type: 'subscribe', subject: '/chat/group/' + g + '/msg'}, (e) => done(e && e.message)))])""",
                             group)
    assert refused[0] == 403
    assert "not allowed" in refused[1]


def test_nobody_speaks_for_someone_else_or_where_not_allowed(app, open_page):
    """A forged ``p_user`` is replaced by the publisher's user; publishes the authorizer refuses, and
    private messages to unknown or offline users, are refused with a reason."""
    mallory_name, ghost = unique("mallory"), unique("ghost")
    mallory = login(open_page, app, mallory_name)
    reader = login(open_page, app, unique("reader"), "longpoll")
    assert app.request("/api/login", {"name": ghost}) == (200, {"user": ghost})  # never connects
    errors = mallory.evaluate("""ghost => Promise.all([
        ['/chat/room/general/msg', {p_user: 'ann', text: 'forged'}, null],
        ['/chat/rooms', {kind: 'room', room: 'fake'}, null],
        ['/chat/room/no-such-room/msg', {text: 'x'}, null],
        ['/chat/private', {text: 'x'}, {user: 'nobody-at-all'}],
        ['/chat/private', {text: 'x'}, {user: ghost}],
    ].map(([subject, fields, extra]) => new Promise(done => window.chat.client.publish(
        subject, fields, extra || {}, e => done(e ? e.message : null)))))""", ghost)
    assert errors == [None, "pushpy: not allowed to publish to /chat/rooms",
                      "pushpy: not allowed to publish to /chat/room/no-such-room/msg",
                      "pushpy: not allowed to publish to user:nobody-at-all",
                      f"pushpy: user has no session: {ghost}"]
    wait_for(reader, HAS_TEXT, "forged")
    assert [text for sender, text in reader.evaluate(SHOWN) if sender == mallory_name] == ["forged"]
    assert not [text for sender, text in reader.evaluate(SHOWN) if sender == "ann"]


def test_hostile_names_and_messages_are_inert(app, open_page):
    """Markup in a name and a message is shown as text: no element is made, no script runs."""
    hostile = "<img src=x onerror=pwned=1>"
    evil = login(open_page, app, hostile)
    reader = login(open_page, app, unique("reader"), "iframe")
    say(evil, '<script>window.pwned=2</script><img src=x onerror="window.pwned=3"><b>bold</b>')
    wait_for(reader, "h => Array.from(document.querySelectorAll('#messages .from'))"
             ".some(e => e.textContent === h)", hostile)
    wait_for(reader, "n => window.chat.online[n]", hostile)
    found = reader.evaluate("""() => ({
        pwned: window.pwned,
        elements: document.querySelectorAll('#main img, #main script, #main b').length,
        text: Array.from(document.querySelectorAll('#messages .text')).map(e => e.textContent)})""")
    assert found["pwned"] is None and found["elements"] == 0
    assert '<script>window.pwned=2</script><img src=x onerror="window.pwned=3"><b>bold</b>' in found["text"]



def post_raw(app, path: str, data: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(app.url(path), data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_bad_input(app):
    """The app's JSON API answers bad requests with a status and a reason, and keeps serving."""
    assert app.request("/api/login", {"name": "  "}) == \
        (400, {"error": "a name is 1 to 32 printable characters"})
    assert app.request("/api/login", {"name": "x" * 33})[0] == 400
    assert app.request("/api/login", ["not", "an", "object"]) == (400, {"error": "send a JSON object"})
    assert post_raw(app, "/api/login", b"{oops") == (400, {"error": "malformed JSON"})
    assert post_raw(app, "/api/login", b'{"name": "ann"}', "text/plain")[0] == 415
    assert post_raw(app, "/api/login", b" " * 20000)[0] == 413
    assert app.request("/api/nothing") == (404, {"error": "not found"})
    assert app.request("/api/me") == (401, {"error": "log in first"})
    assert app.request("/api/me", method="PUT")[0] == 405
    assert app.request("/api/me", headers={"Cookie": "pushpy_token=forged.token"}) == \
        (401, {"error": "log in again"})
    name = unique("fine")
    assert app.request("/api/login", {"name": name}) == (200, {"user": name})
