"""pushpy.auth without a reactor: tokens, grants, the three authorizers, credentials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from zope.interface.verify import verifyObject

from pushpy.auth import (
    IDENTITY,
    CallbackAuthorizer,
    Credentials,
    Identity,
    OpenAuthorizer,
    TokenAuthorizer,
    as_identity,
    authorizer_from_config,
    granted,
    mint_token,
    read_token,
)
from pushpy.config import Config, load_config
from pushpy.core.sessions import Session
from pushpy.errors import ClientError, UsageError
from pushpy.interfaces import IAuthorizer

SECRET = "0123456789abcdef-test-secret"


def session(identity: Identity | None = None) -> Session:
    s = Session("s1", format="json", user_agent="x", address="1.2.3.4", now=0.0, timeout=60.0,
                queue_size=10)
    if identity is not None:
        s.user = identity.user
        s.data[IDENTITY] = identity
    return s


def result_of(value: object) -> object:
    """The value of a fired Deferred (or the value itself); raises its failure."""
    if isinstance(value, Deferred):
        box: list[object] = []
        value.addBoth(box.append)
        assert box, "the Deferred has not fired"
        if hasattr(box[0], "raiseException"):
            box[0].raiseException()
        return box[0]
    return value


# -- tokens -------------------------------------------------------------------------

def test_token_round_trip_carries_user_expiry_and_grants():
    """A minted token reads back to its user, expiry and grants."""
    token = mint_token(SECRET, "alice", subscribe=["/a/"], publish=["/b/"], expires_in=60, now=1000)
    claims = read_token(SECRET, token, 1059)
    assert claims == {"u": "alice", "exp": 1060, "sub": ["/a/"], "pub": ["/b/"]}


@pytest.mark.parametrize("mutate, reason", [
    (lambda t: t + "x", "invalid token: bad signature"),
    (lambda t: "e30" + t[3:], "invalid token: bad signature"),
    (lambda t: t.replace(".", ""), "invalid token: malformed"),
    (lambda t: t + ".x", "invalid token: malformed"),
    (lambda t: "a" * 5000, "invalid token: malformed"),
])
def test_tampered_tokens_are_refused(mutate, reason):
    """Any change to a token makes it invalid, with a 403 saying how."""
    token = mint_token(SECRET, "alice", now=0, expires_in=100)
    with pytest.raises(ClientError) as e:
        read_token(SECRET, mutate(token), 1)
    assert (e.value.reason, e.value.status) == (reason, 403)


def test_expired_token_is_refused():
    """A token is valid strictly before its expiry."""
    token = mint_token(SECRET, "alice", now=0, expires_in=10)
    read_token(SECRET, token, 9.9)
    with pytest.raises(ClientError, match="token expired"):
        read_token(SECRET, token, 10)


def test_signed_but_malformed_claims_are_refused():
    """A correctly signed payload that is not the claims object is still refused."""
    from pushpy.auth import _b64, _signature

    for payload in (b"[]", b'{"u": 5, "exp": 9}', b'{"u": "a", "exp": "9"}', b'{"u":"a","exp":9,"sub":"x"}',
                    b"\xff"):
        text = _b64(payload)
        with pytest.raises(ClientError, match="malformed"):
            read_token(SECRET, f"{text}.{_signature(SECRET, text)}", 0)


def test_mint_refuses_bad_arguments():
    """Minting needs a user and non-empty string grants."""
    with pytest.raises(UsageError):
        mint_token(SECRET, "")
    with pytest.raises(UsageError):
        mint_token(SECRET, "a", subscribe=[""])


@given(st.text(max_size=300))
def test_reading_arbitrary_text_only_raises_client_error(text):
    """Whatever text comes as a token, reading it raises ClientError (403) or returns claims."""
    try:
        read_token(SECRET, text, 0)
    except ClientError as e:
        assert e.status == 403


@given(st.text(min_size=1, max_size=50), st.lists(st.text(min_size=1, max_size=20), max_size=5),
       st.lists(st.text(min_size=1, max_size=20), max_size=5))
def test_any_user_and_grants_round_trip(user, subscribe, publish):
    """Users and grants of any text survive minting and reading."""
    claims = read_token(SECRET, mint_token(SECRET, user, subscribe=subscribe, publish=publish, now=0), 1)
    assert (claims["u"], claims["sub"], claims["pub"]) == (user, subscribe, publish)


# -- grants -------------------------------------------------------------------------

@pytest.mark.parametrize("patterns, subject, ok", [
    (["/chat/"], "/chat/room1", True),
    (["/chat/"], "/chat/", True),
    (["/chat/"], "/chat", False),          # would also match /chatter
    (["/chat/"], "/chatter", False),
    (["/chat/", "/news/"], "/chat/a,/news/b", True),
    (["/chat/"], "/chat/a,/admin", False),  # every part of a comma list
    (["*"], "/anything", True),
    ([], "/a", False),
    (["/a"], "", False),
    (["/a"], ",,", False),
])
def test_grants_use_pushlet_prefix_semantics(patterns, subject, ok):
    """A subject or subscription is granted when each of its parts starts with a grant."""
    assert granted(patterns, subject) is ok


@given(st.lists(st.text(alphabet="/ab", min_size=1, max_size=4), max_size=3),
       st.text(alphabet="/ab", min_size=1, max_size=5), st.text(alphabet="/ab", max_size=4))
def test_a_granted_subscription_only_matches_granted_subjects(patterns, prefix, rest):
    """If a subscription prefix is granted, every event subject it matches is granted too."""
    if granted(patterns, prefix):
        assert granted(patterns, prefix + rest)


# -- authorizers --------------------------------------------------------------------

@pytest.mark.parametrize("authorizer", [OpenAuthorizer(), TokenAuthorizer(SECRET), CallbackAuthorizer()])
def test_authorizers_provide_the_interface(authorizer):
    """Every ready authorizer provides IAuthorizer."""
    assert verifyObject(IAuthorizer, authorizer)


def test_open_authorizer_allows_everyone_anonymously():
    """The default authorizer lets anyone in, anonymously, for everything."""
    open_ = OpenAuthorizer()
    assert open_.join(Credentials()) is None
    assert open_.subscribe(session(), "/x") is None
    assert open_.publish(session(), "/x") is None


def test_token_authorizer_join_and_grants():
    """Join gives the token's user and claims; subscribe and publish follow the claims' grants."""
    now = [100.0]
    auth = TokenAuthorizer(SECRET, clock=lambda: now[0])
    token = auth.mint("bob", subscribe=["/in/"], publish=["/out/"], now=100, expires_in=50)
    identity = auth.join(Credentials(params={"token": token}))
    assert (identity.user, identity.claims["sub"]) == ("bob", ["/in/"])
    s = session(identity)
    auth.subscribe(s, "/in/x")
    auth.publish(s, "/out/x")
    with pytest.raises(ClientError, match="not allowed to subscribe to /out/x"):
        auth.subscribe(s, "/out/x")
    with pytest.raises(ClientError, match="not allowed to publish to /in/x"):
        auth.publish(s, "/in/x")
    now[0] = 150.0
    with pytest.raises(ClientError, match="token expired") as e:
        auth.subscribe(s, "/in/x")
    assert e.value.status is None  # a nack


def test_token_authorizer_anonymous_policy():
    """Without a token: refused (403) unless anonymous access is on, with the anonymous grants."""
    with pytest.raises(ClientError) as e:
        TokenAuthorizer(SECRET).join(Credentials())
    assert e.value.status == 403
    auth = TokenAuthorizer(SECRET, anonymous=True, anonymous_subscribe=["/pub/"])
    assert auth.join(Credentials()) is None
    auth.subscribe(session(), "/pub/a")
    with pytest.raises(ClientError):
        auth.publish(session(), "/pub/a")


def test_token_authorizer_binds_to_the_user_of_a_valid_token():
    """``bind`` gives the user of the request's valid token: a renewed token of the same user matches."""
    auth = TokenAuthorizer(SECRET)
    assert auth.bind(Credentials(headers={"authorization": "Bearer " + auth.mint("u", now=None)})) == "u"
    assert auth.bind(Credentials()) is None
    with pytest.raises(ClientError, match="expired"):
        auth.bind(Credentials(params={"token": auth.mint("u", expires_in=-5)}))


