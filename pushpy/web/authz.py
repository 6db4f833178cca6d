"""Authorization in the Twisted layer: credentials, session binding, answers that wait.

Every endpoint asks the server's :class:`~pushpy.interfaces.IAuthorizer`
through the functions here.  An authorizer may answer at once or with a
Deferred; :func:`then` runs the rest of a request synchronously when the
answer is already there (the open demo never waits) and later otherwise, and
:func:`respond` answers an HTTP request either way, forgetting it (and
cancelling the wait) when its client goes away meanwhile.

A session with a user is **bound**: it keeps a SHA-256 fingerprint of what
the authorizer's ``bind(credentials)`` gave at join (default: the token), and
every later request of the session must give the same value
(:func:`check_binding`), so knowing a session id is not enough to use it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from pushpy.auth import IDENTITY, Credentials, Identity, as_identity
from pushpy.core.sessions import Session
from pushpy.errors import ClientError
from pushpy.web.http import client_address

if TYPE_CHECKING:
    from pushpy.server import PushServer

log = Logger()

#: Key of a bound session's credential fingerprint in ``Session.data``.
BINDING = "pushpy.binding"
#: Key of a native session's secret key in ``Session.data``.
SESSION_KEY = "pushpy.session_key"


# -- waiting on answers that may be Deferreds ------------------------------------

def settle(value: Any) -> tuple[bool, Any]:
    """``(True, result)`` for a value or a fired Deferred (raising its failure), else ``(False, d)``."""
    if not isinstance(value, Deferred):
        return True, value
    box: list[Any] = []

    def keep(result: Any) -> Any:
        box.append(result)
        return result

    value.addBoth(keep)
    if not box:
        return False, value
    result = box[0]
    if isinstance(result, Failure):
        value.addErrback(lambda _: None)  # handled here: no "unhandled error" log
        result.raiseException()
    return True, result


def then(value: Any, function: Callable[[Any], Any]) -> Any:
    """``function(result of value)`` now if ``value`` is ready, else a Deferred of it."""
    done, result = settle(value)
    if done:
        return function(result)
    return result.addCallback(function)


def respond(request: Request, value: Any, refuse: Callable[[BaseException], bytes]) -> bytes | int:
    """Answer ``request`` with ``value`` (bytes, ``NOT_DONE_YET`` or a Deferred of either).

    ``refuse(error)`` renders an error raised now or later.  While waiting,
    a client that goes away cancels the wait and gets nothing.
    """
    try:
        done, result = settle(value)
    except Exception as e:  # the error of a fired Deferred
        return refuse(e)
    if done:
        return result
    waiting: Deferred = result
    gone: list[bool] = []

    def lost(reason: Failure) -> None:
        gone.append(True)
        waiting.cancel()

    request.notifyFinish().addErrback(lost)

    def answer(body: Any) -> None:
        if gone or request.finished or body is NOT_DONE_YET:
            return
        request.write(body)
        request.finish()

    def failed(reason: Failure) -> None:
        if not gone and not request.finished:
            answer(refuse(reason.value))

    waiting.addCallbacks(answer, failed).addErrback(
        lambda f: log.failure("answering {uri} failed", f, uri=request.uri))
    return NOT_DONE_YET


def ask(method: Callable[..., Any], *args: Any, status: int | None = None) -> Any:
    """Call an authorizer ``method``; its refusals become ``ClientError(reason, status)``.

    ``status`` ``None`` makes every refusal a ``nack`` (subscribe, publish);
    a join passes 403, which an authorizer's own status overrides.  The answer
    may be a Deferred, whose failures are converted the same way.
    """
    try:
        result = method(*args)
    except Exception as e:
        raise _refused(e, status) from None
    if isinstance(result, Deferred):
        def convert(reason: Failure) -> Failure:
            if reason.check(CancelledError):
                return reason
            return Failure(_refused(reason.value, status))

        result.addErrback(convert)
    return result


def _refused(error: BaseException, status: int | None) -> ClientError:
    if isinstance(error, ClientError):
        return ClientError(error.reason, (error.status or status) if status is not None else None)
    return refusal(error, status)


def refusal(error: BaseException, status: int | None) -> ClientError:
    """``error`` as a :class:`ClientError` with ``status`` (unless it has one)."""
    if isinstance(error, ClientError):
        if error.status is None and status is not None:
            return ClientError(error.reason, status)
        return error
    if isinstance(error, CancelledError):
        return ClientError("request cancelled", status or 503)
    log.failure("the authorizer failed", Failure(error))
    return ClientError("authorization failed", 500 if status is not None else None)


# -- credentials and binding ----------------------------------------------------

def request_credentials(request: Request, params: Mapping[str, str], transport: str) -> Credentials:
    """The :class:`Credentials` of an HTTP request."""
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers.setdefault(name.decode("latin-1").lower(), values[0].decode("latin-1"))
    cookies = {name.decode("latin-1"): value.decode("latin-1")
               for name, value in (getattr(request, "received_cookies", None) or {}).items()}
    return Credentials(params=dict(params), headers=headers, cookies=cookies,
                       address=client_address(request), transport=transport)


def authorize_join(server: PushServer, credentials: Credentials) -> Any:
    """The :class:`Identity` of a new session, or a Deferred of it; refusals are 403."""
    return then(ask(server.authorizer.join, credentials, status=403), as_identity)


def binding(server: PushServer, credentials: Credentials) -> str | None:
    """What binds a session to its client: the authorizer's ``bind``, else the token."""
    bind = getattr(server.authorizer, "bind", None)
    if bind is not None:
        return bind(credentials)
    return credentials.token(server.config.auth_token_cookie)


