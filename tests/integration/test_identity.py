"""Identity, presence, history queries and session keys over real loopback HTTP and WebSocket.

Users come from signed tokens (``TokenAuthorizer``) or, in the cookie test, from the
application's own session cookie (``CallbackAuthorizer``).
"""

from __future__ import annotations

import json

import pytest_twisted
import treq
from native_client import events, of_type, xml_events
from server_support import eventually, sleep

from pushpy.auth import CallbackAuthorizer, mint_token
from pushpy.errors import ClientError

pytest_plugins = ("native_fixtures",)

SECRET = "s3cret-for-the-identity-tests-0123456789"
KEY = "api-key-for-identity-tests-0123456789"
LOCKED = {"auth_token_secret": SECRET, "api_key": KEY}


def token(user: str, *, subscribe=("/chat/", "/presence/", "/online"), publish=("/chat/", "user:")) -> str:
    return mint_token(SECRET, user, subscribe=subscribe, publish=publish, expires_in=600)


async def api_publish(server, body) -> tuple[int, dict]:
    response = await server.client.post(
        server.url("api/publish"), data=json.dumps(body).encode(), timeout=5,
        headers={"Content-Type": ["application/json"], "Authorization": [f"Bearer {KEY}"]})
    return response.code, json.loads(await treq.content(response))


def texts(client) -> list[str]:
    return [m["fields"].get("text") for m in events(client.messages)]


def replies(client, ref) -> list[dict]:
    return [m for m in client.messages if m.get("ref") == ref]


async def reply(client, message: dict) -> dict:
    client.send(message)
    await client.wait(lambda c: replies(c, message["ref"]))
    return replies(client, message["ref"])[0]


# -- identity and user routing -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_user_events_reach_every_session_of_the_user(native_server):
    """A publish to a user (native message or back-end API) reaches each of their sessions, nobody else."""
    server = native_server(**LOCKED)
    tab1 = await server.opened("sse", token=token("ann"))
    tab2 = await server.ws(token=token("ann"))
    bob = await server.ws(token=token("bob"))
    assert {server.sessions[m["session"]].user for m in (tab1.messages[0], tab2.messages[0])} == {"ann"}
    ack = await reply(bob, {"type": "publish", "user": "ann", "subject": "/dm",
                            "fields": {"text": "hi ann", "p_user": "mallory"}, "ref": 1})
    assert ack["id"] and ack == {"type": "ack", "ref": 1, "op": "publish", "id": ack["id"], "user": "ann"}
    code, answer = await api_publish(server, {"user": "ann", "fields": {"text": "from the back end"}})
    assert code == 200 and answer["published"] == 1 and answer["ids"][0]
    for tab in (tab1, tab2):
        await tab.wait(lambda t: len(events(t.messages)) >= 2)
        assert texts(tab) == ["hi ann", "from the back end"]
    first = events(tab1.messages)[0]
    assert first["subject"] == "/dm" and first["id"] == ack["id"] and first["to"] == "user"  # kept for resumes
    assert first["fields"]["p_from"] == bob.messages[0]["session"]
    assert first["fields"]["p_user"] == "bob"  # set by the server: the sender cannot forge it
    assert "p_user" not in events(tab2.messages)[1]["fields"]  # the back end's event has no sender
    await sleep(0.05)
    assert events(bob.messages) == []


@pytest_twisted.ensureDeferred
async def test_publish_to_a_user_is_authorized_and_needs_a_session(native_server):
    """``user:<id>`` must be granted; an unknown user or a bad target is a nack; the API answers 404."""
    server = native_server(**LOCKED)
    await server.ws(token=token("ann"))
    carol = await server.ws(token=token("carol", publish=("/chat/",)))
    bob = await server.ws(token=token("bob"))
    refused = await reply(carol, {"type": "publish", "user": "ann", "fields": {"text": "x"}, "ref": 1})
    assert refused["type"] == "nack" and refused["reason"] == "not allowed to publish to user:ann"
    nobody = await reply(bob, {"type": "publish", "user": "zed", "fields": {"text": "x"}, "ref": 2})
    assert nobody == {"type": "nack", "ref": 2, "reason": "user has no session: zed"}
    bad = await reply(bob, {"type": "publish", "user": 5, "fields": {}, "ref": 3})
    assert bad["type"] == "nack" and "'user' must be a non-empty string" in bad["reason"]
    both = await reply(bob, {"type": "publish", "user": "ann", "to": "x", "fields": {}, "ref": 4})
    assert both["type"] == "nack" and "at most one of 'to' and 'user'" in both["reason"]
    code, answer = await api_publish(server, {"user": "zed", "fields": {"text": "x"}})
    assert (code, answer) == (404, {"error": "event 0: user has no session: zed"})


