"""History and presence queries: ``GET <root>history`` and ``GET <root>presence``, and their native messages.

``GET .../history?subject=/chat/room1&count=20`` answers the newest ``count``
events of exactly that subject (at most ``history.query.max``), oldest
first, as native ``event`` messages with their resume ids (``epoch:offset``)::

    {"subject": "/chat/room1", "events": [{"type": "event", "id": "e:7", ...}], "position": "e:7"}

``GET .../presence?subject=/chat/room1`` answers who is on that subject
cluster-wide (``/online``: who has a session at all), with how many sessions::

    {"subject": "/chat/room1", "users": {"ann": 2, "bob": 1}}

Both are allowed exactly when a subscribe to ``subject`` is: the request's
session (``session`` and, for a native session, ``session_key``) is asked,
else a session-less identity the authorizer makes from the request's
credentials (token parameter, Bearer header or cookie).  Refusals are JSON
``{"error": reason}``: 400 (bad subject or count), 403 (refused, wrong key),
404 (unknown session).  Native clients send ``{"type": "history"|"presence",
"subject": ..., "count": n}`` instead (:meth:`Queries.answer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from pushpy import protocol as P
from pushpy.auth import IDENTITY, Identity
from pushpy.core.sessions import Session
from pushpy.errors import ClientError
from pushpy.web.authz import (
    ask,
    authorize_join,
    check_binding,
    check_session_key,
    is_bound,
    refusal,
    request_credentials,
    respond,
    then,
)
from pushpy.web.http import client_address, no_cache, request_params
from pushpy.wire.native import dumps, event_message

if TYPE_CHECKING:
    from pushpy.server import PushServer

JSON_TYPE = b"application/json; charset=utf-8"


def query_subject(value: object, config: Any) -> str:
    """The one subject a query names, or a ClientError saying what is wrong."""
    if not isinstance(value, str) or not value:
        raise ClientError(P.NO_SUBJECT, 400)
    if "," in value:
        raise ClientError("a query names one subject, not a comma list", 400)
    if len(value) > config.limit_subject_length:
        raise ClientError(f"subject too long (at most {config.limit_subject_length} characters)", 400)
    return value


def query_count(value: object, config: Any) -> int:
    """A history count: an integer from 0, capped at ``history.query.max``; missing means the cap."""
    cap = config.history_query_max
    if value is None or value == "":
        return cap
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClientError(f"count must be an integer from 0 (at most {cap} are answered,"
                          " history.query.max)", 400)
    return min(value, cap)


class Queries:
    """Answers history and presence queries for one server, once authorized."""

    def __init__(self, server: PushServer) -> None:
        self.server = server

    def history(self, session: Session, subject: str, count: int) -> Any:
        """``{"subject", "events"}`` (or a Deferred of it) if ``session`` may subscribe to ``subject``."""
        def query(_: object) -> Deferred:
            position = self.server.backplane.position  # before the events: nothing falls between
            return self.server.history(subject, count).addCallback(lambda found: {
                "subject": subject, "events": [event_message(event) for event in found],
                "position": found[-1].position if found else position})

        return then(ask(self.server.authorizer.subscribe, session, subject), query)

    def presence(self, session: Session, subject: str) -> Any:
        """``{"subject", "users"}`` (or a Deferred of it) if ``session`` may subscribe to ``subject``."""
        def query(_: object) -> Deferred:
            return self.server.presence(subject).addCallback(lambda users: {
                "subject": subject, "users": dict(sorted(users.items()))})

        return then(ask(self.server.authorizer.subscribe, session, subject), query)

    def answer(self, session: Session, message: Mapping[str, Any]) -> Any:
        """The ack fields of a native ``history`` or ``presence`` message (or a Deferred)."""
        config = self.server.config
        kind = message.get("type")
        try:
            subject = query_subject(message.get("subject"), config)
            if kind == "history":
                count = query_count(message.get("count"), config)
        except ClientError as e:
            raise ClientError(e.reason) from None  # a nack, not an HTTP status
        if kind == "history":
            found = self.history(session, subject, count)
        else:
            found = self.presence(session, subject)
        return then(found, lambda body: {"op": kind, **body})


class QueryResource(Resource):
    """``GET .../history`` or ``GET .../presence`` (``kind``), answering JSON."""

    isLeaf = True

    def __init__(self, server: PushServer, kind: str) -> None:
        super().__init__()
        self.push = server
        self.kind = kind
        self.queries = Queries(server)

    def render_GET(self, request: Request) -> bytes | int:
        server = self.push
        config = server.config

        def refuse(error: BaseException) -> bytes:
            e = refusal(error, 403)
            return self._json(request, {"error": e.reason}, e.status or 403)

        try:
            params = request_params(request, limit=config.limit_params,
                                    max_bytes=config.limit_request_bytes)
            subject = query_subject(params.get("subject"), config)
            count = query_count(params.get("count"), config) if self.kind == "history" else 0
            session = self._session(request, params)
        except ClientError as e:
            return refuse(e)

        def query(asker: Session) -> Any:
            if self.kind == "history":
                return self.queries.history(asker, subject, count)
            return self.queries.presence(asker, subject)

        try:
            answer = then(then(session, query), lambda body: self._json(request, body, 200))
        except ClientError as e:
            return refuse(e)
        return respond(request, answer, refuse)

    def _session(self, request: Request, params: Mapping[str, str]) -> Any:
        """The session asking: the one named (checked like its own requests), else a session-less one."""
        server = self.push
        credentials = request_credentials(request, params, self.kind)
        session_id = params.get("session") or params.get(P.P_ID)
        if session_id:
            session = server.dispatcher.find(session_id)
            if session is None:
                raise ClientError(f"Invalid or expired session: {session_id[:64]}", 404)
            if is_bound(session):
                check_binding(server, session, lambda: credentials)
            if session.format == P.FORMAT_JSON:
                check_session_key(session, params.get("session_key"))
            return session
        return then(authorize_join(server, credentials), lambda identity: _visitor(
            identity, client_address(request)))

    @staticmethod
    def _json(request: Request, body: Mapping[str, Any], status: int) -> bytes:
        data = dumps(body).encode()
        request.setResponseCode(status)
        no_cache(request)
        request.responseHeaders.setRawHeaders(b"Content-Type", [JSON_TYPE])
        request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(data)).encode()])
        return data


def _visitor(identity: Identity, address: str) -> Session:
    """A session-less asker: a :class:`Session` never registered, carrying the identity."""
    session = Session("query", format=P.FORMAT_JSON, user_agent="query", address=address,
                      now=0.0, timeout=0.0, queue_size=2)
    session.user = identity.user
    if identity.user is not None or identity.claims:
        session.data[IDENTITY] = identity
    return session
