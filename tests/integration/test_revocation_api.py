"""Server-side unsubscribe and disconnect over loopback: the back-end API, every kind of client.

Users come from signed tokens; the revocations come from ``POST api/unsubscribe``
and ``api/disconnect`` (the API key of ``api/publish``).  What a client gets is
read off real SSE, WebSocket, long-poll and Pushlet connections.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from native_client import events, of_type, xml_events
from server_support import eventually, sleep

from pushpy.auth import CallbackAuthorizer, mint_token
from pushpy.core.sessions import EndReason

pytest_plugins = ("native_fixtures",)

SECRET = "s3cret-for-the-revocation-tests-0123456789"
KEY = "api-key-for-revocation-tests-0123456789"
LOCKED = {"auth_token_secret": SECRET, "api_key": KEY}


def token(user: str) -> str:
    return mint_token(SECRET, user, subscribe=("/chat/", "/news"), publish=("/chat/",), expires_in=600)


async def api(server, op: str, body, *, key: str | None = KEY, raw: bytes | None = None):
    headers = {"Content-Type": ["application/json"]}
    if key is not None:
        headers["Authorization"] = [f"Bearer {key}"]
    response = await server.client.post(server.url(f"api/{op}"), timeout=5, headers=headers,
                                        data=raw if raw is not None else json.dumps(body).encode())
    content = await treq.content(response)
    return response.code, json.loads(content)


def texts(client) -> list[str]:
    return [m["fields"]["text"] for m in events(client.messages)]


@pytest_twisted.ensureDeferred
async def test_unsubscribe_takes_the_subject_from_every_session_of_the_user(native_server):
    """ann's SSE, WebSocket and Pushlet sessions lose ``/chat/room1`` (and what is under it); once
    the API answered, nothing published there reaches them; bob and ann's other subject go on."""
    server = native_server(**LOCKED)
    sse = await server.opened("sse", subject="/chat/room1,/news", token=token("ann"))
    ws = await server.ws(subject="/chat/room1/typing", token=token("ann"))
    pushlet = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/chat/room1",
                                          token=token("ann"))
    bob = await server.ws(subject="/chat/room1", token=token("bob"))
    server.publish("/chat/room1", "before")
    await pushlet.wait(lambda f: b"before" in f.raw)
    code, answer = await api(server, "unsubscribe", {"subject": "/chat/room1", "user": "ann",
                                                     "reason": "transferred"})
    assert code == 200 and answer["op"] == "unsubscribe" and answer["user"] == "ann" and answer["id"]
    server.publish("/chat/room1", "after")
    server.publish("/chat/room1/typing", "typing")
    server.publish("/news", "news")
    notice = {"type": "unsubscribed", "subject": "/chat/room1", "id": answer["id"], "reason": "transferred"}
    await sse.wait(lambda f: "news" in texts(f))
    assert of_type(sse.messages, "unsubscribed") == [{**notice, "_sse_id": answer["id"]}]  # a resume skips it
    assert texts(sse) == ["before", "news"]
    await ws.until(1, "unsubscribed")
    assert of_type(ws.messages, "unsubscribed") == [notice]
    await bob.wait(lambda c: "typing" in texts(c))
    assert texts(bob) == ["before", "after", "typing"]
    await sleep(0.1)
    assert texts(ws) == []
    pushed = [e for e in xml_events(pushlet.raw) if e["p_event"] not in ("hb", "join-listen-ack")]
    assert [e.get("text") for e in pushed] == ["before"]  # nothing else: Pushlet clients are told nothing
    sessions = {s.id: s for s in server.sessions.values() if s.user == "ann"}
    assert sorted(sub.subject for s in sessions.values() for sub in s.subscriptions.values()) == ["/news"]


@pytest_twisted.ensureDeferred
async def test_unsubscribe_of_one_session_and_resuming_it(native_server):
    """``session`` targets one session.  Continued with its key from an id before the revocation,
    it is told again (the replay holds the revocation) and gets none of the subject's events."""
    server = native_server(**LOCKED)
    one = await server.opened("sse", subject="/chat/a,/chat/b", token=token("ann"))
    two = await server.opened("sse", subject="/chat/a", token=token("ann"))
    session, start = one.messages[0]["session"], one.messages[0]["position"]
    code, answer = await api(server, "unsubscribe", {"subject": "/chat/a", "session": session})
    assert (code, answer["session"]) == (200, session)
    await one.until(1, "unsubscribed")
    one.disconnect()
    server.publish("/chat/a", "a")
    server.publish("/chat/b", "b")
    again = await server.opened("sse", session=session, token=token("ann"), last_event_id=start)
    assert again.messages[0]["session"] == session
    await again.wait(lambda f: texts(f) == ["b"])
    assert [m["type"] for m in again.messages] == ["open", "recovery", "unsubscribed", "event"]
    await two.wait(lambda f: texts(f) == ["a"])


