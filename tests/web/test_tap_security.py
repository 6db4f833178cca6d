"""``twistd pushpy`` with the security keys: secrets from the environment, clear refusals."""

from __future__ import annotations

import time

import pytest
from twisted.python.usage import UsageError

from pushpy import auth, tap

SECRET = "tap-secret-0123456789abcdef"


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_token_secret_and_api_key_from_the_environment(monkeypatch):
    """``--set auth.token.secret=env:NAME`` reads the secret, so it stays out of the process list."""
    monkeypatch.setenv("PUSHPY_SECRET", SECRET)
    monkeypatch.setenv("PUSHPY_KEY", "k" * 20)
    options = parse("--no-sources", "--set", "auth.token.secret=env:PUSHPY_SECRET",
                    "--set", "api.key=env:PUSHPY_KEY", "--set", "origins.allowed=https://app.example")
    config = options.server_config
    assert (config.auth_token_secret, config.api_key) == (SECRET, "k" * 20)
    server = next(iter(tap.makeService(options)))
    assert isinstance(server.authorizer, auth.TokenAuthorizer)


def test_demo_stays_open_by_default():
    """Without a token secret the server lets everyone in (the demo), and the publish API is off."""
    options = parse("--no-sources")
    server = next(iter(tap.makeService(options)))
    assert isinstance(server.authorizer, auth.OpenAuthorizer)
    assert options.server_config.api_key == ""


@pytest.mark.parametrize("setting, message", [
    ("auth.token.secret=short", "at least 16 characters"),
    ("auth.token.secret=env:PUSHPY_NOT_SET_ANYWHERE", "PUSHPY_NOT_SET_ANYWHERE"),
    ("api.key=file:/nonexistent/key", "cannot read /nonexistent/key"),
])
def test_bad_secrets_stop_twistd_with_a_message(setting, message):
    """A short or missing secret is refused while the command line is parsed, saying what is wrong."""
    with pytest.raises(UsageError, match=message):
        parse("--no-sources", "--set", setting)


def test_mint_command_prints_a_token(monkeypatch, capsys):
    """``python -m pushpy.auth USER`` prints a token the server accepts, signed with $PUSHPY_TOKEN_SECRET."""
    monkeypatch.setenv("PUSHPY_TOKEN_SECRET", SECRET)
    assert auth.main(["alice", "--subscribe", "/news/", "--expires", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = auth.read_token(SECRET, token, time.time())
    assert (claims["u"], claims["sub"]) == ("alice", ["/news/"])
    monkeypatch.delenv("PUSHPY_TOKEN_SECRET")
    assert auth.main(["alice"]) == 2
