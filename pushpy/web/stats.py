# test-case-name: tests.ops.test_metrics
"""``<root>stats`` (JSON) and ``<root>metrics`` (Prometheus), and counting request errors.

:func:`watch_site` makes a site count every response it answers with an
error status (by kind, with the reason an error page gave) and log it as
one line; the numbers themselves live in :mod:`pushpy.metrics`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from pushpy.metrics import error_kind, registry, snapshot
from pushpy.web.http import no_cache

if TYPE_CHECKING:
    from pushpy.server import PushServer

log = Logger()


class StatsResource(Resource):
    """``GET <root>stats``: :func:`pushpy.metrics.snapshot` as JSON."""

    isLeaf = True

    def __init__(self, server: PushServer) -> None:
        super().__init__()
        self.push = server

    def render_GET(self, request: Request) -> bytes:
        body = json.dumps(snapshot(self.push), separators=(",", ":")).encode()
        no_cache(request)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        return body


class MetricsResource(Resource):
    """``GET <root>metrics``: the Prometheus text exposition of the server's numbers."""

    isLeaf = True

    def __init__(self, server: PushServer) -> None:
        super().__init__()
        self.registry = registry(server)

    def render_GET(self, request: Request) -> bytes:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.registry)
        no_cache(request)
        request.responseHeaders.setRawHeaders(b"Content-Type", [CONTENT_TYPE_LATEST.encode()])
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
        return body


def watch_site(site: Site, server: PushServer) -> None:
    """Count and log every error response of ``site`` (status 400 and above).

    The reason is the text :func:`pushpy.web.http.error_page` wrote, when it
    wrote the page.  Counting happens when a response finishes (Twisted's
    access-log hook), never per event.
    """
    original = site.log

    def logged(request: Request) -> None:
        code = request.code
        if code >= 400:
            _record(server, request, code)
        original(request)

    site.log = logged  # type: ignore[method-assign]


def _record(server: PushServer, request: Request, code: int) -> None:
    kind = error_kind(code)
    path = (request.path or b"").decode("latin-1")
    method = (request.method or b"").decode("latin-1")
    reason = str(getattr(request, "pushpy_error", "") or _phrase(request))
    server.metrics.record_error(kind, when=server.clock.seconds(), status=code, path=path, reason=reason)
    emit: Any = log.warn if code >= 500 else log.info
    emit("refused {method} {path}: HTTP {status} {reason}", method=method, path=path, status=code,
         reason=reason, kind=kind)


def _phrase(request: Request) -> str:
    phrase = getattr(request, "code_message", b"") or b""
    return phrase.decode("latin-1") if isinstance(phrase, bytes) else str(phrase)


def stats_resources(server: PushServer) -> dict[bytes, Resource]:
    """``stats`` and ``metrics`` to mount beside the endpoints (none when ``metrics.enabled`` is off)."""
    if not server.config.metrics_enabled:
        return {}
    return {b"stats": StatsResource(server), b"metrics": MetricsResource(server)}
