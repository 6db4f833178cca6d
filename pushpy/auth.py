"""Authorization: who may join, subscribe and publish (:class:`~pushpy.interfaces.IAuthorizer`).

Three ready authorizers:

- :class:`OpenAuthorizer` (the default): everyone, anonymously, everything.
- :class:`TokenAuthorizer`: HMAC-SHA256 signed tokens made by the
  application's back end with :func:`mint_token`, carrying a user id, an
  expiry and the subject prefixes the user may subscribe and publish to.
- :class:`CallbackAuthorizer`: the application's own functions, which may
  return Deferreds.

A token reaches the server in a ``token`` parameter, an ``Authorization:
Bearer`` header or a cookie (:meth:`Credentials.token`).  Grants use Pushlet's
prefix semantics (:func:`granted`): ``/chat/`` grants every subject starting
with ``/chat/``, and a subscription's prefix must itself start with a grant,
so it cannot match anything outside it.  ``*`` grants everything.  See
``docs/security.md``.  This module imports nothing from Twisted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from pushpy.core.subjects import split_subjects
from pushpy.errors import ClientError, UsageError
from pushpy.interfaces import IAuthorizer

if TYPE_CHECKING:
    from pushpy.config import Config
    from pushpy.core.sessions import Session

#: Key of a session's :class:`Identity` in ``Session.data``.
IDENTITY = "pushpy.identity"
#: Longest token accepted (bytes of its text).
MAX_TOKEN = 4096
#: Grants everything.
EVERYTHING = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What a client presented when it asked to join.

    :param params: the request's parameters (query, form body, WebSocket URL).
    :param headers: request headers, names lowercased (the first value of each).
    :param cookies: request cookies.
    :param address: the client's address.
    :param transport: ``pushlet``, ``sse``, ``xhr``, ``iframe``, ``longpoll``,
        ``poll`` or ``ws``.
    """

    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    address: str = ""
    transport: str = ""

    def token(self, cookie: str = "pushpy_token") -> str | None:
        """The token: a ``token`` parameter, else a Bearer header, else the ``cookie``."""
        return find_token(self.params.get("token"), self.headers.get("authorization"),
                          self.cookies.get(cookie))


def find_token(param: str | None, authorization: str | None, cookie: str | None) -> str | None:
    """The first token given: the parameter, the ``Bearer`` value, the cookie."""
    if param:
        return param
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return cookie or None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is: what :meth:`IAuthorizer.join` may return instead of a bare user id.

    :param user: the user id (``None``: anonymous).
    :param claims: what the authorizer wants to remember for later checks
        (kept on the session as ``session.data[IDENTITY]``).
    """

    user: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)


def as_identity(value: object) -> Identity:
    """The :class:`Identity` of what ``join`` returned (a user id, ``None`` or an Identity)."""
    if isinstance(value, Identity):
        return value
    if value is None:
        return Identity(None)
    if isinstance(value, str) and value:
        return Identity(value)
    raise UsageError(f"an authorizer's join must return a user id, None or an Identity, not {value!r}")


def identity_of(session: Session) -> Identity | None:
    """The :class:`Identity` a session joined with (``None`` for anonymous sessions)."""
    return session.data.get(IDENTITY)  # type: ignore[return-value]


# -- grants -----------------------------------------------------------------

def granted(patterns: Iterable[str], subject: str) -> bool:
    """Whether the prefixes ``patterns`` cover ``subject`` (every part of a comma list).

    A subscription is a prefix too: ``/chat/room1`` is covered by the grant
    ``/chat/``, but ``/chat`` is not (it would also match ``/chatter``).
    """
    patterns = tuple(patterns)
    if EVERYTHING in patterns:
        return True
    parts = split_subjects(subject) or (subject,)
    return all(bool(part) and part.startswith(patterns) for part in parts) if patterns else False


# -- tokens -----------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str | bytes, payload: str) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def mint_token(secret: str | bytes, user: str, *, subscribe: Iterable[str] = (),
               publish: Iterable[str] = (), expires_in: float = 3600.0,
               now: float | None = None) -> str:
    """A signed token for ``user``, valid ``expires_in`` seconds.

    :param secret: the server's ``auth.token.secret``.
    :param subscribe: subject prefixes the user may subscribe to (``*``: all).
    :param publish: subject prefixes the user may publish to.

    The token is ``<payload>.<signature>``, both base64url: the payload is
    JSON ``{"u": user, "exp": seconds since the epoch, "sub": [...], "pub": [...]}``,
    the signature its HMAC-SHA256.  It is signed, not encrypted: do not put
    secrets in it.
    """
    if not isinstance(user, str) or not user:
        raise UsageError("a token needs a non-empty user id")
    issued = time.time() if now is None else now
    claims = {"u": user, "exp": int(issued + expires_in), "sub": list(subscribe), "pub": list(publish)}
    for key in ("sub", "pub"):
        if not all(isinstance(p, str) and p for p in claims[key]):
            raise UsageError(f"{'subscribe' if key == 'sub' else 'publish'} grants must be non-empty strings")
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_signature(secret, payload)}"


def read_token(secret: str | bytes, token: str, now: float) -> dict[str, Any]:
    """The claims of a valid token, or :class:`ClientError` (403) saying what is wrong."""
    if (not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1
            or not token.isascii()):
        raise ClientError("invalid token: malformed", 403)
    payload, signature = token.split(".")
    if not hmac.compare_digest(signature.encode("ascii"), _signature(secret, payload).encode("ascii")):
        raise ClientError("invalid token: bad signature", 403)
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        raise ClientError("invalid token: malformed", 403) from None
    if (not isinstance(claims, dict) or not isinstance(claims.get("u"), str) or not claims["u"]
            or not isinstance(claims.get("exp"), int)
            or not all(isinstance(claims.get(k, []), list) for k in ("sub", "pub"))):
        raise ClientError("invalid token: malformed", 403)
    if claims["exp"] <= now:
        raise ClientError("token expired", 403)
    return claims


# -- authorizers -------------------------------------------------------------

@implementer(IAuthorizer)
class OpenAuthorizer:
    """Everyone may join (anonymously), subscribe and publish: the demo's default."""

    def join(self, credentials: Credentials) -> None:
        return None

    def subscribe(self, session: Session, subject: str) -> None:
        return None

    def publish(self, session: Session, subject: str) -> None:
        return None


