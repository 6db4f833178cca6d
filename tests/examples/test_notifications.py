"""The notifications example (``examples/notifications``) in headless Chromium: per-user delivery over
pushpy's HTTP publish API and from Python, toasts and desktop notifications, unread counts, mark-as-read."""

from __future__ import annotations

import pytest
from example_support import wait_for

pytestmark = pytest.mark.browser

API_KEY = "example-test-key"
PAGE = "/notifications/"
RECEIVED = "() => window.notifications.received.map(f => f.title)"
#: Records what the page shows with the Notification API, then shows it (the real constructor).
NOTIFICATION_SPY = """
(() => {
  const Real = window.Notification;
  window.__desktop = [];
  function Spy(title, options) { window.__desktop.push(title); return new Real(title, options); }
  Object.defineProperty(Spy, 'permission', {get: () => Real.permission});
  Spy.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Spy;
})();
"""


@pytest.fixture(scope="module")
def app(start_example):
    return start_example("notifications", "--api-key", API_KEY)


def publish(app, user: str, title: str, body: str = "", key: str = API_KEY) -> tuple[int, object]:
    """A notification to ``user`` through pushpy's publish API: ``(status, answer)``."""
    return app.request("/pushlet/api/publish",
                       {"user": user, "subject": "/notifications", "fields": {"title": title, "body": body}},
                       headers={"Authorization": f"Bearer {key}"})


def sign_in(page, user: str):
    """Sign ``page`` in as ``user`` and wait until it is live."""
    wait_for(page, "() => !document.getElementById('signin').hidden")
    page.fill("#signin-form input[name=user]", user)
    page.click("#signin-form button")
    wait_until_live(page)
    return page


def wait_until_live(page) -> None:
    wait_for(page, "() => window.notifications.client && window.notifications.client.state === 'open'"
             " && window.notifications.refreshes > 0")


def wait_badge(page, count: int) -> None:
    wait_for(page, "n => document.getElementById('badge').textContent === String(n)", count)


def items(page) -> list[list[str]]:
    """The inbox as [title, 'read' or 'unread'] pairs, newest first."""
    return page.evaluate("() => Array.from(document.querySelectorAll('#items li'),"
                         " li => [li.querySelector('.title').textContent, li.className])")


def send_form(page, to: str, title: str, body: str = "") -> None:
    page.fill("#send-form input[name=to]", to)
    page.fill("#send-form input[name=title]", title)
    page.fill("#send-form input[name=body]", body)
    page.click("#send-form button")


def test_http_notification_reaches_its_user_only_as_a_toast(app, open_page):
    """A notification published over HTTP to one user shows as a toast, counted unread, in that user's
    page; the other user's page gets nothing of it."""
    alice = sign_in(open_page(app.url(PAGE)), "alice")
    bob = sign_in(open_page(app.url(PAGE)), "bob")
    status, answer = publish(app, "alice", "Build passed", "main is green")
    assert status == 200 and answer["published"] == 1, answer
    wait_for(alice, "() => document.querySelectorAll('#toasts .toast').length === 1")
    assert alice.evaluate("() => document.querySelector('#toasts .toast').innerText") == \
        "Build passed\nmain is green"
    wait_badge(alice, 1)
    wait_for(alice, "() => document.querySelectorAll('#items li').length === 1")
    assert items(alice) == [["Build passed", "unread"]]
    assert alice.title() == "(1) Notifications"
    # bob's own notification comes after alice's: had hers gone to bob too, it would be there first
    assert publish(app, "bob", "For bob")[0] == 200
    wait_for(bob, "() => window.notifications.received.length >= 1")
    assert bob.evaluate(RECEIVED) == ["For bob"]
    wait_badge(bob, 1)
    assert alice.evaluate(RECEIVED) == ["Build passed"]
    assert alice.evaluate("() => window.notifications.desktop.length") == 0


