"""HTTP helpers shared by every transport: cache headers, error pages, parameters."""

from __future__ import annotations

import re

from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from pushpy.errors import ClientError
from pushpy.wire.escape import html_text
from pushpy.wire.params import parse_event_element, parse_query

#: The no-cache headers of spec 6.1; ``Cache-Control`` appears twice.
NO_CACHE = (
    (b"Expires", b"Sat, 6 May 1995 12:00:00 GMT"),
    (b"Cache-Control", b"no-store, no-cache, must-revalidate"),
    (b"Cache-Control", b"post-check=0, pre-check=0"),
    (b"Pragma", b"no-cache"),
)


def no_cache(request: Request) -> None:
    """Set the no-cache headers of spec 6.1 on ``request``."""
    headers = request.responseHeaders
    for name, value in NO_CACHE:
        headers.addRawHeader(name, value)


def streaming(request: Request) -> None:
    """Headers of a long-lived response: no proxy buffering."""
    request.responseHeaders.setRawHeaders(b"X-Accel-Buffering", [b"no"])


def error_page(request: Request, status: int, message: str) -> bytes:
    """An HTML error page with ``message`` (escaped), as the servlet container gave."""
    request.setResponseCode(status)
    no_cache(request)
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/html;charset=UTF-8"])
    text = html_text(message)
    body = (f"<html><head><title>Error {status}</title></head><body>"
            f"<h1>HTTP Status {status} - {text}</h1><p>{text}</p></body></html>").encode()
    request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
    return body


def request_params(request: Request, *, limit: int, max_bytes: int) -> dict[str, str]:
    """The parameters of a GET query or POST body (spec 2.2); first value wins.

    A POST body is either one ``<event .../>`` element or a form-encoded
    query; query-string parameters come first.
    """
    uri = request.uri
    if len(uri) > max_bytes:
        raise ClientError(f"Request too large (at most {max_bytes} bytes)", 414)
    _, _, query = uri.partition(b"?")
    params = parse_query(query, limit=limit)
    if request.method == b"POST" and request.content is not None:
        content = request.content
        content.seek(0, 2)
        size = content.tell()
        if size > max_bytes:
            raise ClientError(f"Request too large (at most {max_bytes} bytes)", 413)
        content.seek(0)
        body = content.read()
        if body.lstrip()[:1] == b"<":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("latin-1")
            parse_event_element(text, params, limit=limit)
        else:
            parse_query(body.strip(), params, limit=limit)
    return params


def client_address(request: Request) -> str:
    """The peer's address as text."""
    peer = request.getClientAddress()
    return getattr(peer, "host", None) or str(peer)


#: A request line whose target holds raw spaces or bytes Twisted refuses.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (.*[^\x21-\x7e].*) (HTTP/1\.[01])\Z", re.S)
_UNSAFE = re.compile(rb"[^\x21-\x7e]")


def lenient_request_line(line: bytes) -> bytes:
    """Percent-encode raw spaces and non-ASCII bytes in a request line's target.

    The Java client and the AJAX client do not URL-encode values (spec 2.2,
    14.1.3); Twisted answers such a request line with a bare 400.  Encoding
    the bytes keeps their meaning: the query decoder turns ``%20`` back into
    a space and decodes the bytes as UTF-8, else ISO-8859-1.  Header lines
    never match (a field name is followed by ``:``).
    """
    match = _REQUEST_LINE.match(line)
    if match is None:
        return line
    target = _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], match.group(2))
    return b" ".join((match.group(1), target, match.group(3)))


class LenientHTTPChannel(HTTPChannel):
    """An ``HTTPChannel`` accepting raw spaces and bytes in the request target."""

    def lineReceived(self, line: bytes) -> None:
        super().lineReceived(lenient_request_line(line))
