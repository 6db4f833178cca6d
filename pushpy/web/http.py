"""HTTP helpers shared by every transport: cache headers, error pages, parameters."""

from __future__ import annotations

import re

from twisted.internet import tcp
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
    request.pushpy_error = message  # the reason the error stats keep (pushpy.web.stats)
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
    """An ``HTTPChannel`` accepting raw spaces and bytes in the request target.

    It also refuses a request body larger than ``max_body`` bytes (0: no
    limit) with 413 before reading it: by its ``Content-Length``, or, for a
    chunked body, once that many bytes have arrived.
    """

    max_body = 0
    _body_read = 0
    _refused = False

    def lineReceived(self, line: bytes) -> None:
        super().lineReceived(lenient_request_line(line))

    def allHeadersReceived(self) -> None:
        self._body_read = 0
        super().allHeadersReceived()
        if self.max_body and self.length is not None and self.length > self.max_body:
            self._too_large()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.max_body and not self._handlingRequest:
            self._body_read += len(data)
            # Framing and a pipelined next request may come with the body: some slack.
            if self._body_read > self.max_body + 65_536:
                self._too_large()
                return
        super().rawDataReceived(data)

    def _too_large(self) -> None:
        self._refused = True
        message = f"Request too large (at most {self.max_body} bytes, limit.body.bytes)".encode()
        self.transport.write(b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\n"
                             b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(message), message))
        self.loseConnection()


def channel_class(max_body: int) -> type[LenientHTTPChannel]:
    """A :class:`LenientHTTPChannel` refusing bodies over ``max_body`` bytes."""
    return type("PushpyHTTPChannel", (LenientHTTPChannel,), {"max_body": max_body})


def write_now(channel: object, data: bytes) -> None:
    """Write ``data`` to an HTTP channel's connection, sending at once when it can.

    Twisted buffers every write, asks epoll to watch the socket, sends on the
    next turn and stops watching: three system calls for one delivery.  When
    the connection is a plain TCP socket with nothing buffered, one ``send``
    does it; whatever the kernel does not take is buffered by the transport as
    usual (so back-pressure and producers work unchanged).
    """
    transport = getattr(channel, "transport", None)
    if not send_now(transport, data):
        channel.write(data)  # type: ignore[attr-defined]


def send_now(transport: object, data: bytes) -> bool:
    """Write ``data`` to a plain TCP ``transport`` with nothing buffered (see :func:`write_now`).

    Returns ``False``, having written nothing, for any other transport (TLS,
    a fake in tests) or one with buffered or closing state: the caller writes
    the usual way then.
    """
    if (type(transport) is not tcp.Server or transport.dataBuffer or transport._tempDataBuffer
            or not transport.connected or transport.disconnecting):
        return False
    try:
        sent = transport.socket.send(data)
    except OSError:
        sent = 0  # would block, or an error the transport will report on its own write
    if sent < len(data):
        transport.write(data[sent:])
    return True