def test_python_notification_from_another_user_and_mark_as_read(app, open_page):
    """The Send form has the server's Python code notify another user; the receiver sees the sender,
    and marking it read clears the count."""
    carol = sign_in(open_page(app.url(PAGE)), "carol")
    dave = sign_in(open_page(app.url(PAGE)), "dave")
    send_form(carol, "dave", "Lunch?", "at noon")
    wait_for(dave, "() => window.notifications.received.length === 1")
    received = dave.evaluate("() => window.notifications.received[0]")
    assert {name: received[name] for name in ("title", "body", "from")} == \
        {"title": "Lunch?", "body": "at noon", "from": "carol"}
    wait_badge(dave, 1)
    wait_for(dave, "() => document.querySelectorAll('#items li').length === 1")
    assert "from carol" in dave.evaluate("() => document.querySelector('#items li .muted').textContent")
    send_form(carol, "dave", "Second")
    wait_badge(dave, 2)
    wait_for(dave, "() => document.querySelectorAll('#items li.unread').length === 2")
    dave.click("#items li:last-child .mark-read")  # the older one
    wait_badge(dave, 1)
    wait_for(dave, "() => document.querySelectorAll('#items li.read').length === 1")
    assert items(dave) == [["Second", "unread"], ["Lunch?", "read"]]
    dave.click("#read-all")
    wait_badge(dave, 0)
    wait_for(dave, "() => document.querySelectorAll('#items li.unread').length === 0")
    assert dave.title() == "Notifications"
    assert carol.evaluate(RECEIVED) == []


def test_two_tabs_of_one_user_both_receive_and_agree_on_unread(app, open_page):
    """Both tabs of a user get each notification; marking it read in one tab updates the other."""
    first = sign_in(open_page(app.url(PAGE)), "erin")
    second = first.context.new_page()
    second.goto(app.url(PAGE))  # the sign-in cookie is shared: already signed in
    wait_until_live(second)
    outsider = sign_in(open_page(app.url(PAGE)), "frank")
    assert publish(app, "erin", "Deploy done")[0] == 200
    for tab in (first, second):
        wait_for(tab, "() => window.notifications.received.length === 1")
        wait_badge(tab, 1)
        wait_for(tab, "() => document.querySelectorAll('#items li.unread').length === 1")
    second.click("#items li .mark-read")
    wait_badge(first, 0)
    wait_for(first, "() => document.querySelectorAll('#items li.read').length === 1")
    assert outsider.evaluate(RECEIVED) == []


def test_desktop_notification_when_permitted(app, open_page):
    """With notifications permitted the page uses the browser's Notification API, not a toast."""
    page = open_page(app.url(PAGE), permissions=["notifications"], init_script=NOTIFICATION_SPY)
    sign_in(page, "grace")
    mode = page.evaluate("() => document.getElementById('mode').textContent")
    assert mode == "Desktop notifications are on."
    assert publish(app, "grace", "Desktop hello")[0] == 200
    wait_for(page, "() => window.notifications.desktop.length === 1")
    assert page.evaluate("() => window.__desktop") == ["Desktop hello"]
    assert page.evaluate("() => document.querySelectorAll('#toasts .toast').length") == 0
    wait_badge(page, 1)


def test_offline_user_finds_notifications_on_sign_in_and_text_stays_text(app, open_page):
    """A notification sent from Python to a user with no page open waits in the inbox; markup in a
    notification is shown as text, never run."""
    sender = sign_in(open_page(app.url(PAGE)), "heidi")
    markup = "<img src=x onerror=\"window.__xss=1\"><b>bold</b>"
    send_form(sender, "ivan", markup, markup)
    wait_for(sender, "() => document.getElementById('send-error').textContent === ''"
             " && document.querySelector('#send-form input[name=title]').value === ''")
    # pushpy's publish API refuses a user without a session (nothing would deliver it)
    status, answer = publish(app, "ivan", "Nobody home")
    assert status == 404, answer
    ivan = sign_in(open_page(app.url(PAGE)), "ivan")
    wait_badge(ivan, 1)
    wait_for(ivan, "() => document.querySelectorAll('#items li').length === 1")
    assert items(ivan) == [[markup, "unread"]]
    assert ivan.evaluate("() => document.querySelectorAll('#items img, #items b').length") == 0
    assert publish(app, "ivan", markup, markup)[0] == 200
    wait_for(ivan, "() => document.querySelectorAll('#toasts .toast').length === 1")
    assert ivan.evaluate("() => document.querySelector('#toasts .toast .title').textContent") == markup
    assert ivan.evaluate("() => [document.querySelectorAll('#toasts img').length, window.__xss]") == [0, None]


def test_app_api_refuses_bad_requests(app):
    """The page's API wants JSON and a sign-in; pushpy's publish API wants its key."""
    assert app.request("/notifications/api/inbox")[0] == 401
    assert app.request("/notifications/api/send", {"to": "alice", "title": "x"})[0] == 401
    status, answer = app.request("/notifications/api/login", method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    status, answer = app.request("/notifications/api/login", {"user": "<script>"})
    assert status == 400 and "user name" in answer["error"]
    assert app.request("/notifications/api/nothing")[0] == 404
    assert publish(app, "alice", "x", key="wrong")[0] == 403
