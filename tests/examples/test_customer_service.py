"""The customer-service example (``examples/customer_service``) in headless Chromium.

Each test starts its own app (the desk keeps its visitors), with agents and
visitors in separate browser contexts.
"""

from __future__ import annotations

import pytest
from example_support import wait_for

pytestmark = pytest.mark.browser

PANEL_TEXTS = ("v => Array.from(document.querySelectorAll(`.panel[data-visitor='${v}'] .messages .text`))"
               ".map(e => e.textContent)")
VISITOR_TEXTS = "() => Array.from(document.querySelectorAll('#messages .text')).map(e => e.textContent)"


@pytest.fixture
def app(start_example):
    """A fresh app: two visitors per agent; an agent whose pages are gone leaves the desk after 3 s."""
    return start_example("customer_service", "--capacity", "2", "--session-timeout", "3")


def agent(open_page, app, name: str, transport: str | None = None):
    """An agent's page, logged in, connected and available."""
    page = open_page(app.url("/agent/" + (f"?transport={transport}" if transport else "")))
    page.fill("#agent-name", name)
    page.click("#login-button")
    wait_for(page, "() => window.agent.transport && document.getElementById('available').checked")
    return page


def visitor(open_page, app, name: str, transport: str | None = None):
    """A visitor's page with a chat opened; ``page.visitor_id`` is its id."""
    page = open_page(app.url("/" + (f"?transport={transport}" if transport else "")))
    page.click("#open-chat")
    page.fill("#visitor-name", name)
    page.click("#start")
    wait_for(page, "() => window.visitor.transcript && window.visitor.transcript.loaded")
    page.visitor_id = page.evaluate("() => window.visitor.visitor")
    return page


def say(page, text: str, panel: str | None = None) -> None:
    scope = f".panel[data-visitor='{panel}'] " if panel else ""
    page.fill(f"{scope}{'.answer-text' if panel else '#text'}", text)
    page.click(f"{scope}{'.send' if panel else '#send'}")


def panel_has(page, visitor_id: str, text: str) -> None:
    wait_for(page, f"([v, t]) => ({PANEL_TEXTS})(v).includes(t)", [visitor_id, text])


def visitor_has(page, text: str) -> None:
    wait_for(page, f"t => ({VISITOR_TEXTS})().includes(t)", text)


def status(page) -> str:
    return page.evaluate("() => document.getElementById('status').textContent")


def test_queued_visitor_goes_to_the_agent_who_comes(app, open_page):
    """A visitor waits in the queue until an agent logs in; then they talk, markup staying inert."""
    hostile = "<img src=x onerror=pwned=1>"
    guest = visitor(open_page, app, hostile, "longpoll")
    wait_for(guest, "() => window.visitor.status === 'Waiting for an agent (you are number 1)'")
    ann = agent(open_page, app, "ann", "websocket")
    wait_for(ann, "v => document.querySelector(`.panel[data-visitor='${v}']`)", guest.visitor_id)
    wait_for(guest, "() => window.visitor.status === 'You are talking to ann'")
    visitor_has(guest, "ann is now helping you.")
    say(guest, '<script>window.pwned=2</script><b onclick="x()">my kettle leaks</b>')
    panel_has(ann, guest.visitor_id, '<script>window.pwned=2</script><b onclick="x()">my kettle leaks</b>')
    say(ann, "Sorry! A new one is on its way.", panel=guest.visitor_id)
    visitor_has(guest, "Sorry! A new one is on its way.")
    name = ann.evaluate("v => document.querySelector(`.panel[data-visitor='${v}'] h2`).textContent",
                        guest.visitor_id)
    assert name == hostile
    assert ann.evaluate("() => [window.pwned, document.querySelectorAll('#panels img, #panels script,"
                        " #panels b').length]") == [None, 0]


