"""The ``leave`` beacon pushpy.js sends when its page is closed: ``POST send`` with a text/plain body.

``navigator.sendBeacon(url, string)`` posts the string as ``text/plain;charset=UTF-8`` (a CORS-safelisted
type: no preflight) with the page's ``Origin``; the answer is never read.  These tests send exactly that
request over real loopback HTTP.
"""

from __future__ import annotations

import time

import pytest_twisted
import treq
from native_client import events

from pushpy.auth import mint_token

pytest_plugins = ("native_fixtures",)

SECRET = "s3cret-for-the-beacon-tests-0123456789"
BEACON_TYPE = "text/plain;charset=UTF-8"


def token(user: str) -> str:
    return mint_token(SECRET, user, subscribe=["/room", "/presence/"], publish=[], expires_in=600)


async def beacon(server, session: str, key: str | None, *, origin: str | None = None,
                 **params: str) -> tuple[int, bytes]:
    """What ``navigator.sendBeacon`` sends for a leave: the status and body of the answer."""
    headers = {"Content-Type": [BEACON_TYPE], "Origin": [origin or server.origin]}
    url = server.url("send", {"session": session, "session_key": key, **params})
    response = await server.client.post(url, data=b'{"type":"leave"}', headers=headers, timeout=5)
    return response.code, await treq.content(response)


@pytest_twisted.ensureDeferred
async def test_beacon_leave_ends_the_session_and_its_presence_at_once(native_server):
    """A same-origin text/plain leave with the session key and token ends the session at once: the user
    leaves presence, and the answer is the ack."""
    server = native_server(auth_token_secret=SECRET)
    watcher = await server.ws(subject="/presence/room", token=token("wendy"))
    code, ann = await server.get_json("poll", subject="/room", token=token("ann"))
    assert code == 200
    await watcher.wait(lambda w: len(events(w.messages)) >= 1)
    started = time.monotonic()
    code, body = await beacon(server, ann["session"], ann["session_key"], token=token("ann"))
    assert (code, body) == (200, b'[{"type":"ack","op":"leave"}]')
    assert ann["session"] not in server.sessions
    await watcher.wait(lambda w: len(events(w.messages)) >= 2)
    assert time.monotonic() - started < 10  # at once, not at the lease's end
    assert [(m["fields"]["user"], m["fields"]["action"]) for m in events(watcher.messages)] == [
        ("ann", "join"), ("ann", "leave")]


@pytest_twisted.ensureDeferred
async def test_beacon_with_a_wrong_or_missing_key_is_refused_and_harms_nothing(native_server):
    """A leave without the session key, with a wrong one, or a bound session's without its token, is a 403;
    the session lives on and its own client still uses it."""
    server = native_server(auth_token_secret=SECRET)
    code, ann = await server.get_json("poll", subject="/room", token=token("ann"))
    session, key = ann["session"], ann["session_key"]
    for wrong_key, params, reason in [
            (None, {"token": token("ann")}, b"session_key required"),
            ("", {"token": token("ann")}, b"session_key required"),
            (key[:-2] + "xx", {"token": token("ann")}, b"wrong session_key"),
            (key, {}, b"")]:  # the key without the user's credentials
        code, body = await beacon(server, session, wrong_key, **params)
        assert code == 403 and reason in body, (wrong_key, params, body)
        assert session in server.sessions
    code, body = await server.get_json("presence", subject="/room", token=token("wendy"))
    assert body["users"] == {"ann": 1}
    code, answer = await server.get_json("poll", session=session, token=token("ann"))
    assert code == 200 and answer["session"] == session


@pytest_twisted.ensureDeferred
async def test_beacon_from_a_foreign_origin_is_refused(native_server):
    """A cross-origin beacon (no preflight: text/plain) is refused with 403 like any foreign request, even
    with the right key; a listed origin's is served."""
    server = native_server(origins_allowed="https://app.example")
    code, ann = await server.get_json("poll", subject="/room")
    code, body = await beacon(server, ann["session"], ann["session_key"], origin="https://evil.example")
    assert code == 403 and b"origin not allowed" in body
    assert ann["session"] in server.sessions
    code, body = await beacon(server, ann["session"], ann["session_key"], origin="https://app.example")
    assert (code, body) == (200, b'[{"type":"ack","op":"leave"}]')
    assert ann["session"] not in server.sessions
    code, body = await beacon(server, ann["session"], ann["session_key"])
    assert code == 404  # a second beacon (another tab's close, a retry) finds nothing to end