@implementer(IAuthorizer)
class TokenAuthorizer:
    """Signed tokens (:func:`mint_token`): user id, expiry, subject grants.

    :param secret: the HMAC key, at least 16 characters.
    :param cookie: the cookie a token may come in.
    :param anonymous: whether a client without a token may join.
    :param anonymous_subscribe: prefixes an anonymous session may subscribe to.
    :param anonymous_publish: prefixes an anonymous session may publish to.
    :param clock: returns the time, for expiry.

    A token that is present but invalid or expired is refused, never taken
    as anonymous.  Expiry is checked at join, subscribe and publish.
    """

    def __init__(self, secret: str | bytes, *, cookie: str = "pushpy_token", anonymous: bool = False,
                 anonymous_subscribe: Iterable[str] = (), anonymous_publish: Iterable[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise UsageError("a token secret must be at least 16 characters")
        self.secret = secret
        self.cookie = cookie
        self.anonymous = anonymous
        self.anonymous_subscribe = tuple(anonymous_subscribe)
        self.anonymous_publish = tuple(anonymous_publish)
        self.clock = clock

    @classmethod
    def from_config(cls, config: Config, *, clock: Callable[[], float] = time.time) -> TokenAuthorizer:
        """The authorizer the ``auth.*`` keys describe."""
        from pushpy.config import comma_list

        return cls(config.auth_token_secret, cookie=config.auth_token_cookie,
                   anonymous=config.auth_anonymous,
                   anonymous_subscribe=comma_list(config.auth_anonymous_subscribe),
                   anonymous_publish=comma_list(config.auth_anonymous_publish), clock=clock)

    def mint(self, user: str, **kwargs: Any) -> str:
        """:func:`mint_token` with this authorizer's secret."""
        return mint_token(self.secret, user, **kwargs)

    def join(self, credentials: Credentials) -> Identity | None:
        token = credentials.token(self.cookie)
        if token is None:
            if not self.anonymous:
                raise ClientError("authentication required: no token", 403)
            return None
        claims = read_token(self.secret, token, self.clock())
        return Identity(claims["u"], claims)

    def bind(self, credentials: Credentials) -> str | None:
        """The user of the valid token in ``credentials``: a session stays with its user.

        A later request of a session with a user must carry a valid token of
        the same user (a renewed token is fine; an expired one is refused).
        """
        token = credentials.token(self.cookie)
        return None if token is None else read_token(self.secret, token, self.clock())["u"]

    def subscribe(self, session: Session, subject: str) -> None:
        self._check(session, subject, "sub", self.anonymous_subscribe, "subscribe to")

    def publish(self, session: Session, subject: str) -> None:
        self._check(session, subject, "pub", self.anonymous_publish, "publish to")

    def _check(self, session: Session, subject: str, key: str, anonymous: tuple[str, ...],
               verb: str) -> None:
        identity = identity_of(session)
        if identity is None or not identity.claims:
            patterns: Iterable[str] = anonymous
        else:
            if identity.claims.get("exp", 0) <= self.clock():
                raise ClientError("token expired")
            patterns = identity.claims.get(key, ())
        if not granted(patterns, subject):
            raise ClientError(f"not allowed to {verb} {subject[:80]}")


@implementer(IAuthorizer)
class CallbackAuthorizer:
    """Asks the application's functions; each may return a Deferred or be a coroutine.

    :param join: ``join(credentials)`` returns a user id, ``None`` (anonymous)
        or an :class:`Identity`, or raises :class:`ClientError`.  Default: anonymous.
    :param subscribe: ``subscribe(session, subject)``: ``False`` or a
        :class:`ClientError` refuses, anything else allows.  Default: allow.
    :param publish: ``publish(session, subject)``, the same way.
    :param bind: ``bind(credentials)``: the secret every later request of a
        session with a user must repeat, such as the application's own session
        cookie (default: the token, :meth:`Credentials.token`).
    :param cookie: the cookie a token may come in.
    """

    def __init__(self, join: Callable[[Credentials], Any] | None = None,
                 subscribe: Callable[[Session, str], Any] | None = None,
                 publish: Callable[[Session, str], Any] | None = None, *,
                 bind: Callable[[Credentials], str | None] | None = None,
                 cookie: str = "pushpy_token") -> None:
        self._join = join
        self._subscribe = subscribe
        self._publish = publish
        self._bind = bind
        self.cookie = cookie

    def join(self, credentials: Credentials) -> Any:
        if self._join is None:
            return None
        return _then(self._join(credentials), as_identity)

    def bind(self, credentials: Credentials) -> str | None:
        """What binds a session with a user to its client (see ``docs/security.md``)."""
        if self._bind is not None:
            return self._bind(credentials)
        return credentials.token(self.cookie)

    def subscribe(self, session: Session, subject: str) -> Any:
        if self._subscribe is None:
            return None
        return _then(self._subscribe(session, subject), _allowed("subscribe to", subject))

    def publish(self, session: Session, subject: str) -> Any:
        if self._publish is None:
            return None
        return _then(self._publish(session, subject), _allowed("publish to", subject))


def _allowed(verb: str, subject: str) -> Callable[[object], None]:
    def check(value: object) -> None:
        if value is False:
            raise ClientError(f"not allowed to {verb} {subject[:80]}")

    return check


def _then(value: Any, function: Callable[[Any], Any]) -> Any:
    """``function(value)``, after waiting when ``value`` is a Deferred or a coroutine."""
    if inspect.isawaitable(value) and not hasattr(value, "addCallback"):
        from twisted.internet.defer import ensureDeferred

        value = ensureDeferred(value)
    if hasattr(value, "addCallback"):
        return value.addCallback(function)
    return function(value)


def authorizer_from_config(config: Config) -> IAuthorizer:
    """:class:`TokenAuthorizer` when ``auth.token.secret`` is set, else :class:`OpenAuthorizer`."""
    if config.auth_token_secret:
        return TokenAuthorizer.from_config(config)
    return OpenAuthorizer()


def main(argv: list[str] | None = None) -> int:
    """``python -m pushpy.auth USER [--subscribe P]... [--publish P]... [--expires SECONDS]``.

    Prints a token signed with the secret in ``$PUSHPY_TOKEN_SECRET`` (for
    trying a locked-down server; back ends call :func:`mint_token`).
    """
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m pushpy.auth", description=main.__doc__.split("\n")[0])
    parser.add_argument("user")
    parser.add_argument("--subscribe", action="append", default=[], help="a subject prefix (repeatable)")
    parser.add_argument("--publish", action="append", default=[], help="a subject prefix (repeatable)")
    parser.add_argument("--expires", type=float, default=3600.0, help="seconds (default 3600)")
    args = parser.parse_args(argv)
    secret = os.environ.get("PUSHPY_TOKEN_SECRET", "")
    if len(secret) < 16:
        print("set PUSHPY_TOKEN_SECRET to the server's auth.token.secret (16 characters or more)",
              file=sys.stderr)
        return 2
    print(mint_token(secret, args.user, subscribe=args.subscribe, publish=args.publish,
                     expires_in=args.expires))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
