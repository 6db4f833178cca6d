"""Authorization over loopback: signed tokens and application callbacks on every entry point.

Pushlet join/join-listen/subscribe/listen/publish, native connect/subscribe/
publish (HTTP transports and ``send``) and WebSocket: a refused join is a 403
(a WebSocket closes with 1008) carrying the reason, a refused subscribe or
publish a ``nack`` that leaves the session alive.  Sessions with a user are
bound to their credentials.
"""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from native_client import events, of_type, xml_events
from server_support import sleep
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from pushpy.auth import CallbackAuthorizer, Identity, mint_token
from pushpy.errors import ClientError

pytest_plugins = ("native_fixtures",)

SECRET = "s3cret-for-the-tests-only-0123456789"
LOCKED = {"auth_token_secret": SECRET}


def token(user: str = "alice", *, subscribe=("/news/", "/user/alice/"), publish=("/chat/",),
          expires_in: float = 600) -> str:
    return mint_token(SECRET, user, subscribe=subscribe, publish=publish, expires_in=expires_in)


async def get(server, path: str, headers: dict[str, str] | None = None, **params: str):
    """``GET /pushlet/<path>``: status and body text."""
    response = await server.client.get(server.url(path, params), timeout=5,
                                       headers={k: [v] for k, v in (headers or {}).items()})
    return response.code, (await treq.content(response)).decode("utf-8", "replace")


def later(value: object, delay: float = 0.05) -> Deferred:
    """A Deferred firing with ``value`` (raising it if an exception) after ``delay`` seconds."""
    d: Deferred = Deferred()

    def fire() -> None:
        if isinstance(value, Exception):
            d.errback(value)
        else:
            d.callback(value)

    reactor.callLater(delay, fire)
    return d


# -- Pushlet ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_pushlet_join_without_token_is_403_with_the_reason(native_server):
    """With a token secret and no anonymous access, a Pushlet join without token is a 403 naming why."""
    server = native_server(**LOCKED)
    code, body = await get(server, "pushlet.srv", p_event="join", p_format="xml")
    assert code == 403
    assert "authentication required: no token" in body
    assert server.sessions == {}


@pytest.mark.parametrize("how", ["param", "bearer", "cookie"])
@pytest_twisted.ensureDeferred
async def test_pushlet_join_with_token_sets_the_user(native_server, how):
    """A token in a ``token`` parameter, a Bearer header or the ``pushpy_token`` cookie joins as its user."""
    server = native_server(**LOCKED)
    params = {"p_event": "join", "p_format": "xml"}
    headers = {}
    if how == "param":
        params["token"] = token()
    elif how == "bearer":
        headers["Authorization"] = f"Bearer {token()}"
    else:
        headers["Cookie"] = f"other=1; pushpy_token={token()}"
    code, body = await get(server, "pushlet.srv", headers, **params)
    assert code == 200, body
    [ack] = xml_events(body.encode())
    assert ack["p_event"] == "join-ack"
    assert server.sessions[ack["p_id"]].user == "alice"


@pytest.mark.parametrize("bad, reason", [
    ("nonsense", "invalid token: malformed"),
    (token()[:-2] + "AA", "invalid token: bad signature"),
    (mint_token("another-secret-0123456789", "alice"), "invalid token: bad signature"),
    (token(expires_in=-1), "token expired"),
])
@pytest_twisted.ensureDeferred
async def test_pushlet_join_with_bad_token_is_403(native_server, bad, reason):
    """A malformed, forged or expired token is refused with 403 and the reason, never taken as anonymous."""
    server = native_server(**LOCKED, auth_anonymous=True)
    code, body = await get(server, "pushlet.srv", p_event="join", p_format="xml", token=bad)
    assert code == 403
    assert reason in body


@pytest_twisted.ensureDeferred
async def test_pushlet_subscribe_and_publish_follow_the_grants(native_server):
    """Subscribe and publish outside the token's grants are ``nack``s; the session stays and may go on."""
    server = native_server(**LOCKED)
    t = token()
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml", token=t))
    sid = ack["p_id"]
    refused = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/admin", token=t))
    assert refused[0]["p_event"] == "nack"
    assert refused[0]["p_reason"] == "not allowed to subscribe to /admin"
    sneaky = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/news/a,/admin/b",
                                             token=t))
    assert sneaky[0]["p_event"] == "nack"
    broad = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/news", token=t))
    assert broad[0]["p_event"] == "nack"  # "/news" would also match "/newsroom-secrets"
    ok = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/news/world", token=t))
    assert ok[0]["p_event"] == "subscribe-ack"
    denied = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/news/world",
                                             text="fake", token=t))
    assert denied[0]["p_event"] == "nack"
    assert denied[0]["p_reason"] == "not allowed to publish to /news/world"
    allowed = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/chat/1",
                                              text="hi", token=t))
    assert allowed[0]["p_event"] == "publish-ack"
    assert sid in server.sessions
    [published] = server.push.backplane.history("/chat/1", 1)
    assert published.fields["text"] == "hi" and "token" not in published.fields  # never sent to others