@pytest_twisted.ensureDeferred
async def test_cookie_identity_with_a_callback_authorizer(native_server):
    """The application's own session cookie names the user (the documented snippet) and binds the session."""
    server = native_server()
    logged_in = {"cookie-of-ann": "ann"}  # the application's session store

    def join(credentials):
        user = logged_in.get(credentials.cookies.get("app_session", ""))
        if user is None:
            raise ClientError("please log in")
        return user

    server.push.authorizer = CallbackAuthorizer(join=join, bind=lambda c: c.cookies.get("app_session"))
    joined_users = []
    server.push.dispatcher.on_join.append(lambda session: joined_users.append(session.user))
    feed = await server.opened("sse", headers={"Cookie": "app_session=cookie-of-ann"})
    session_id = feed.messages[0]["session"]
    assert server.sessions[session_id].user == "ann" and joined_users == ["ann"]
    refused = await server.stream("sse")
    assert refused.code == 403
    await refused.end()
    assert b"please log in" in refused.raw
    response = await server.client.post(
        server.url("send", {"session": session_id}), data=b'{"type": "hb"}', timeout=5,
        headers={"Content-Type": ["application/json"], "Cookie": ["app_session=cookie-of-ann"]})
    assert response.code == 200 and json.loads(await treq.content(response))[0]["type"] == "ack"
    code, _ = await server.send(session_id, {"type": "hb"})  # the key, but not the cookie
    assert code == 403


# -- presence ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_presence_events_and_query_follow_sessions(native_server):
    """join when a user's first session enters, leave when the last goes (unsubscribe, leave); no noise
    for prefix subscribers of the subject itself."""
    server = native_server(**LOCKED)
    watcher = await server.ws(subject="/presence/chat/room1", token=token("wendy"))
    room = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/chat/room1",
                                       token=token("pete"))
    tab1 = await server.ws(subject="/chat/room1", token=token("ann"))
    tab2 = await server.opened("sse", subject="/chat/room1", token=token("ann"))
    await watcher.wait(lambda w: len(events(w.messages)) >= 2)  # pete (Pushlet) and ann
    code, body = await server.get_json("presence", subject="/chat/room1", token=token("wendy"))
    assert (code, body) == (200, {"subject": "/chat/room1", "users": {"ann": 2, "pete": 1}})
    code, body = await server.get_json("presence", subject="/online", token=token("wendy"))
    assert body["users"] == {"ann": 2, "pete": 1, "wendy": 1}
    ack = await reply(tab1, {"type": "unsubscribe", "subject": "/chat/room1", "ref": 1})
    assert ack["type"] == "ack"
    await sleep(0.05)
    assert len(events(watcher.messages)) == 2  # ann still has tab2 there
    code, _ = await server.send(tab2.messages[0]["session"], {"type": "leave", "ref": 2}, token=token("ann"))
    assert code == 200
    await watcher.wait(lambda w: len(events(w.messages)) >= 3)
    got = [(m["subject"], m["fields"]["user"], m["fields"]["action"]) for m in events(watcher.messages)]
    assert got == [("/presence/chat/room1", "pete", "join"), ("/presence/chat/room1", "ann", "join"),
                   ("/presence/chat/room1", "ann", "leave")]
    assert events(watcher.messages)[0]["fields"]["subject"] == "/chat/room1"
    native = await reply(watcher, {"type": "presence", "subject": "/chat/room1", "ref": 3})
    assert native == {"type": "ack", "ref": 3, "op": "presence", "subject": "/chat/room1",
                      "users": {"pete": 1}}
    assert [e for e in xml_events(room.raw) if e.get("p_event") == "data"] == []