def test_token_secret_must_be_long():
    """A short secret is refused at construction and in the configuration."""
    with pytest.raises(UsageError):
        TokenAuthorizer("short")
    with pytest.raises(UsageError, match=r"auth\.token\.secret"):
        Config(auth_token_secret="short")


def test_callback_authorizer_with_plain_deferred_and_coroutine_answers():
    """Callbacks may answer directly, with a Deferred or as coroutines; ``False`` refuses."""
    async def publish(s, subject):
        return subject != "/no"

    auth = CallbackAuthorizer(join=lambda c: succeed(c.params.get("user")),
                              subscribe=lambda s, subject: subject.startswith("/ok"), publish=publish)
    assert result_of(auth.join(Credentials(params={"user": "zed"}))) == Identity("zed")
    assert result_of(auth.join(Credentials())) == Identity(None)
    assert auth.subscribe(session(), "/ok") is None
    with pytest.raises(ClientError, match="not allowed to subscribe to /nope"):
        auth.subscribe(session(), "/nope")
    assert result_of(auth.publish(session(), "/yes")) is None
    with pytest.raises(ClientError, match="not allowed to publish to /no"):
        result_of(auth.publish(session(), "/no"))


def test_callback_authorizer_bind_defaults_to_the_token():
    """Without ``bind=``, a session is bound to the request's token; with it, to what it returns."""
    assert CallbackAuthorizer().bind(Credentials(cookies={"pushpy_token": "t"})) == "t"
    auth = CallbackAuthorizer(bind=lambda c: c.cookies.get("app_session"))
    assert auth.bind(Credentials(cookies={"app_session": "abc"})) == "abc"