@pytest_twisted.ensureDeferred
async def test_pushlet_listen_with_refused_subject_is_nack(native_server):
    """``listen`` with a subject outside the grants is a ``nack``; the session is intact."""
    server = native_server(**LOCKED)
    t = token()
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml", token=t))
    body = await server.pushlet(p_event="listen", p_id=ack["p_id"], p_subject="/admin", p_mode="poll",
                                token=t)
    [nack] = xml_events(body)
    assert nack["p_event"] == "nack"
    assert ack["p_id"] in server.sessions


@pytest_twisted.ensureDeferred
async def test_pushlet_join_listen_with_refused_subject_is_403_and_leaves_no_session(native_server):
    """``join-listen`` with a refused subject is a 403 as a whole: no session is left behind."""
    server = native_server(**LOCKED)
    code, body = await get(server, "pushlet.srv", p_event="join-listen", p_format="xml", p_mode="poll",
                           p_subject="/admin", token=token())
    assert code == 403
    assert "not allowed to subscribe to /admin" in body
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_anonymous_access_uses_the_anonymous_grants(native_server):
    """With ``auth.anonymous``, a client without token joins anonymously with the anonymous grants."""
    server = native_server(**LOCKED, auth_anonymous=True, auth_anonymous_subscribe="/public/")
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml"))
    sid = ack["p_id"]
    assert server.sessions[sid].user is None
    ok = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/public/x"))
    assert ok[0]["p_event"] == "subscribe-ack"
    no = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/public/x", a="1"))
    assert no[0]["p_event"] == "nack"
    # Anonymous sessions are not bound: the original clients keep working with the id alone.
    assert xml_events(await server.pushlet(p_event="hb", p_id=sid))[0]["p_event"] == "hb-ack"


@pytest_twisted.ensureDeferred
async def test_session_with_user_needs_its_credentials_on_every_request(native_server):
    """A known ``p_id`` alone cannot use a user's session: no token or another user's is a 403."""
    server = native_server(**LOCKED)
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml", token=token()))
    sid = ack["p_id"]
    code, body = await get(server, "pushlet.srv", p_event="subscribe", p_id=sid, p_subject="/news/x")
    assert code == 403
    assert "credentials do not match this session" in body
    code, body = await get(server, "pushlet.srv", p_event="leave", p_id=sid, token=token("mallory"))
    assert code == 403
    assert sid in server.sessions
    assert server.sessions[sid].subscriptions == {}
    # A renewed token of the same user is fine.
    renewed = token(expires_in=900)
    assert xml_events(await server.pushlet(p_event="hb", p_id=sid, token=renewed))[0]["p_event"] == "hb-ack"


@pytest_twisted.ensureDeferred
async def test_pushlet_stream_with_cookie_token_receives_granted_events(native_server):
    """An authenticated ``join-listen`` stream (a cookie token, as old clients send) gets its events."""
    server = native_server(**LOCKED)
    response = await server.agent.request(
        b"GET", server.url("pushlet.srv", {"p_event": "join-listen", "p_format": "xml",
                                           "p_subject": "/user/alice/"}).encode(),
        _headers({"Cookie": f"pushpy_token={token()}"}))
    from native_client import Feed

    feed = Feed("raw", response)
    server._clients.append(feed)
    await feed.wait(lambda f: b"hb" in f.raw)
    server.publish("/user/alice/inbox", "for alice")
    await feed.wait(lambda f: b"for alice" in f.raw)


def _headers(values: dict[str, str]):
    from twisted.web.http_headers import Headers

    return Headers({k.encode(): [v.encode()] for k, v in values.items()})


# -- native transports ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sse", "xhr", "iframe", "longpoll", "poll"])
@pytest_twisted.ensureDeferred
async def test_native_connect_without_token_is_403(native_server, kind):
    """Every native HTTP transport refuses a client without token with 403 and the reason."""
    server = native_server(**LOCKED)
    code, body = await get(server, kind, subject="/news/a")
    assert code == 403
    assert "authentication required" in body
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_native_connect_with_refused_subject_is_403(native_server):
    """A connect URL subject outside the grants is a 403; no session is left behind."""
    server = native_server(**LOCKED)
    code, body = await get(server, "sse", subject="/admin", token=token())
    assert code == 403
    assert "not allowed to subscribe to /admin" in body
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_native_stream_subscribe_and_publish_follow_the_grants(native_server):
    """Over SSE and ``send``: refused subscribe and publish are ``nack``s, granted ones work."""
    server = native_server(**LOCKED)
    t = token()
    feed = await server.opened("sse", subject="/news/a", token=t)
    session_id = feed.messages[0]["session"]
    assert server.sessions[session_id].user == "alice"
    code, replies = await server.send(session_id, [
        {"type": "subscribe", "subject": "/admin", "ref": 1},
        {"type": "publish", "subject": "/news/a", "fields": {"text": "x"}, "ref": 2},
        {"type": "publish", "subject": "/chat/1", "fields": {"text": "y"}, "ref": 3},
        {"type": "subscribe", "subject": "/user/alice/x", "ref": 4},
    ], token=t)
    assert code == 200
    assert [(r["type"], r.get("reason")) for r in replies] == [
        ("nack", "not allowed to subscribe to /admin"), ("nack", "not allowed to publish to /news/a"),
        ("ack", None), ("ack", None)]
    server.publish("/news/a", "news")
    await feed.wait(lambda f: "news" in [m["fields"].get("text") for m in events(f.messages)])