@pytest_twisted.ensureDeferred
async def test_presence_leaves_when_the_session_expires(native_server):
    """A client that goes away without leaving leaves presence when its session's lease ends."""
    # The watcher's lease is renewed by its heartbeats (every 0.2 s); the dropped client's runs out after 1 s.
    server = native_server(native_session_timeout_secs=1.0, queue_read_timeout_millis=200, **LOCKED)
    watcher = await server.ws(subject="/presence/chat/", token=token("wendy"))
    gone = await server.ws(subject="/chat/room2", token=token("ann"))
    await watcher.wait(lambda w: len(events(w.messages)) >= 1)
    gone.disconnect()
    await watcher.wait(lambda w: len(events(w.messages)) >= 2, timeout=5.0)
    assert [m["fields"]["action"] for m in events(watcher.messages)] == ["join", "leave"]
    code, body = await server.get_json("presence", subject="/chat/room2", token=token("wendy"))
    assert (code, body["users"]) == (200, {})


# -- history ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_history_query_over_http_and_native_messages(native_server):
    """The newest ``count`` events of a subject, oldest first with their ids; capped by history.query.max."""
    server = native_server(history_query_max=3, **LOCKED)
    ids = [server.publish("/chat/room1", f"m{i}") for i in range(5)]
    server.publish("/chat/room10", "other subject")
    code, body = await server.get_json("history", subject="/chat/room1", count="2", token=token("ann"))
    assert code == 200 and body["subject"] == "/chat/room1"
    assert [(e["id"], e["fields"]["text"]) for e in body["events"]] == [(ids[3], "m3"), (ids[4], "m4")]
    assert body["events"][0]["type"] == "event" and body["events"][0]["subject"] == "/chat/room1"
    assert body["position"] == ids[4]
    code, body = await server.get_json("history", subject="/chat/empty", token=token("ann"))
    assert (code, body["events"], body["position"]) == (200, [], server.push.backplane.position)
    code, body = await server.get_json("history", subject="/chat/room1", count="50", token=token("ann"))
    assert [e["fields"]["text"] for e in body["events"]] == ["m2", "m3", "m4"]  # capped at 3
    ws = await server.ws(token=token("ann"))
    native = await reply(ws, {"type": "history", "subject": "/chat/room1", "count": 1, "ref": 7})
    assert native["op"] == "history" and [e["id"] for e in native["events"]] == [ids[4]]
    code, answer = await server.get_json("poll", token=token("ann"))
    code, replies_ = await server.send(answer["session"], [
        {"type": "history", "subject": "/chat/room1", "ref": 1},
        {"type": "history", "subject": "/secret", "ref": 2},
        {"type": "history", "subject": "/chat/room1", "count": -1, "ref": 3},
        {"type": "presence", "ref": 4}], token=token("ann"))
    assert code == 200
    assert [e["fields"]["text"] for e in replies_[0]["events"]] == ["m2", "m3", "m4"]
    assert [r["type"] for r in replies_[1:]] == ["nack"] * 3
    assert replies_[1]["reason"] == "not allowed to subscribe to /secret"
    assert "count must be an integer" in replies_[2]["reason"]
    assert replies_[3]["reason"] == "no subject provided"


@pytest_twisted.ensureDeferred
async def test_query_refusals_are_clear(native_server):
    """Bad subject or count: 400; a subject one may not subscribe to, no token, a wrong key: 403;
    an unknown session: 404.  Each answer is JSON naming the reason."""
    server = native_server(**LOCKED)
    good = token("ann")
    feed = await server.opened("sse", token=good)
    session_id = feed.messages[0]["session"]
    cases = [
        ("history", {"count": "3"}, 400, "no subject provided"),
        ("history", {"subject": "/chat/a,/chat/b"}, 400, "one subject, not a comma list"),
        ("history", {"subject": "/chat/a", "count": "many"}, 400, "count must be an integer"),
        ("history", {"subject": "/chat/a", "count": "-2"}, 400, "count must be an integer"),
        ("presence", {"subject": "/chat/" + "x" * 300}, 400, "subject too long"),
        ("history", {"subject": "/admin/log"}, 403, "not allowed to subscribe to /admin/log"),
        ("presence", {"subject": "/chat/a", "token": None}, 403, "authentication required"),
        ("presence", {"subject": "/chat/a", "token": "forged.token"}, 403, ""),
        ("presence", {"subject": "/chat/a", "session": "nope"}, 404, "Invalid or expired session"),
        ("presence", {"subject": "/chat/a", "session": session_id, "session_key": "wrong"}, 403,
         "wrong session_key"),
        ("presence", {"subject": "/chat/a", "session": session_id, "session_key": None}, 403,
         "session_key required"),
    ]
    for path, params, status, reason in cases:
        params = {"token": good, **params}
        code, body = await server.get_json(path, **params)
        assert isinstance(body, dict), (path, params, code, body)
        assert (code, reason in body["error"]) == (status, True), (path, params, code, body)
    code, body = await server.get_json("presence", subject="/chat/a", session=session_id, token=good)
    assert (code, body) == (200, {"subject": "/chat/a", "users": {}})