def test_as_identity_accepts_user_ids_none_and_identities():
    """A join answer is a user id, None or an Identity; anything else is a usage error."""
    assert as_identity("u") == Identity("u")
    assert as_identity(None) == Identity(None)
    assert as_identity(Identity("x", {"a": 1})).claims == {"a": 1}
    for bad in (5, "", object()):
        with pytest.raises(UsageError):
            as_identity(bad)


@pytest.mark.parametrize("credentials, token", [
    (Credentials(params={"token": "p"}, headers={"authorization": "Bearer h"}, cookies={"pushpy_token": "c"}),
     "p"),
    (Credentials(headers={"authorization": "bearer  h "}, cookies={"pushpy_token": "c"}), "h"),
    (Credentials(headers={"authorization": "Basic xyz"}, cookies={"pushpy_token": "c"}), "c"),
    (Credentials(headers={"authorization": "Bearer "}), None),
    (Credentials(), None),
])
def test_token_is_taken_from_parameter_then_bearer_then_cookie(credentials, token):
    """``Credentials.token`` takes the ``token`` parameter, then a Bearer header, then the cookie."""
    assert credentials.token() == token


def test_authorizer_from_config_and_secret_indirection(tmp_path, monkeypatch):
    """The configured secret picks the token authorizer; ``env:`` and ``file:`` values are read."""
    assert isinstance(authorizer_from_config(Config()), OpenAuthorizer)
    monkeypatch.setenv("PUSHPY_TEST_SECRET", SECRET)
    config = load_config(settings={"auth.token.secret": "env:PUSHPY_TEST_SECRET",
                                   "auth.anonymous": "true", "auth.anonymous.subscribe": "/Pub/, /x/"})
    auth = authorizer_from_config(config)
    assert isinstance(auth, TokenAuthorizer)
    assert (auth.secret, auth.anonymous, auth.anonymous_subscribe) == (SECRET, True, ("/Pub/", "/x/"))
    assert SECRET not in repr(config)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert load_config(settings={"api.key": f"file:{path}"}).api_key == SECRET
    with pytest.raises(UsageError, match="PUSHPY_MISSING"):
        load_config(settings={"api.key": "env:PUSHPY_MISSING"})