@pytest_twisted.ensureDeferred
async def test_send_to_a_bound_session_needs_its_credentials(native_server):
    """``send`` for a session with a user is a 403 without the user's token."""
    server = native_server(**LOCKED)
    feed = await server.opened("sse", subject="/news/a", token=token())
    session_id = feed.messages[0]["session"]
    code, body = await server.send(session_id, {"type": "unsubscribe"})
    assert code == 403
    assert "credentials do not match" in body
    code, body = await server.send(session_id, {"type": "hb"}, token=token("mallory"))
    assert code == 403
    assert server.sessions[session_id].subscriptions


@pytest_twisted.ensureDeferred
async def test_continuing_a_bound_session_without_its_credentials_starts_a_new_one(native_server):
    """``session=<id>`` of someone else's session gives a new session, never theirs (or its events)."""
    server = native_server(**LOCKED)
    first = await server.opened("sse", subject="/user/alice/", token=token())
    session_id = first.messages[0]["session"]
    server.push.unicast(session_id, {"text": "private"})
    thief = await server.opened("sse", subject="/news/", session=session_id,
                                token=token("mallory", subscribe=("/news/",)))
    assert thief.messages[0]["session"] != session_id
    await sleep(0.1)
    assert "private" not in thief.raw.decode()
    assert not first.finished  # the owner's connection was not taken over
    await first.wait(lambda f: "private" in f.raw.decode())


@pytest_twisted.ensureDeferred
async def test_websocket_without_token_closes_with_the_reason(native_server):
    """A WebSocket without token gets a ``close`` message with the reason and close code 1008."""
    server = native_server(**LOCKED)
    client = await server.ws_raw(subject="/news/a")
    await client.wait(lambda c: c.finished)
    assert client.close_code == 1008
    assert of_type(client.messages, "close")[0]["reason"] == "authentication required: no token"


@pytest_twisted.ensureDeferred
async def test_websocket_subscribe_and_publish_follow_the_grants(native_server):
    """Over a WebSocket, refused messages are ``nack``s in order; the connection stays open."""
    server = native_server(**LOCKED)
    client = await server.ws(subject="/news/a", token=token())
    client.send({"type": "subscribe", "subject": "/secret", "ref": 1})
    client.send({"type": "publish", "subject": "/chat/room", "fields": {"text": "hi"}, "ref": 2})
    await client.wait(lambda c: len([m for m in c.messages if m.get("ref")]) >= 2)
    replies = [m for m in client.messages if m.get("ref")]
    assert [(r["type"], r["ref"]) for r in replies] == [("nack", 1), ("ack", 2)]
    assert not client.finished


# -- application callbacks, answers that wait -----------------------------------------

def slow_authorizer(log: list[str], delay: float = 0.05) -> CallbackAuthorizer:
    """Answers after ``delay``: users from ``user=``, subjects under ``/ok`` only."""

    def join(credentials):
        log.append(f"join:{credentials.transport}")
        user = credentials.params.get("user")
        if user == "nobody":
            return later(ClientError("unknown user"), delay)
        return later(Identity(user, {"role": "test"}) if user else None, delay)

    def subscribe(session, subject):
        log.append(f"subscribe:{subject}")
        return later(subject.startswith("/ok"), delay)

    async def publish(session, subject):
        log.append(f"publish:{subject}")
        await later(None, delay)
        if not subject.startswith("/ok"):
            raise ClientError("publishing is closed here")

    return CallbackAuthorizer(join, subscribe, publish, bind=lambda c: c.params.get("user"))


