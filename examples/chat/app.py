"""A chat on pushpy: rooms, private groups, private messages, typing, who is online, recent history.

Run ``python examples/chat/app.py --port 8080`` and open http://127.0.0.1:8080/
in two browsers.  ``?transport=iframe`` (or ``longpoll``, ``sse``...) on the
page's URL forces a pushpy transport.

How it is built:

- Logging in by name (no password: a demo) gives the browser a pushpy token
  in an ``HttpOnly`` cookie; a :class:`~pushpy.auth.CallbackAuthorizer` reads
  it when a pushpy session joins, so every session carries its user.
- Pages publish through pushpy themselves: room and group messages and
  typing notices to their subjects, private messages to the recipient user
  (every session of that user).  The server stamps each event with the
  publisher's user (``p_user``), which is what pages show as the sender, so
  nobody can write as someone else; the authorizer decides who may publish
  where.  The app's JSON API only logs in and creates rooms and groups.
- A room or group is two subjects: ``<base>/msg`` (messages, kept in pushpy's
  history for late joiners) and ``<base>/typing``.  Rooms are open to every
  user; a group's subjects only to its members.  A private message is a
  publish to ``user:<name>``, allowed to any user who has logged in (pushpy
  refuses it when that user has no session).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.static import File

from pushpy import Config, PushServer
from pushpy.auth import CallbackAuthorizer, Credentials, Identity, mint_token, read_token
from pushpy.errors import ClientError
from pushpy.web.site import build_site

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/jsonapi.py

from jsonapi import ApiError, JsonApi  # noqa: E402

#: A room name: what may follow ``/chat/room/`` in a subject.
ROOM = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
MAX_NAME = 32
log = Logger()
#: Where pushpy announces users coming online and leaving (presence of its ``/online`` subject).
ONLINE_EVENTS = "/presence/online"


@dataclass(frozen=True, slots=True)
class Group:
    """A private conversation of a fixed set of members."""

    id: str
    name: str
    members: frozenset[str]

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "members": sorted(self.members)}


def user_name(value: object) -> str:
    """A user name: 1 to 32 printable characters (shown with textContent, never parsed)."""
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ApiError(f"a name is 1 to {MAX_NAME} printable characters")
    return name


class Chat:
    """The chat's state (rooms, groups, known users) and what it publishes."""

    #: The server it publishes through (set once made: the server needs :meth:`authorizer` first).
    push: PushServer

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.rooms: list[str] = ["general", "random"]
        self.groups: dict[str, Group] = {}
        self.users: set[str] = set()

    # -- who is who ------------------------------------------------------------

    def login(self, name: object) -> tuple[str, str]:
        """The user name and the pushpy token for it."""
        user = user_name(name)
        self.users.add(user)
        return user, mint_token(self.secret, user, expires_in=12 * 3600)

    def user_of(self, token: str | None) -> str:
        """The user of a valid token, else :class:`ApiError` 401."""
        if not token:
            raise ApiError("log in first", 401)
        try:
            return read_token(self.secret, token, time.time())["u"]
        except ClientError:
            raise ApiError("log in again", 401) from None

    # -- the authorizer's questions ---------------------------------------------

    def authorizer(self) -> CallbackAuthorizer:
        return CallbackAuthorizer(join=self._join, subscribe=self._may_subscribe, publish=self._may_publish)

    def _join(self, credentials: Credentials) -> Identity:
        token = credentials.token()
        if not token:
            raise ClientError("log in first", 403)
        claims = read_token(self.secret, token, time.time())
        return Identity(claims["u"], claims)

    def _may_subscribe(self, session: Any, subject: str) -> bool:
        parts = [part for part in subject.split(",") if part]
        return bool(parts) and all(self._readable(session.user, part) for part in parts)

    def _may_publish(self, session: Any, subject: str) -> bool:
        if subject.startswith("user:"):
            return session.user is not None and subject[len("user:"):] in self.users
        return self._conversation(session.user, subject)

    def _readable(self, user: str | None, subject: str) -> bool:
        if user is not None and subject in ("/chat/rooms", "/online", ONLINE_EVENTS):
            return True  # the room list; who is online (a presence query) and its join/leave events
        return self._conversation(user, subject)

    def _conversation(self, user: str | None, subject: str) -> bool:
        """Whether ``subject`` is the messages or typing of a room, or of a group of ``user``."""
        if user is None:
            return False
        parts = subject.split("/")
        if len(parts) != 5 or parts[4] not in ("msg", "typing"):
            return False
        if parts[2] == "room":
            return parts[3] in self.rooms
        group = self.groups.get(parts[3]) if parts[2] == "group" else None
        return group is not None and user in group.members

    # -- rooms and groups ------------------------------------------------------------

    def create_room(self, name: object) -> str:
        room = name.strip().lower() if isinstance(name, str) else ""
        if not ROOM.match(room):
            raise ApiError("a room name is 1 to 32 of a-z, 0-9 and -, starting with a letter or digit")
        if room not in self.rooms:
            self.rooms.append(room)
            self.push.publish("/chat/rooms", kind="room", room=room)
        return room

    def create_group(self, user: str, name: object, members: object) -> Group:
        if not isinstance(members, list) or len(members) > 50:
            raise ApiError("members is a list of at most 50 user names")
        names = {user_name(member) for member in members} | {user}
        unknown = sorted(names - self.users)
        if unknown:
            raise ApiError(f"unknown user: {unknown[0]}", 404)
        group = Group("g" + secrets.token_hex(6), user_name(name), frozenset(names))
        self.groups[group.id] = group
        for member in group.members:
            self.to_user(member, "/chat/groups", kind="group", group=group.id, name=group.name,
                         by=user, members="\n".join(sorted(group.members)))
        return group

    def groups_of(self, user: str) -> list[dict[str, Any]]:
        return [group.describe() for group in self.groups.values() if user in group.members]

    def to_user(self, user: str, subject: str, fields: dict[str, str] | None = None, **more: str) -> None:
        """Send an event to every session (tabs, devices) of ``user``."""
        self.push.send_to_user(user, subject, {**(fields or {}), **more})


