"""The API for back ends: ``POST <root>api/publish``, ``api/unsubscribe`` and
``api/disconnect``, with JSON and an API key.

The body is one event, an array of events or ``{"events": [...]}``; an event
is ``{"subject": "/a", "fields": {...}}`` plus at most one target:
``"session": "<id>"`` (unicast), ``"user": "<id>"`` (every session of a user
on every node) or ``"broadcast": true``.  The batch is checked whole before
anything is published: one bad event refuses it (400, naming the event's
index), and so does a user without any session (404, asked of the
backplane's presence, so it holds in a cluster).  The answer is ``{"published": n, "ids": [...]}``
(every event has its resume ``id``); a refusal is
``{"error": "<reason>"}`` with its HTTP status.

``api/unsubscribe`` takes ``{"subject": "/a", "user": "<id>"}`` (or
``"session": "<id>"``) and ``api/disconnect`` ``{"user": "<id>"}`` (or
``"session"``), each with an optional ``"reason"``: they call
:meth:`PushServer.unsubscribe <pushpy.server.PushServer.unsubscribe>` and
:meth:`~pushpy.server.PushServer.disconnect` and answer ``{"op", "user" or
"session", "id"}`` once the revocation is stored (a user or session with
nothing to revoke is no error: revoking is idempotent).

The key comes in ``Authorization: Bearer <key>`` or ``X-Pushpy-Key``; cookies
are never read, and the body must be ``application/json``, so a browser
session alone cannot publish here: a cross-origin form post has neither the
header nor the content type, and a page cannot add them without a CORS
preflight that :class:`~pushpy.web.origins.OriginGuard` refuses.  With no
``api.key`` configured every endpoint answers 404 saying so.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import Request

from pushpy import protocol as P
from pushpy.config import comma_list
from pushpy.core.events import Event, Route
from pushpy.core.limits import check_event
from pushpy.errors import ClientError, UsageError
from pushpy.web.authz import respond, then
from pushpy.web.http import no_cache
from pushpy.wire.escape import valid_name
from pushpy.wire.native import dumps, string_fields

if TYPE_CHECKING:
    from pushpy.server import PushServer

JSON_TYPE = b"application/json; charset=utf-8"


def api_key(request: Request) -> str | None:
    """The key a request presents: ``Authorization: Bearer``, else ``X-Pushpy-Key``."""
    authorization = request.getHeader(b"authorization")
    if authorization:
        scheme, _, value = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.getHeader(b"x-pushpy-key")
    return key.decode("latin-1").strip() if key else None


def _json(request: Request, message: dict[str, Any]) -> bytes:
    body = dumps(message).encode()
    no_cache(request)
    request.responseHeaders.setRawHeaders(b"Content-Type", [JSON_TYPE])
    request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
    return body


class KeyedAPI(Resource):
    """A ``POST`` endpoint of back ends: API key, JSON body, JSON answers and errors."""

    isLeaf = True
    allowedMethods = (b"POST",)

    def __init__(self, server: PushServer) -> None:
        super().__init__()
        self.push = server
        self.keys = tuple(key.encode("utf-8") for key in comma_list(server.config.api_key))

    def refusal(self, request: Request) -> Callable[[BaseException], bytes]:
        """What renders an error of ``request``: ``{"error": reason}`` with its status."""
        def refuse(error: BaseException) -> bytes:
            if isinstance(error, FirstError):
                error = error.subFailure.value
            if isinstance(error, UsageError):
                error = ClientError(str(error), 400)
            e = error if isinstance(error, ClientError) else ClientError("internal error", 500)
            request.setResponseCode(e.status or 400)
            if e.status == 401:
                request.responseHeaders.setRawHeaders(b"WWW-Authenticate", [b'Bearer realm="pushpy"'])
            return _json(request, {"error": e.reason})

        return refuse

    def render_HEAD(self, request: Request) -> bytes:
        raise UnsupportedMethod(self.allowedMethods)

    def _authenticate(self, request: Request) -> None:
        if not self.keys:
            raise ClientError("the back-end API is disabled: set api.key to enable it", 404)
        key = api_key(request)
        if key is None:
            raise ClientError("API key required (Authorization: Bearer <key> or X-Pushpy-Key)", 401)
        given = key.encode("utf-8", "replace")
        # Compare with every key (no early exit), in constant time each.
        if not sum(hmac.compare_digest(given, known) for known in self.keys):
            raise ClientError("invalid API key", 403)
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise ClientError("the body must be application/json", 415)

    def _payload(self, request: Request) -> Any:
        """The request's JSON body, once its key and content type passed."""
        self._authenticate(request)
        config = self.push.config
        content = request.content
        content.seek(0, 2)
        if content.tell() > config.limit_body_bytes:
            raise ClientError(f"Request too large (at most {config.limit_body_bytes} bytes,"
                              " limit.body.bytes)", 413)
        content.seek(0)
        try:
            return json.loads(content.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ClientError("body is not valid UTF-8 JSON", 400) from None


class PublishAPI(KeyedAPI):
    """``POST .../api/publish``: events from a back end, authenticated by an API key."""

    def render_POST(self, request: Request) -> bytes | int:
        refuse = self.refusal(request)
        try:
            events = [self._event(item, i) for i, item in enumerate(self._body(request))]
        except ClientError as e:
            return refuse(e)
        users = {event.target: i for i, event in reversed(list(enumerate(events)))
                 if event.route is Route.USER}

        def answer(stored: list[Any]) -> bytes:
            return _json(request, {"published": len(stored), "ids": [e.position for e in stored]})

        def publish(online: object) -> Any:
            for user, index in users.items():
                if user not in online:  # type: ignore[operator]
                    raise ClientError(f"event {index}: user has no session: {str(user)[:64]}", 404)
            published = [self.push.publish_event(event) for event in events]
            if not any(isinstance(stored, Deferred) for stored in published):
                return answer(published)
            # A clustered backplane: answer once every event is stored, in order.
            return gatherResults([maybeDeferred(lambda e=e: e) for e in published],
                                 consumeErrors=True).addCallback(answer)

        if not users:
            return respond(request, publish({}), refuse)
        return respond(request, self.push.presence().addCallback(publish), refuse)

    def _body(self, request: Request) -> list[Any]:
        config = self.push.config
        payload = self._payload(request)
        if isinstance(payload, dict) and "events" in payload:
            payload = payload["events"]
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise ClientError("no events to publish", 400)
        if len(items) > config.api_max_events:
            raise ClientError(f"too many events (at most {config.api_max_events}, api.max.events)", 400)
        return items

    def _event(self, item: Any, index: int) -> Event:
        try:
            return self._build(item)
        except ClientError as e:
            raise ClientError(f"event {index}: {e.reason}", 400) from None

    def _build(self, item: Any) -> Event:
        if not isinstance(item, dict):
            raise ClientError("an event must be a JSON object")
        unknown = set(item) - {"subject", "fields", "session", "user", "broadcast"}
        if unknown:
            raise ClientError(f"unknown key {sorted(unknown)[0][:40]!r}")
        subject = item.get("subject", "")
        if not isinstance(subject, str):
            raise ClientError("'subject' must be a string")
        fields = string_fields(item.get("fields"))
        bad = [name for name in fields if not valid_name(name)]
        if bad:
            raise ClientError(f"invalid field name: {bad[0][:64]}")
        targets = [key for key in ("session", "user", "broadcast") if item.get(key) not in (None, False)]
        if len(targets) > 1:
            raise ClientError("give at most one of 'session', 'user' and 'broadcast'")
        now = self.push.clock.seconds()
        out = {P.P_EVENT: P.DATA, P.P_TIME: str(int(now)), **fields}
        out[P.P_EVENT] = P.DATA
        if subject:
            out[P.P_SUBJECT] = subject
        check_event(out, self.push.config)
        if not targets:
            if not subject:
                raise ClientError(P.NO_SUBJECT)
            config = self.push.config
            if len(subject) > config.limit_subject_length:
                raise ClientError(f"subject too long (at most {config.limit_subject_length} characters)")
            return Event(out)
        target = targets[0]
        if target == "broadcast":
            if item["broadcast"] is not True:
                raise ClientError("'broadcast' must be true")
            return Event(out, route=Route.BROADCAST)
        value = item[target]
        if not isinstance(value, str) or not value:
            raise ClientError(f"'{target}' must be a non-empty string")
        if target == "session":
            return Event(out, route=Route.UNICAST, target=value)
        return Event(out, route=Route.USER, target=value)


class RevokeAPI(KeyedAPI):
    """``POST .../api/unsubscribe`` and ``.../api/disconnect``: revocations from a back end."""

    def __init__(self, server: PushServer, op: str) -> None:
        super().__init__(server)
        self.op = op

    def render_POST(self, request: Request) -> bytes | int:
        refuse = self.refusal(request)
        try:
            item = self._payload(request)
            if not isinstance(item, dict):
                raise ClientError("the body must be a JSON object")
            allowed = {"user", "session", "reason"} | ({"subject"} if self.op == "unsubscribe" else set())
            unknown = set(item) - allowed
            if unknown:
                raise ClientError(f"unknown key {sorted(unknown)[0][:40]!r}")
            targets = {key: item[key] for key in ("user", "session") if item.get(key) is not None}
            if len(targets) != 1:
                raise ClientError("give one of 'user' and 'session'")
            if any(not isinstance(value, str) or not value for value in targets.values()):
                raise ClientError(f"'{next(iter(targets))}' must be a non-empty string")
            reason = item.get("reason", "revoked" if self.op == "unsubscribe" else "disconnected")
            if self.op == "unsubscribe":
                subject = item.get("subject")
                if not isinstance(subject, str) or not subject:
                    raise ClientError(P.NO_SUBJECT)
                stored = self.push.unsubscribe(subject, reason=reason, **targets)
            else:
                stored = self.push.disconnect(reason=reason, **targets)
        except (ClientError, UsageError) as e:
            return refuse(e)

        def answer(event: Event) -> bytes:
            return _json(request, {"op": self.op, **targets, "id": event.position})

        return respond(request, then(stored, answer), refuse)