@pytest_twisted.ensureDeferred
async def test_pushlet_requests_wait_for_an_asynchronous_authorizer(native_server):
    """Pushlet join, subscribe and publish wait for Deferred answers; refusals arrive as 403 or ``nack``."""
    server = native_server()
    log: list[str] = []
    server.push.authorizer = slow_authorizer(log)
    code, body = await get(server, "pushlet.srv", p_event="join", p_format="xml", user="nobody")
    assert (code, "unknown user" in body) == (403, True)
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml", user="bob"))
    sid = ack["p_id"]
    assert server.sessions[sid].user == "bob"
    [nack] = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/no", user="bob"))
    assert (nack["p_event"], nack["p_reason"]) == ("nack", "not allowed to subscribe to /no")
    [sub] = xml_events(await server.pushlet(p_event="subscribe", p_id=sid, p_subject="/ok", user="bob"))
    assert sub["p_event"] == "subscribe-ack"
    [pub] = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/x", user="bob"))
    assert (pub["p_event"], pub["p_reason"]) == ("nack", "publishing is closed here")
    [pub] = xml_events(await server.pushlet(p_event="publish", p_id=sid, p_subject="/ok/1", user="bob"))
    assert pub["p_event"] == "publish-ack"
    assert log == ["join:pushlet", "join:pushlet", "subscribe:/no", "subscribe:/ok", "publish:/x",
                   "publish:/ok/1"]


@pytest_twisted.ensureDeferred
async def test_pushlet_join_listen_waits_for_both_answers_then_streams(native_server):
    """``join-listen`` waits for the join and the subject's answers, then streams as usual."""
    server = native_server()
    server.push.authorizer = slow_authorizer([])
    feed = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/ok/a", user="eve")
    await feed.wait(lambda f: b"join-listen-ack" in f.raw, timeout=3)
    server.publish("/ok/a", "late but there")
    await feed.wait(lambda f: b"late but there" in f.raw)


@pytest_twisted.ensureDeferred
async def test_client_gone_while_the_authorizer_thinks_leaves_no_session(native_server):
    """A client that hangs up during an asynchronous join gets no session and nothing is written."""
    server = native_server()
    server.push.authorizer = slow_authorizer([], delay=0.3)
    feed = await server.pushlet_stream(p_event="join-listen", p_format="xml", p_subject="/ok", user="x")
    feed.disconnect()
    await sleep(0.5)
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_native_transports_wait_for_an_asynchronous_authorizer(native_server):
    """SSE connect, ``send`` messages and WebSocket messages wait for Deferred answers, in order."""
    server = native_server()
    server.push.authorizer = slow_authorizer([])
    feed = await server.opened("sse", subject="/ok/1", user="carol")
    session_id = feed.messages[0]["session"]
    assert server.sessions[session_id].user == "carol"
    code, replies = await server.send(session_id, [
        {"type": "subscribe", "subject": "/no", "ref": "a"},
        {"type": "hb", "ref": "b"},
        {"type": "publish", "subject": "/ok/1", "fields": {"text": "ok"}, "ref": "c"}], user="carol")
    assert code == 200
    assert [(r["type"], r["ref"]) for r in replies] == [("nack", "a"), ("ack", "b"), ("ack", "c")]
    await feed.wait(lambda f: "ok" in [m["fields"].get("text") for m in events(f.messages)])
    ws = await server.ws(subject="/ok/2", user="dave")
    ws.send({"type": "publish", "subject": "/no", "fields": {}, "ref": 1})
    ws.send({"type": "hb", "ref": 2})
    ws.send({"type": "subscribe", "subject": "/ok/3", "ref": 3})
    await ws.wait(lambda c: len([m for m in c.messages if m.get("ref")]) >= 3)
    assert [(m["type"], m["ref"]) for m in ws.messages if m.get("ref")] == [("nack", 1), ("ack", 2),
                                                                             ("ack", 3)]


@pytest_twisted.ensureDeferred
async def test_a_broken_authorizer_fails_closed(native_server):
    """An authorizer that raises something else than ClientError refuses (500 or ``nack``), logged."""
    server = native_server()

    def broken(*args):
        raise RuntimeError("bug")

    server.push.authorizer = CallbackAuthorizer(join=broken)
    code, body = await get(server, "pushlet.srv", p_event="join", p_format="xml")
    assert code == 500 and "authorization failed" in body
    server.push.authorizer = CallbackAuthorizer(subscribe=broken)
    [ack] = xml_events(await server.pushlet(p_event="join", p_format="xml"))
    [nack] = xml_events(await server.pushlet(p_event="subscribe", p_id=ack["p_id"], p_subject="/a"))
    assert (nack["p_event"], nack["p_reason"]) == ("nack", "authorization failed")
    assert ack["p_id"] in server.sessions


@pytest_twisted.ensureDeferred
async def test_websocket_gone_while_the_authorizer_thinks_leaves_no_session(native_server):
    """A WebSocket that drops during an asynchronous join leaves no session behind."""
    server = native_server()
    server.push.authorizer = slow_authorizer([], delay=0.3)
    client = await server.ws_raw(subject="/ok", user="gone")
    client.disconnect()
    await sleep(0.5)
    assert server.sessions == {}
