"""A tiny JSON API resource shared by the examples (plain Twisted; not part of pushpy).

``JsonApi(user_of)`` is a leaf resource: ``GET /api/NAME`` and ``POST
/api/NAME`` (a JSON object body, ``Content-Type: application/json``, which a
form on another site cannot send without a CORS preflight) call the function
registered for NAME with the request, the body (POST only) and the user that
``user_of(token)`` finds from the ``pushpy_token`` cookie; a function may
return a Deferred.  Answers are JSON; an :class:`ApiError` becomes
``{"error": reason}`` with its status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

COOKIE = "pushpy_token"
MAX_BODY = 16384


class ApiError(Exception):
    """A refused request: ``reason`` is shown to the user, ``status`` is the HTTP status."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class JsonApi(Resource):
    """Routes ``GET``/``POST`` by the last path segment to registered functions."""

    isLeaf = True
    log = Logger()

    def __init__(self, user_of: Callable[[str | None], Any]) -> None:
        super().__init__()
        self.user_of = user_of
        self.routes: dict[tuple[bytes, str], tuple[Callable[..., Any], bool]] = {}

    def get(self, name: str, *, public: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``function(request, user)`` for ``GET name``."""
        return self._register(b"GET", name, public)

    def post(self, name: str, *, public: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``function(request, body, user)`` for ``POST name``."""
        return self._register(b"POST", name, public)

    def _register(self, method: bytes, name: str, public: bool) -> Callable[..., Any]:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[(method, name)] = (function, public)
            return function

        return register

    @staticmethod
    def set_token(request: Any, token: str) -> None:
        """Set (or, with ``""``, clear) the token cookie: HttpOnly, SameSite=Strict."""
        age = "" if token else "; Max-Age=0"
        request.setHeader(b"Set-Cookie",
                          f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{age}".encode("ascii"))

    def render(self, request: Any) -> int:
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        answer = maybeDeferred(self._call, request, name)
        answer.addCallbacks(lambda result: (200, result), self._refusal, errbackArgs=(name,))
        answer.addCallback(self._write, request, gone)
        return NOT_DONE_YET

    def _call(self, request: Any, name: str) -> Any:
        found = self.routes.get((request.method, name))
        if found is None:
            raise ApiError("not found", 404 if request.method in (b"GET", b"POST") else 405)
        function, public = found
        token = (request.getCookie(COOKIE.encode()) or b"").decode("ascii", "replace") or None
        user = None if public else self.user_of(token)
        if request.method == b"POST":
            return function(request, self._body(request), user)
        return function(request, user)

    def _refusal(self, failure: Failure, name: str) -> tuple[int, dict[str, str]]:
        if failure.check(ApiError):
            return failure.value.status, {"error": failure.value.reason}
        self.log.failure("API request {name} failed", failure, name=name)
        return 500, {"error": "internal error"}

    @staticmethod
    def _write(answer: tuple[int, Any], request: Any, gone: list[bool]) -> None:
        status, result = answer
        if gone:
            return
        data = json.dumps(result).encode("utf-8")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", str(len(data)).encode("ascii"))
        request.write(data)
        request.finish()

    @staticmethod
    def _body(request: Any) -> dict[str, Any]:
        kind = (request.getHeader(b"content-type") or b"").decode("latin-1").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError("send JSON (Content-Type: application/json)", 415)
        data = request.content.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise ApiError("request too large", 413)
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            raise ApiError("malformed JSON") from None
        if not isinstance(body, dict):
            raise ApiError("send a JSON object")
        return body