@pytest_twisted.ensureDeferred
async def test_disconnect_closes_every_kind_of_connection_for_good(native_server):
    """ann's WebSocket, SSE, long-poll and Pushlet stream get the close (or abort) with the reason;
    her session cannot be continued; bob is untouched."""
    server = native_server(**LOCKED)
    ws = await server.ws(subject="/chat/a", token=token("ann"))
    sse = await server.opened("sse", subject="/chat/a", token=token("ann"))
    code, first = await server.get_json("poll", subject="/chat/a", token=token("ann"))
    polled = first["session"]
    waiting = server.client.get(server.url("longpoll", {"session": polled, "token": token("ann"),
                                                        "last_event_id": first["position"]}), timeout=5)
    pushlet = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/chat/a",
                                          token=token("ann"))
    bob = await server.ws(subject="/chat/a", token=token("bob"))
    await eventually(lambda: len([s for s in server.sessions.values() if s.user == "ann"
                                  and s.channels]) == 4)
    code, answer = await api(server, "disconnect", {"user": "ann", "reason": "account closed"})
    assert (code, answer["op"], answer["user"]) == (200, "disconnect", "ann")
    close = {"type": "close", "reason": "account closed", "reconnect": False}
    await ws.wait(lambda c: c.finished)
    assert of_type(ws.messages, "close") == [close] and ws.close_code == 1000
    await sse.end()
    assert of_type(sse.messages, "close") == [{**close, "_sse_id": None}]
    response = await waiting
    assert json.loads(await treq.content(response))["messages"] == [close]
    await pushlet.end()
    aborts = [e for e in xml_events(pushlet.raw) if e["p_event"] == "abort"]
    assert [e.get("p_reason") for e in aborts] == ["account closed"]
    assert not [s for s in server.sessions.values() if s.user == "ann"]
    # Continuing the ended session makes a new one.
    again = await server.opened("sse", session=sse.messages[0]["session"], token=token("ann"))
    assert again.messages[0]["session"] != sse.messages[0]["session"]
    assert not bob.finished and bob.close_code is None


@pytest.mark.parametrize("op, body, code, reason", [
    ("unsubscribe", {"subject": "/a"}, 400, "give one of 'user' and 'session'"),
    ("unsubscribe", {"subject": "/a", "user": "ann", "session": "s"}, 400, "give one of"),
    ("unsubscribe", {"user": "ann"}, 400, "no subject provided"),
    ("unsubscribe", {"subject": "/a,/b", "user": "ann"}, 400, "not a comma list"),
    ("unsubscribe", {"subject": "/a", "user": 5}, 400, "'user' must be a non-empty string"),
    ("unsubscribe", {"subject": "/a", "user": "ann", "reason": 3}, 400, "reason must be a string"),
    ("unsubscribe", {"subject": "/a", "user": "ann", "to": "x"}, 400, "unknown key 'to'"),
    ("disconnect", {"subject": "/a", "user": "ann"}, 400, "unknown key 'subject'"),
    ("disconnect", {"session": ""}, 400, "'session' must be a non-empty string"),
    ("disconnect", ["ann"], 400, "the body must be a JSON object"),
])
@pytest_twisted.ensureDeferred
async def test_bad_revocations_are_refused(native_server, op, body, code, reason):
    server = native_server(**LOCKED)
    ws = await server.ws(subject="/chat/a", token=token("ann"))
    got, answer = await api(server, op, body)
    assert (got, reason in answer["error"]) == (code, True), answer
    assert not ws.finished and not of_type(ws.messages, "unsubscribed")


@pytest_twisted.ensureDeferred
async def test_revocations_need_the_api_key(native_server):
    """Like ``api/publish``: 401 without a key, 403 with a wrong one, 404 with none configured."""
    server = native_server(**LOCKED)
    assert (await api(server, "disconnect", {"user": "ann"}, key=None))[0] == 401
    assert (await api(server, "disconnect", {"user": "ann"}, key="wrong"))[0] == 403
    assert (await api(server, "unsubscribe", None, raw=b"{nope"))[0] == 400
    assert (await server.get_json("api/disconnect"))[0] == 405
    open_server = native_server()
    code, answer = await api(open_server, "unsubscribe", {"subject": "/a", "user": "ann"})
    assert code == 404 and "set api.key" in answer["error"]


@pytest_twisted.ensureDeferred
async def test_revoking_a_user_without_sessions_is_no_error(native_server):
    """Revoking is idempotent: a user or session with nothing to revoke answers 200 all the same."""
    server = native_server(**LOCKED)
    assert (await api(server, "unsubscribe", {"subject": "/a", "user": "nobody"}))[0] == 200
    assert (await api(server, "disconnect", {"session": "nothing-here"}))[0] == 200


@pytest_twisted.ensureDeferred
async def test_the_python_client_drops_revoked_subjects_and_stops_when_disconnected(native_server):
    """``pushpy.client.Client`` hears ``unsubscribed``, stops asking for the subject (its next
    connect does not name it), and closes for good on the application's disconnect."""
    from pushpy.client import Client

    server = native_server(api_key=KEY)
    server.push.authorizer = CallbackAuthorizer(join=lambda credentials: "ann", bind=lambda c: "ann")
    client = Client(server.url(""), transport="sse", reconnect_delay=0.05)
    seen, heard, closes = [], [], []
    client.subscribe("/chat/a", seen.append)
    client.subscribe("/news", seen.append)
    client.on("unsubscribed", heard.append)
    client.on("close", closes.append)
    await client.connect()
    await api(server, "unsubscribe", {"subject": "/chat/a", "user": "ann", "reason": "moved"})
    await eventually(lambda: heard)
    assert heard == [{"subject": "/chat/a", "reason": "moved", "subjects": ["/chat/a"]}]
    assert client.subjects == ["/news"]
    session = server.sessions[client.session]
    session.channels[-1].end(EndReason.SHUTDOWN)  # the stream drops: the client reconnects
    await eventually(lambda: len(closes) == 1 and client.state == "open")
    assert [s.subject for s in server.sessions[client.session].subscriptions.values()] == ["/news"]
    server.publish("/chat/a", "not for you")
    server.publish("/news", "news")
    await eventually(lambda: seen)
    assert [event.fields["text"] for event in seen] == ["news"]
    await api(server, "disconnect", {"user": "ann", "reason": "bye"})
    await eventually(lambda: client.state == "closed")
    assert closes[-1] == {"reason": "closed by server: bye", "reconnecting": False, "was_open": True}
    await sleep(0.2)
    assert client.state == "closed" and not server.sessions
    await client.close()
