"""The origin policy: same-origin always, a CORS allow-list, preflights, the WebSocket Origin check."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import connectWS
from native_client import _WSFactory

from pushpy.web.origins import OriginPolicy, normalize_origin

pytest_plugins = ("native_fixtures",)


@pytest.mark.parametrize("origin, normal", [
    ("https://App.Example.com", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),
    ("http://app.example.com:80/", "http://app.example.com"),
    ("http://app.example.com:8080", "http://app.example.com:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("null", "null"),
    ("app.example.com", ""),
    ("https://a.example/path", ""),
    ("http://a.example:99999", ""),
    ("", ""),
])
def test_origins_are_normalized(origin, normal):
    """Origins compare lowercased, without default ports; malformed ones normalize to nothing."""
    assert normalize_origin(origin) == normal


@pytest.mark.parametrize("origin, host, same", [
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
    ("https://example.com", "example.com", True),         # TLS ended by a proxy: scheme not compared
    ("https://example.com", "example.com:443", True),
    ("http://example.com", "example.com:8080", False),
    ("http://evil.example", "example.com", False),
    ("null", "example.com", False),
    ("http://example.com", None, False),
])
def test_same_origin_compares_host_and_port(origin, host, same):
    """A page on the host the request was sent to is same-origin, whatever the scheme."""
    assert OriginPolicy().same_origin(origin, host) is same


def test_policy_verdicts():
    """No Origin or the same origin pass; listed origins and ``*`` pass as such; others are refused."""
    policy = OriginPolicy("https://app.example.com, http://localhost:3000")
    assert policy.check(None, "h") == "same"
    assert policy.check("http://h", "h") == "same"
    assert policy.check("https://APP.example.com:443", "h") == "listed"
    assert policy.check("https://evil.example", "h") is None
    assert OriginPolicy("*").check("https://evil.example", "h") == "any"


async def request(server, method: str, path: str, headers: dict[str, str], **params: str):
    response = await server.client.request(method, server.url(path, params), timeout=5,
                                           headers={k: [v] for k, v in headers.items()})
    return response, await treq.content(response)


@pytest.mark.parametrize("path", ["pushlet.srv", "poll", "send", "api/publish"])
@pytest_twisted.ensureDeferred
async def test_foreign_origin_is_refused_on_every_http_endpoint(native_server, path):
    """A request from an origin not allowed is a 403 naming the key, before the endpoint runs."""
    server = native_server()
    response, body = await request(server, "GET", path, {"Origin": "https://evil.example"},
                                   p_event="join", subject="/a")
    assert response.code == 403
    assert b"origin not allowed: https://evil.example (origins.allowed)" in body
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_same_origin_and_originless_requests_pass_without_cors_headers(native_server):
    """A page of the server itself (or a non-browser client) is served with no CORS headers."""
    server = native_server()
    for headers in ({}, {"Origin": server.origin}):
        response, body = await request(server, "GET", "poll", headers, subject="/a")
        assert response.code == 200, body
        assert not response.headers.hasHeader(b"access-control-allow-origin")


@pytest_twisted.ensureDeferred
async def test_listed_origin_gets_cors_headers_and_preflight(native_server):
    """A listed origin reads answers with credentials; its preflight lists methods and headers."""
    server = native_server(origins_allowed="https://app.example")
    response, body = await request(server, "GET", "poll", {"Origin": "https://app.example"}, subject="/a")
    assert response.code == 200
    headers = response.headers
    assert headers.getRawHeaders(b"access-control-allow-origin") == [b"https://app.example"]
    assert headers.getRawHeaders(b"access-control-allow-credentials") == [b"true"]
    assert b"Origin" in headers.getRawHeaders(b"vary")[0]
    response, body = await request(server, "OPTIONS", "send", {
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type, X-Pushpy-Key"})
    assert response.code == 204 and body == b""
    assert response.headers.getRawHeaders(b"access-control-allow-methods") == [b"GET, POST, OPTIONS"]
    assert response.headers.getRawHeaders(b"access-control-allow-headers") == [b"content-type, x-pushpy-key"]
    response, _ = await request(server, "OPTIONS", "send", {
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-Evil"})
    assert response.code == 403
    response, _ = await request(server, "OPTIONS", "send", {
        "Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
    assert response.code == 403
    assert not response.headers.hasHeader(b"access-control-allow-origin")


@pytest_twisted.ensureDeferred
async def test_wildcard_allows_every_origin_without_credentials(native_server):
    """``origins.allowed=*`` answers ``Access-Control-Allow-Origin: *`` and never allows credentials."""
    server = native_server(origins_allowed="*")
    response, _ = await request(server, "GET", "poll", {"Origin": "https://any.example"}, subject="/a")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"access-control-allow-origin") == [b"*"]
    assert not response.headers.hasHeader(b"access-control-allow-credentials")


async def ws_with_origin(server, origin: str | None):
    url = server.url("ws", {"subject": "/a"}).replace("http://", "ws://", 1)
    factory = _WSFactory(url)
    factory.setSessionParameters(url=url, origin=origin)
    connectWS(factory)
    return await factory.opened


@pytest_twisted.ensureDeferred
async def test_websocket_checks_the_origin_in_its_handshake(native_server):
    """A WebSocket from a foreign origin is refused with 403 in the handshake; same or listed origins open."""
    server = native_server(origins_allowed="https://app.example")
    with pytest.raises(Exception) as refused:
        await ws_with_origin(server, "https://evil.example")
    assert "403" in str(refused.value) or "origin not allowed" in str(refused.value)
    assert server.sessions == {}
    for origin in (server.origin, "https://app.example", None):
        client = await ws_with_origin(server, origin)
        await client.until(1, "open")
        client.disconnect()
