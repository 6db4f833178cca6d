"""The origin policy of browser requests: same-origin, a CORS allow-list, preflights.

A browser names the page that makes a cross-origin request in ``Origin``.
:class:`OriginGuard` wraps an endpoint: a request without ``Origin`` (not a
browser, or a same-origin navigation) or from the server's own origin passes;
one from an origin listed in ``origins.allowed`` passes with the CORS headers
that let the page read the answer (and ``OPTIONS`` preflights are answered);
any other is refused with 403 before the endpoint sees it, so a foreign page
can neither read a stream nor make a session subscribe or publish.  The
WebSocket endpoint applies the same :class:`OriginPolicy` in its handshake.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.web.resource import Resource
from twisted.web.server import Request

from pushpy.config import comma_list
from pushpy.web.http import error_page

#: Request headers a cross-origin page may send (a preflight asks for them).
ALLOWED_HEADERS = ("content-type", "authorization", "last-event-id", "x-pushpy-key", "x-requested-with")
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lowercased, without a default port; ``""`` if malformed."""
    text = origin.strip().lower()
    if text == "null":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and str(port) != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{port}"
    return f"{parts.scheme}://{host}"


class OriginPolicy:
    """Which origins may use the endpoints: the server's own, and ``origins.allowed``.

    :param allowed: a comma list of origins; ``*`` allows every origin,
        without credentials (cookies).
    """

    def __init__(self, allowed: str = "") -> None:
        items = comma_list(allowed)
        self.any = "*" in items
        self.allowed = frozenset(filter(None, (normalize_origin(o) for o in items if o != "*")))

    def same_origin(self, origin: str, host: str | None) -> bool:
        """Whether ``origin`` names the host the request was sent to (any scheme).

        The scheme is not compared: behind a TLS-terminating proxy the page is
        ``https`` while the request reaches pushpy over ``http``.
        """
        if not host:
            return False
        normal = normalize_origin(origin)
        if not normal or normal == "null":
            return False
        scheme, _, netloc = normal.partition("://")
        host = host.strip().lower()
        name, sep, port = host.rpartition(":")
        if sep and not host.endswith("]") and port == _DEFAULT_PORTS.get(scheme):
            host = name
        return netloc == host

    def check(self, origin: str | None, host: str | None) -> str | None:
        """``"same"``, ``"listed"``, ``"any"`` (allowed) or ``None`` (refused)."""
        if origin is None or self.same_origin(origin, host):
            return "same"
        if normalize_origin(origin) in self.allowed:
            return "listed"
        if self.any:
            return "any"
        return None


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class OriginGuard(Resource):
    """Applies an :class:`OriginPolicy` in front of one leaf endpoint."""

    isLeaf = True

    def __init__(self, resource: Any, policy: OriginPolicy) -> None:
        super().__init__()
        self.resource = resource
        self.policy = policy

    def render(self, request: Request) -> bytes | int:
        origin = _header(request, b"origin")
        verdict = self.policy.check(origin, _header(request, b"host"))
        if verdict is None:
            return error_page(request, 403, f"origin not allowed: {origin[:100]} (origins.allowed)")
        if verdict != "same":
            headers = request.responseHeaders
            if verdict == "listed":
                headers.setRawHeaders(b"Access-Control-Allow-Origin", [origin.encode("latin-1")])
                headers.setRawHeaders(b"Access-Control-Allow-Credentials", [b"true"])
            else:
                headers.setRawHeaders(b"Access-Control-Allow-Origin", [b"*"])
            headers.addRawHeader(b"Vary", b"Origin")
            if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
                return self._preflight(request)
        return self.resource.render(request)

    def _preflight(self, request: Request) -> bytes:
        headers = request.responseHeaders
        asked = _header(request, b"access-control-request-headers") or ""
        names = [name.strip().lower() for name in asked.split(",") if name.strip()]
        refused = [name for name in names if name not in ALLOWED_HEADERS]
        if refused:
            return error_page(request, 403, f"request header not allowed: {refused[0][:60]}")
        request.setResponseCode(204)
        headers.setRawHeaders(b"Access-Control-Allow-Methods", [b"GET, POST, OPTIONS"])
        if names:
            headers.setRawHeaders(b"Access-Control-Allow-Headers", [", ".join(names).encode()])
        headers.setRawHeaders(b"Access-Control-Max-Age", [b"600"])
        headers.setRawHeaders(b"Content-Length", [b"0"])
        return b""
