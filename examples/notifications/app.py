"""Notifications: per-user notifications pushed by pushpy, with unread counts and mark-as-read.

Run ``python examples/notifications/app.py --port 8080`` and open
http://127.0.0.1:8080/notifications/ in two browsers (sign in as two users).
Notifications reach every tab of their user, sent from Python
(:meth:`inbox.Inbox.notify`, behind the page's *Send* form) or by a back end
through pushpy's publish API::

    curl -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' \\
         -d '{"user": "alice", "subject": "/notifications", "fields": {"title": "Hi"}}' \\
         http://127.0.0.1:8080/pushlet/api/publish

Sign-in is a demo (a user name, no password): it sets a signed pushpy token
in an HttpOnly cookie, which :class:`pushpy.auth.TokenAuthorizer` turns into
the session's user when the page connects.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This example's modules, and the checkout's pushpy (an installed pushpy serves when there is none).
sys.path[:0] = [str(HERE), *([str(HERE.parents[1])] if (HERE.parents[1] / "pushpy").is_dir() else [])]

from inbox import MAX_BODY, MAX_TITLE, Inbox  # noqa: E402
from twisted.internet import endpoints  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Request  # noqa: E402
from twisted.web.static import File  # noqa: E402
from twisted.web.util import Redirect  # noqa: E402

from pushpy import ClientError, Config, PushServer  # noqa: E402
from pushpy.auth import TokenAuthorizer, read_token  # noqa: E402
from pushpy.web.site import build_site  # noqa: E402

log = Logger()

#: What a user name may be.
USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
#: How long a sign-in lasts (seconds).
SIGN_IN_SECONDS = 12 * 3600


class AppAPI(Resource):
    """The page's JSON calls under ``/notifications/api/``.

    ``POST login`` ``{"user"}``, ``POST logout``, ``GET inbox``, ``POST read``
    ``{"ids": [...]}`` or ``{"all": true}``, ``POST send`` ``{"to", "title",
    "body"}``.  Every POST needs a JSON body (a cross-site form cannot send
    one), and all but ``login`` the sign-in cookie.
    """

    isLeaf = True
    #: ``(method, name)`` to handler, filled in below the class.
    routes: dict[tuple[bytes, str], Any] = {}

    def __init__(self, inbox: Inbox, authorizer: TokenAuthorizer) -> None:
        super().__init__()
        self.inbox = inbox
        self.authorizer = authorizer

    def render_GET(self, request: Request) -> bytes:
        return self._answer(request, b"GET")

    def render_POST(self, request: Request) -> bytes:
        return self._answer(request, b"POST")

    def _answer(self, request: Request, method: bytes) -> bytes:
        name = request.postpath[0].decode("utf-8", "replace") if len(request.postpath) == 1 else ""
        handler = self.routes.get((method, name))
        try:
            if handler is None:
                raise ClientError(f"no {method.decode()} api/{name[:40]}", 404)
            body = _json_body(request) if method == b"POST" else {}
            result = handler(self, request, body)
        except ClientError as e:
            request.setResponseCode(e.status or 400)
            result = {"error": e.reason}
        data = json.dumps(result).encode()
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return data

    def user(self, request: Request) -> str:
        token = request.getCookie(self.authorizer.cookie.encode())
        if not token:
            raise ClientError("not signed in", 401)
        try:
            return read_token(self.authorizer.secret, token.decode("ascii", "replace"), time.time())["u"]
        except ClientError:
            raise ClientError("not signed in", 401) from None

    def post_login(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        user = _user_name(body.get("user"), "user")
        token = self.authorizer.mint(user, expires_in=SIGN_IN_SECONDS)
        request.addCookie(self.authorizer.cookie.encode(), token.encode(), path=b"/", httpOnly=True,
                          sameSite="strict", max_age=str(SIGN_IN_SECONDS).encode())
        return {"user": user}

    def post_logout(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        request.addCookie(self.authorizer.cookie.encode(), b"", path=b"/", httpOnly=True,
                          sameSite="strict", max_age=b"0")
        return {}

    def get_inbox(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        user = self.user(request)
        return {"user": user, **self.inbox.listing(user)}

    def post_read(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        user = self.user(request)
        ids = body.get("ids")
        if body.get("all") is True:
            ids = None
        elif not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ClientError('give "ids" (a list of ids) or "all": true')
        return {"marked": self.inbox.mark_read(user, ids), "unread": self.inbox.unread(user)}

    def post_send(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        sender = self.user(request)
        to = _user_name(body.get("to"), "to")
        title, text = body.get("title"), body.get("body", "")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            raise ClientError(f"title: 1 to {MAX_TITLE} characters")
        if not isinstance(text, str) or len(text) > MAX_BODY:
            raise ClientError(f"body: at most {MAX_BODY} characters")
        self.inbox.notify(to, title.strip(), text, sender=sender)
        return {"sent": to}


AppAPI.routes = {(b"POST", "login"): AppAPI.post_login, (b"POST", "logout"): AppAPI.post_logout,
                 (b"GET", "inbox"): AppAPI.get_inbox, (b"POST", "read"): AppAPI.post_read,
                 (b"POST", "send"): AppAPI.post_send}


def _json_body(request: Request) -> dict[str, Any]:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise ClientError("send application/json", 415)
    try:
        body = json.loads(request.content.read(65536) or b"{}")
    except ValueError:
        raise ClientError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ClientError("the body must be a JSON object")
    return body


def _user_name(value: object, what: str) -> str:
    name = value.strip().lower() if isinstance(value, str) else ""
    if not USER_NAME.fullmatch(name):
        raise ClientError(f"{what}: a user name of 1 to 32 letters, digits, '_', '.' or '-'")
    return name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--api-key", default=None,
                        help="key of pushpy's publish API (default: a random key, printed at start)")
    return parser.parse_args(argv)


def make_server(api_key: str) -> tuple[PushServer, Inbox]:
    """A server whose sessions belong to the user of their token cookie, and its inbox."""
    authorizer = TokenAuthorizer(secrets.token_urlsafe(32))
    server = PushServer(Config(api_key=api_key), authorizer=authorizer)
    return server, Inbox(server)


def make_site(server: PushServer, inbox: Inbox):
    """pushpy's site (``/pushlet/``) with the example at ``/notifications/``, and ``/`` leading to it."""
    site = build_site(server)
    page = File(str(HERE / "static"))
    page.putChild(b"api", AppAPI(inbox, server.authorizer))
    site.resource.putChild(b"notifications", page)
    site.resource.putChild(b"", Redirect(b"/notifications/"))
    return site


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor

    args = parse_args(argv)
    api_key = args.api_key or secrets.token_urlsafe(18)
    info = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout), [info])],
                                     redirectStandardIO=False)
    server, inbox = make_server(api_key)
    server.startService()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
    endpoint.listen(make_site(server, inbox)).addCallbacks(
        lambda port: log.info("notifications on http://{host}:{port}/notifications/ "
                              "(publish API key: {key})",
                              host=args.interface, port=port.getHost().port,
                              key=api_key if not args.api_key else "as given"),
        lambda failure: (log.failure("cannot listen", failure), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