def api(chat: Chat) -> JsonApi:
    """The JSON API under ``/api/``."""
    routes = JsonApi(chat.user_of)

    @routes.post("login", public=True)
    def login(request: Any, body: dict[str, Any], _: None) -> dict[str, Any]:
        user, token = chat.login(body.get("name"))
        routes.set_token(request, token)
        return {"user": user}

    @routes.post("logout", public=True)
    def logout(request: Any, body: dict[str, Any], _: None) -> dict[str, Any]:
        routes.set_token(request, "")
        return {}

    @routes.get("me")
    def me(request: Any, user: str) -> dict[str, Any]:
        return {"user": user, "rooms": chat.rooms, "groups": chat.groups_of(user)}

    @routes.post("rooms")
    def create_room(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return {"room": chat.create_room(body.get("name"))}

    @routes.post("groups")
    def create_group(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return {"group": chat.create_group(user, body.get("name"), body.get("members")).describe()}

    return routes


def make_site(push: PushServer, chat: Chat) -> Any:
    """pushpy under ``/pushlet/``, the pages at ``/``, the JSON API at ``/api/``."""
    site = build_site(push)
    site.resource.putChild(b"", File(str(HERE / "static" / "index.html")))
    site.resource.putChild(b"static", File(str(HERE / "static")))
    site.resource.putChild(b"api", api(chat))
    return site


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pushpy chat example")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--session-timeout", type=float, default=30.0,
                        help="seconds a user stays online after their last page lost its connection")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    if args.session_timeout <= 0:
        parser.error("--session-timeout must be positive")
    info_and_up = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout), [info_and_up])],
                                     redirectStandardIO=False)
    # Heartbeats renew a connected session's lease, so they come well within it.
    heartbeat = int(min(5.0, args.session_timeout / 3) * 1000)
    config = Config(history_ttl_secs=24 * 3600, queue_read_timeout_millis=max(heartbeat, 200),
                    session_check_millis=500, native_session_timeout_secs=args.session_timeout)
    chat = Chat(secrets.token_urlsafe(32))
    push = chat.push = PushServer(config, authorizer=chat.authorizer())
    push.startService()
    reactor.addSystemEventTrigger("before", "shutdown", push.stopService)
    port = reactor.listenTCP(args.port, make_site(push, chat), interface=args.interface)
    log.info("chat on http://{host}:{port}/", host=args.interface, port=port.getHost().port)
    reactor.run()


if __name__ == "__main__":
    main()