def test_agent_serves_several_visitors_and_transfers_one(app, open_page):
    """Visitors spread over the agents; one agent answers two at once and transfers one, with its
    conversation, to the other.  The server takes the conversation from the first agent: even a
    page that does not unsubscribe gets nothing said after the transfer."""
    ann = agent(open_page, app, "ann")
    bob = agent(open_page, app, "bob", "iframe")
    first = visitor(open_page, app, "Vera")
    second = visitor(open_page, app, "Walt", "iframe")
    third = visitor(open_page, app, "Xena", "longpoll")
    for page, name in ((first, "ann"), (second, "bob"), (third, "ann")):
        wait_for(page, "n => window.visitor.status === 'You are talking to ' + n", name)
    wait_for(ann, "() => document.querySelectorAll('.panel').length === 2")
    say(first, "question one")
    say(third, "question three")
    panel_has(ann, first.visitor_id, "question one")
    panel_has(ann, third.visitor_id, "question three")
    say(ann, "answer one", panel=first.visitor_id)
    say(ann, "answer three", panel=third.visitor_id)
    visitor_has(first, "answer one")
    visitor_has(third, "answer three")
    assert "answer three" not in first.evaluate(VISITOR_TEXTS)
    # bob has room for one more: ann hands him the first visitor
    wait_for(ann, "v => Array.from(document.querySelectorAll(`.panel[data-visitor='${v}'] option`))"
             ".some(o => o.value === 'bob')", first.visitor_id)
    # ann's page keeps listening to the conversation after the transfer, as a stale or hostile
    # page would: its transcripts never unsubscribe, and every event it gets is recorded.
    ann.evaluate("""s => {
        cs.Transcript.prototype.stop = function () {};
        window.heard = []; window.revoked = [];
        window.agent.client.on('event', function (fields, event) {
            if (event.subject === s) { window.heard.push(fields.text); }
        });
        window.agent.client.on('unsubscribed', function (info) { window.revoked.push(info); });
    }""", f"/cs/visit/{first.visitor_id}")
    ann.select_option(f".panel[data-visitor='{first.visitor_id}'] select", "bob")
    ann.click(f".panel[data-visitor='{first.visitor_id}'] .transfer button")
    panel_has(bob, first.visitor_id, "question one")  # the transcript comes with the visitor
    panel_has(bob, first.visitor_id, "answer one")
    wait_for(ann, "v => !document.querySelector(`.panel[data-visitor='${v}']`)", first.visitor_id)
    wait_for(first, "() => window.visitor.status === 'You are talking to bob'")
    visitor_has(first, "ann transferred you to bob.")
    say(bob, "bob here", panel=first.visitor_id)
    visitor_has(first, "bob here")
    say(first, "thanks bob")
    panel_has(bob, first.visitor_id, "thanks bob")
    say(third, "still with ann")
    panel_has(ann, third.visitor_id, "still with ann")  # ann's page is live, and hears this later
    assert ann.evaluate("() => window.heard") == []
    assert ann.evaluate("() => window.revoked") == [
        {"subject": f"/cs/visit/{first.visitor_id}", "reason": "transferred to bob",
         "subjects": [f"/cs/visit/{first.visitor_id}"]}]
    assert f"/cs/visit/{first.visitor_id}" not in ann.evaluate(
        "() => window.agent.client._subs.map(s => s.subject)")
    # a transfer to a full agent is refused with a reason
    ann.select_option(f".panel[data-visitor='{third.visitor_id}'] select", "bob")
    ann.click(f".panel[data-visitor='{third.visitor_id}'] .transfer button")
    wait_for(ann, "() => document.getElementById('error').textContent === 'agent bob has no room'")


def test_visitor_reload_keeps_the_conversation(app, open_page):
    """A visitor who reloads is the same visitor: the conversation and the agent are still there."""
    ann = agent(open_page, app, "ann")
    guest = visitor(open_page, app, "Yuri", "iframe")
    say(guest, "before the reload")
    panel_has(ann, guest.visitor_id, "before the reload")
    say(ann, "noted", panel=guest.visitor_id)
    visitor_has(guest, "noted")
    guest.reload()
    wait_for(guest, "() => window.visitor.transcript && window.visitor.transcript.loaded")
    assert guest.evaluate("() => window.visitor.visitor") == guest.visitor_id
    visitor_has(guest, "noted")
    texts = guest.evaluate(VISITOR_TEXTS)
    assert texts.index("before the reload") < texts.index("noted")
    assert texts.count("noted") == 1
    wait_for(guest, "() => window.visitor.status === 'You are talking to ann'")
    say(guest, "after the reload")
    panel_has(ann, guest.visitor_id, "after the reload")
    say(ann, "still here", panel=guest.visitor_id)
    visitor_has(guest, "still here")
    assert ann.evaluate("() => document.querySelectorAll('.panel').length") == 1


def test_gone_agent_hands_visitors_on(app, open_page):
    """When an agent's browser is gone for good, their visitor goes to another agent, history included."""
    ann = agent(open_page, app, "ann")
    guest = visitor(open_page, app, "Zoe")
    say(guest, "hello?")
    panel_has(ann, guest.visitor_id, "hello?")
    bob = agent(open_page, app, "bob")
    ann.context.close()
    panel_has(bob, guest.visitor_id, "hello?")
    wait_for(guest, "() => window.visitor.status === 'You are talking to bob'")


def test_gone_visitor_frees_the_agent(app, open_page):
    """A visitor whose browser is gone for good has the chat closed: the agent's place goes to the queue."""
    ann = agent(open_page, app, "ann")
    first, second = visitor(open_page, app, "Abe"), visitor(open_page, app, "Bea")
    third = visitor(open_page, app, "Cal")
    wait_for(third, "() => window.visitor.status === 'Waiting for an agent (you are number 1)'")
    first.context.close()
    wait_for(ann, "v => !document.querySelector(`.panel[data-visitor='${v}']`)", first.visitor_id,
             timeout=20_000)
    wait_for(third, "() => window.visitor.status === 'You are talking to ann'")
    panel_has(ann, third.visitor_id, "ann is now helping you.")
    assert second.evaluate("() => window.visitor.status") == "You are talking to ann"


def test_visitor_api_refusals(app, open_page):
    """A visitor cannot act as an agent, read another's conversation (pushpy's history query asks the
    authorizer), or write before opening a chat."""
    guest = visitor(open_page, app, "Ann")
    other = open_page(app.url("/"))
    wait_for(other, "() => window.visitor.visitor")
    answers = other.evaluate("""v => Promise.all([
        fetch('/api/agent').then(r => r.status),
        fetch('/pushlet/history?subject=/cs/visit/' + v).then(r => r.status),
        fetch('/api/visitor/say', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                   body: JSON.stringify({text: 'hi'})}).then(r => r.status),
        fetch('/api/agent/say', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                 body: JSON.stringify({visitor: v, text: 'hi'})}).then(r => r.status)])""",
                             guest.visitor_id)
    assert answers == [403, 403, 409, 403]