def _fingerprint(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class ForeignSession(ClientError):
    """The request's credentials are not those of the session it names (403)."""

    def __init__(self, reason: str = "credentials do not match this session") -> None:
        super().__init__(reason, 403)


def identify(server: PushServer, user: str | None, credentials: Credentials) -> Any:
    """The :class:`Identity` of a request continuing a session of ``user`` copied from a record.

    Records keep the user, not the claims (a token's grants): the authorizer
    is asked again with the request's own credentials, which must name the
    same user (else :class:`ForeignSession`).  Anonymous sessions have no
    claims to restore (``None``).  The answer may be a Deferred.
    """
    if user is None:
        return None

    def check(identity: Identity) -> Identity:
        if identity.user != user:
            raise ForeignSession()
        return identity

    def refused(reason: Failure) -> Failure:
        if reason.check(ClientError) and not reason.check(ForeignSession):
            return Failure(ForeignSession(reason.value.reason))
        return reason

    try:
        answer = then(authorize_join(server, credentials), check)
    except ForeignSession:
        raise
    except ClientError as e:
        raise ForeignSession(e.reason) from None
    if isinstance(answer, Deferred):
        answer.addErrback(refused)
    return answer


def adopt(server: PushServer, session: Session, identity: Identity, credentials: Credentials) -> None:
    """Give a new session (joined with ``user=identity.user``) its claims; bind it when it has a user."""
    if session.user != identity.user:
        raise ClientError("session joined with another user", 500)
    if identity.user is None and not identity.claims:
        return
    session.data[IDENTITY] = identity
    if identity.user is not None:
        value = binding(server, credentials)
        if not value:
            raise ClientError("an authenticated session needs a token to be bound to"
                              " (see docs/security.md)", 403)
        session.data[BINDING] = _fingerprint(value)


def check_binding(server: PushServer, session: Session,
                  credentials: Callable[[], Credentials]) -> None:
    """Refuse (403) a request of a bound session that does not repeat its credentials."""
    expected = session.data.get(BINDING)
    if expected is not None:
        check_fingerprint(server, expected, credentials())  # type: ignore[arg-type]


def check_fingerprint(server: PushServer, expected: bytes, credentials: Credentials) -> None:
    """Refuse (:class:`ForeignSession`) credentials whose binding is not ``expected``."""
    try:
        value = binding(server, credentials)
    except ClientError as e:
        raise ForeignSession(e.reason) from None
    if not value or not hmac.compare_digest(_fingerprint(value), expected):
        raise ForeignSession()


def fingerprint(server: PushServer, credentials: Credentials) -> bytes | None:
    """What ``credentials`` would bind a session to (``None``: nothing, or ``bind`` refused them)."""
    try:
        value = binding(server, credentials)
    except ClientError:
        return None
    return _fingerprint(value) if value else None


def is_bound(session: Session) -> bool:
    """Whether ``session`` is bound to its client's credentials."""
    return BINDING in session.data


# -- the session key of native sessions ---------------------------------------------

def issue_session_key(session: Session) -> str:
    """Give a new native session its secret key (128 random bits), told only to its creator.

    Only the key's SHA-256 digest is kept (:func:`session_key_digest`), so a
    session record shared with other nodes never holds the key itself.
    """
    key = secrets.token_urlsafe(16)
    session.data[SESSION_KEY] = session_key_digest(key)
    return key


def session_key_digest(key: str) -> str:
    """The hex SHA-256 digest of a session key, as kept on the session."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def check_session_key(session: Session, given: object) -> None:
    """Refuse (403) a request of a keyed session that does not present its key.

    Session ids leak (a native client's id is its unicast address, Pushlet
    events carry ``p_from``); the key never leaves the connection that
    created the session, so knowing the id is not enough to continue it.
    """
    check_key_digest(session.data.get(SESSION_KEY), given)  # type: ignore[arg-type]


def check_key_digest(expected: str | None, given: object) -> None:
    """:func:`check_session_key` against a kept digest (``None``: the session has no key)."""
    if not expected:
        return
    if not isinstance(given, str) or not given:
        raise ClientError("session_key required to continue this session", 403)
    if not hmac.compare_digest(session_key_digest(given), expected):  # type: ignore[arg-type]
        raise ClientError("wrong session_key for this session", 403)