# -- session keys ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_continuing_a_native_session_needs_its_key(native_server):
    """Only the creator, who got the key in ``open``, continues a session: others get 403 (WebSocket:
    close 1008), over every transport; the key is never sent again."""
    server = native_server()
    first = await server.opened("sse", subject="/k")
    session_id = first.messages[0]["session"]
    key = first.messages[0]["session_key"]
    from pushpy.web.authz import SESSION_KEY, session_key_digest

    kept = server.sessions[session_id].data[SESSION_KEY]
    assert kept == session_key_digest(key) and key not in kept  # only its digest is kept
    for kind in ("sse", "xhr", "iframe"):
        for wrong in (None, "guess", key + "x"):
            stolen = await server.stream(kind, session=session_id, session_key=wrong)
            assert stolen.code == 403, (kind, wrong)
            await stolen.end()
    code, body = await server.get_json("poll", session=session_id, session_key=None)
    assert code == 403 and "session_key required" in body
    code, body = await server.send(session_id, {"type": "hb"}, session_key="guess")
    assert code == 403 and "wrong session_key" in body
    ws = await server.ws_raw(session=session_id, session_key="guess")
    await ws.wait(lambda c: c.finished)
    assert ws.close_code == 1008
    assert of_type(ws.messages, "close")[0]["reason"].startswith("wrong session_key")
    first.disconnect()
    await eventually(lambda: not server.sessions[session_id].channels)
    server.push.unicast(session_id, {"text": "private"})
    again = await server.ws(session=session_id, session_key=key)
    assert again.messages[0]["session"] == session_id and "session_key" not in again.messages[0]
    await again.wait(lambda c: texts(c) == ["private"])


@pytest_twisted.ensureDeferred
async def test_pushlet_sessions_need_no_key(native_server):
    """Unmodified Pushlet clients cannot send a key: their sessions work with ``p_id`` alone."""
    server = native_server()
    body = await server.pushlet(p_event="join", p_format="xml")
    session_id = xml_events(body)[0]["p_id"]
    body = await server.pushlet(p_event="subscribe", p_id=session_id, p_subject="/p", p_format="xml")
    assert xml_events(body)[0]["p_event"] == "subscribe-ack"


@pytest_twisted.ensureDeferred
async def test_anonymous_publishers_cannot_forge_a_user(native_server):
    """``p_user`` names the publishing session's user; an anonymous publisher's forged one is removed."""
    server = native_server()
    reader = await server.ws(subject="/open")
    writer = await server.ws()
    await reply(writer, {"type": "publish", "subject": "/open", "fields": {"text": "x", "p_user": "admin"},
                         "ref": 1})
    await server.pushlet(p_event="publish", p_id=xml_events(await server.pushlet(
        p_event="join", p_format="xml"))[0]["p_id"], p_subject="/open", text="y", p_user="admin",
        p_format="xml")
    await reader.wait(lambda r: len(events(r.messages)) >= 2)
    assert [("p_user" in m["fields"], m["fields"]["text"]) for m in events(reader.messages)] == [
        (False, "x"), (False, "y")]


@pytest_twisted.ensureDeferred
async def test_leave_over_a_websocket_ends_the_session_cleanly(native_server):
    """``leave`` on a WebSocket ends the session at once: a ``close`` (reason leave), a clean close frame."""
    server = native_server(**LOCKED)
    ws = await server.ws(subject="/chat/room3", token=token("ann"))
    session_id = ws.messages[0]["session"]
    ws.send({"type": "leave", "ref": 1})
    await ws.wait(lambda c: c.finished)
    assert of_type(ws.messages, "close") == [{"type": "close", "reason": "leave"}]
    assert ws.close_code == 1000 and session_id not in server.sessions
    _, body = await server.get_json("presence", subject="/chat/room3", token=token("wendy"))
    assert body["users"] == {}
