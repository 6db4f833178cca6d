"""``POST /pushlet/api/publish`` over loopback: the API key, JSON only, batches, targets."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from native_client import events
from server_support import sleep

pytest_plugins = ("native_fixtures",)

KEY = "api-key-for-tests-0123456789"


async def post(server, body, *, headers=None, raw: bytes | None = None):
    """POST ``body`` as JSON (or ``raw`` bytes) to the API; status and decoded body."""
    default = {"Content-Type": ["application/json"], "Authorization": [f"Bearer {KEY}"]}
    all_headers = {**default, **(headers or {})}
    all_headers = {k: v for k, v in all_headers.items() if v is not None}
    data = raw if raw is not None else json.dumps(body).encode()
    response = await server.client.post(server.url("api/publish"), data=data, headers=all_headers,
                                        timeout=5)
    content = await treq.content(response)
    try:
        return response.code, json.loads(content), response
    except ValueError:
        return response.code, content.decode("utf-8", "replace"), response


@pytest_twisted.ensureDeferred
async def test_api_is_disabled_without_a_configured_key(native_server):
    """With no ``api.key`` the endpoint answers 404 saying how to enable it."""
    server = native_server()
    code, body, _ = await post(server, {"subject": "/a"})
    assert code == 404
    assert "set api.key" in body["error"]


@pytest.mark.parametrize("headers, code, reason", [
    ({"Authorization": None}, 401, "API key required"),
    ({"Authorization": ["Bearer wrong"]}, 403, "invalid API key"),
    ({"Authorization": [f"Basic {KEY}"]}, 401, "API key required"),
    ({"Authorization": None, "X-Pushpy-Key": ["nope"]}, 403, "invalid API key"),
    ({"Content-Type": ["text/plain"]}, 415, "application/json"),
    ({"Content-Type": ["application/x-www-form-urlencoded"]}, 415, "application/json"),
])
@pytest_twisted.ensureDeferred
async def test_api_refuses_without_the_key_or_json(native_server, headers, code, reason):
    """A missing or wrong key, or a body that is not JSON, is refused with the status and reason."""
    server = native_server(api_key=KEY)
    got, body, response = await post(server, {"subject": "/a", "fields": {"x": "1"}}, headers=headers)
    assert (got, reason in body["error"]) == (code, True)
    if code == 401:
        assert response.headers.getRawHeaders("www-authenticate") == ['Bearer realm="pushpy"']


@pytest_twisted.ensureDeferred
async def test_api_publishes_one_event_and_batches_to_subscribers(native_server):
    """One event or a batch reach matching subscribers in order; the answer lists the ids."""
    server = native_server(api_key=f"old-key-0123456789,{KEY}")
    feed = await server.opened("sse", subject="/api/")
    code, answer, _ = await post(server, {"subject": "/api/one", "fields": {"text": "1", "n": 5}},
                                 headers={"Authorization": None, "X-Pushpy-Key": [KEY]})
    assert code == 200 and answer["published"] == 1
    code, answer, _ = await post(server, {"events": [
        {"subject": "/api/two", "fields": {"text": "2"}},
        {"subject": "/elsewhere", "fields": {"text": "not for us"}},
        {"subject": "/api/three", "fields": {"text": "3", "flag": True}}]})
    assert code == 200 and answer["published"] == 3 and all(answer["ids"])
    await feed.wait(lambda f: len(events(f.messages)) >= 3)
    got = events(feed.messages)
    assert [m["fields"]["text"] for m in got] == ["1", "2", "3"]
    assert got[0]["fields"]["n"] == "5" and got[2]["fields"]["flag"] == "true"
    assert got[1]["id"] == answer["ids"][0]


@pytest_twisted.ensureDeferred
async def test_api_session_target_and_broadcast(native_server):
    """``session`` unicasts to one session whatever its subjects; ``broadcast`` reaches everyone."""
    server = native_server(api_key=KEY)
    one = await server.opened("sse", subject="/x")
    two = await server.opened("sse", subject="/y")
    session_id = one.messages[0]["session"]
    code, answer, _ = await post(server, [{"session": session_id, "fields": {"text": "just you"}},
                                          {"broadcast": True, "fields": {"text": "all"}}])
    assert code == 200 and all(answer["ids"])  # kept in history for resumes: they have ids
    await one.wait(lambda f: len(events(f.messages)) >= 2)
    await two.wait(lambda f: len(events(f.messages)) >= 1)
    assert [m["fields"]["text"] for m in events(one.messages)] == ["just you", "all"]
    await sleep(0.05)
    assert [m["fields"]["text"] for m in events(two.messages)] == ["all"]


@pytest_twisted.ensureDeferred
async def test_api_user_target_without_sessions_is_404(native_server):
    """A ``user`` with no session anywhere refuses the batch whole: 404 naming the event and user."""
    server = native_server(api_key=KEY)
    feed = await server.opened("sse", subject="/")
    code, answer, _ = await post(server, [{"subject": "/ok", "fields": {"a": "1"}},
                                          {"user": "alice", "subject": "/u", "fields": {"a": "1"}}])
    assert code == 404 and answer["error"] == "event 1: user has no session: alice"
    await sleep(0.05)
    assert events(feed.messages) == []


@pytest.mark.parametrize("body, reason", [
    ([{"subject": "/ok"}, {"subject": 5}], "event 1: 'subject' must be a string"),
    ([{"subject": "/ok"}, {"fields": {"a": "1"}}], "event 1: no subject provided"),
    ({"subject": "/a", "fields": {"bad name": "1"}}, "event 0: invalid field name: bad name"),
    ({"subject": "/a", "fields": {"a": {"nested": 1}}}, "must be a string, number or boolean"),
    ({"subject": "/a", "session": "s", "user": "u"}, "at most one of"),
    ({"subject": "/a", "to": "s"}, "unknown key 'to'"),
    ({"subject": "/a", "broadcast": "yes"}, "'broadcast' must be true"),
    ("just a string", "an event must be a JSON object"),
    ([], "no events to publish"),
    ({"subject": "/a", "fields": {"pad": "x" * 40_000}}, "limit.event.bytes"),
])
@pytest_twisted.ensureDeferred
async def test_api_refuses_a_bad_batch_whole(native_server, body, reason):
    """One bad event refuses the whole batch with 400 naming it; nothing is published."""
    server = native_server(api_key=KEY)
    feed = await server.opened("sse", subject="/")
    code, answer, _ = await post(server, body)
    assert code == 400
    assert reason in answer["error"]
    await sleep(0.05)
    assert events(feed.messages) == []


@pytest.mark.parametrize("raw, code", [(b"{not json", 400), (b"\xff\xfe", 400)])
@pytest_twisted.ensureDeferred
async def test_api_refuses_bodies_that_are_not_utf8_json(native_server, raw, code):
    """A body that is not UTF-8 JSON is a 400."""
    server = native_server(api_key=KEY)
    got, body, _ = await post(server, None, raw=raw)
    assert got == code and "not valid UTF-8 JSON" in body["error"]


@pytest_twisted.ensureDeferred
async def test_api_batch_size_and_body_limits(native_server):
    """``api.max.events`` and ``limit.body.bytes`` bound one request (400 and 413)."""
    server = native_server(api_key=KEY, api_max_events=3, limit_body_bytes=2_000)
    code, body, _ = await post(server, [{"subject": "/a"}] * 4)
    assert code == 400 and "api.max.events" in body["error"]
    code, body, _ = await post(server, [{"subject": "/a", "fields": {"p": "x" * 900}}] * 3)
    assert code == 413


@pytest_twisted.ensureDeferred
async def test_cross_origin_form_post_cannot_publish(native_server):
    """A browser form post from another site (cookies, form body, no key header) publishes nothing."""
    server = native_server(api_key=KEY)
    feed = await server.opened("sse", subject="/")
    response = await server.client.post(
        server.url("api/publish"), data=b"subject=%2Fa&fields=x",
        headers={"Content-Type": ["application/x-www-form-urlencoded"], "Origin": ["https://evil.example"],
                 "Cookie": [f"pushpy_token={KEY}; api_key={KEY}"]}, timeout=5)
    assert response.code == 403  # refused by the origin policy before anything else
    await treq.content(response)
    same_site_no_key = await server.client.post(
        server.url("api/publish"), data=b'{"subject": "/a"}',
        headers={"Content-Type": ["application/json"], "Cookie": [f"api_key={KEY}; pushpy_token={KEY}"]},
        timeout=5)
    assert same_site_no_key.code == 401  # cookies are never read as the key
    await treq.content(same_site_no_key)
    await sleep(0.05)
    assert events(feed.messages) == []


@pytest_twisted.ensureDeferred
async def test_api_answers_only_post(native_server):
    """GET on the API is 405."""
    server = native_server(api_key=KEY)
    code, _ = await server.get_json("api/publish")
    assert code == 405
