"""Customer service on pushpy: visitors chat with agents through a queue.

Run ``python examples/customer_service/app.py --port 8080``, open
http://127.0.0.1:8080/ as a visitor and http://127.0.0.1:8080/agent/ as an
agent (another browser, or a private window).

- A visitor opens a chat from the shop page.  :class:`desk.Desk` assigns them
  to the available agent with the fewest visitors, or queues them.  Their id
  is in a pushpy token in an ``HttpOnly`` cookie, so a reload (or another tab)
  is the same visitor, and the page shows the conversation again from pushpy's
  history of the subject ``/cs/visit/<id>``.
- An agent serves up to ``--capacity`` visitors at once, each in its own
  panel, and can transfer one to another available agent (the previous
  agent's sessions are unsubscribed from the conversation on the server,
  ``PushServer.unsubscribe``).  An agent whose
  pages have all been gone for ``--session-timeout`` seconds (pushpy's
  presence says so) leaves the desk; their visitors go to other agents.  A
  visitor gone for twice that has their chat closed, freeing its place.
- Pages only receive through pushpy: conversation events by subscription,
  desk and status news as events sent to every session of a user.  They send
  through this app's JSON API, which checks who may say what and stamps the
  sender; the authorizer refuses every publish from a page.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.resource import Resource
from twisted.web.static import File

from pushpy import Config, PushServer
from pushpy.auth import CallbackAuthorizer, Credentials, Identity, mint_token, read_token
from pushpy.errors import ClientError
from pushpy.web.site import build_site

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # desk.py; examples/jsonapi.py

from desk import Desk, DeskError, Move  # noqa: E402
from jsonapi import ApiError, JsonApi  # noqa: E402

MAX_TEXT = 2000
MAX_NAME = 32
VISITOR = "visitor:"
AGENT = "agent:"
log = Logger()


def display_name(value: object, default: str = "") -> str:
    """A display name: up to 32 printable characters (shown with textContent)."""
    name = value.strip() if isinstance(value, str) else ""
    if len(name) > MAX_NAME or not name.isprintable():
        raise ApiError(f"a name is at most {MAX_NAME} printable characters")
    return name or default


def message_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ApiError(f"a message is 1 to {MAX_TEXT} characters")
    return value


def conversation(visitor: str) -> str:
    """The subject of a visitor's conversation."""
    return f"/cs/visit/{visitor}"


class Service:
    """The desk, the visitors' names, and what it tells whom."""

    #: The server it publishes through (set once made: the server needs :meth:`authorizer` first).
    push: PushServer

    def __init__(self, secret: str, capacity: int, grace: float) -> None:
        self.secret = secret
        self.desk = Desk(capacity)
        #: Open conversations: visitor id -> the visitor's name.
        self.visitors: dict[str, str] = {}
        #: Seconds a visitor with an open chat may have no pushpy session (a reload takes one).
        self.grace = grace
        #: When each visitor with an open chat was last seen online (or opened it).
        self.seen: dict[str, float] = {}

    # -- identities ------------------------------------------------------------

    def token(self, user: str) -> str:
        return mint_token(self.secret, user, expires_in=12 * 3600)

    def user_of(self, token: str | None) -> str:
        if not token:
            raise ApiError("no visitor or agent yet", 401)
        try:
            return read_token(self.secret, token, time.time())["u"]
        except ClientError:
            raise ApiError("log in again", 401) from None

    @staticmethod
    def agent(user: str) -> str:
        if not user.startswith(AGENT):
            raise ApiError("agents only", 403)
        return user[len(AGENT):]

    @staticmethod
    def visitor(user: str) -> str:
        if not user.startswith(VISITOR):
            raise ApiError("visitors only", 403)
        return user[len(VISITOR):]

    # -- the authorizer ------------------------------------------------------------

    def authorizer(self) -> CallbackAuthorizer:
        return CallbackAuthorizer(join=self._join, subscribe=self._may_subscribe,
                                  publish=lambda session, subject: False)

    def _join(self, credentials: Credentials) -> Identity:
        token = credentials.token()
        if not token:
            raise ClientError("open a chat first", 403)
        claims = read_token(self.secret, token, time.time())
        return Identity(claims["u"], claims)

    def _may_subscribe(self, session: Any, subject: str) -> bool:
        parts = [part for part in subject.split(",") if part]
        return bool(parts) and all(self._readable(session.user or "", part) for part in parts)

    def _readable(self, user: str, subject: str) -> bool:
        if subject == "/cs/agents":
            return user.startswith(AGENT)
        if not subject.startswith("/cs/visit/"):
            return False
        visitor = subject[len("/cs/visit/"):]
        if user.startswith(VISITOR):
            return user == VISITOR + visitor
        return user.startswith(AGENT) and self.desk.agent_of(visitor) == user[len(AGENT):]

    # -- visitors ------------------------------------------------------------

    def new_visitor(self) -> tuple[str, str]:
        """A new visitor id and its token."""
        visitor = secrets.token_hex(8)
        return visitor, self.token(VISITOR + visitor)

    def visitor_state(self, visitor: str) -> dict[str, Any]:
        return {"visitor": visitor, "open": visitor in self.visitors, "name": self.visitors.get(visitor, ""),
                "agent": self.desk.agent_of(visitor), "position": self.desk.position(visitor),
                "subject": conversation(visitor)}

    def open(self, visitor: str, name: object) -> dict[str, Any]:
        if visitor not in self.visitors:
            self.visitors[visitor] = display_name(name, "Visitor " + visitor[:4])
            self.seen[visitor] = self.push.clock.seconds()
            self.push.publish(conversation(visitor), {"role": "system", "from": "",
                                                      "text": "Chat opened. An agent will be with you soon."})
        self.apply(self.desk.open(visitor))
        return self.visitor_state(visitor)

    def close(self, visitor: str) -> None:
        if visitor not in self.visitors:
            return
        agent = self.desk.agent_of(visitor)
        moves = self.desk.close(visitor)
        self.push.publish(conversation(visitor), {"role": "system", "from": "", "text": "The visitor left."})
        del self.visitors[visitor]
        self.seen.pop(visitor, None)
        if agent:
            self.tell_agent(agent, kind="removed", visitor=visitor, reason="closed")
        self.tell_visitor(visitor)
        self.apply(moves)

    def visitor_says(self, visitor: str, text: object) -> str | None:
        if visitor not in self.visitors:
            raise ApiError("open a chat first", 409)
        event = self.push.publish(conversation(visitor), {"role": "visitor", "from": self.visitors[visitor],
                                                          "text": message_text(text)})
        return event.position

    # -- agents ------------------------------------------------------------

    def agent_state(self, agent: str) -> dict[str, Any]:
        found = self.desk.agents.get(agent)
        return {"agent": agent, "available": bool(found and found.available),
                "visitors": [self.describe(v) for v in self.desk.visitors_of(agent)],
                "agents": self.desk.available_agents(), "queue": len(self.desk.queue)}

    def describe(self, visitor: str) -> dict[str, str]:
        return {"visitor": visitor, "name": self.visitors.get(visitor, ""), "subject": conversation(visitor)}

    def set_available(self, agent: str, available: bool) -> dict[str, Any]:
        if available:
            self.apply(self.desk.agent_available(agent))
        else:
            self.apply(self.desk.agent_away(agent))
        self.push.publish("/cs/agents", agents="\n".join(self.desk.available_agents()))
        return self.agent_state(agent)

    def agent_says(self, agent: str, visitor: object, text: object) -> str | None:
        if not isinstance(visitor, str) or self.desk.agent_of(visitor) != agent:
            raise ApiError("not your visitor", 403)
        event = self.push.publish(conversation(visitor), {"role": "agent", "from": agent,
                                                          "text": message_text(text)})
        return event.position

    def transfer(self, agent: str, visitor: object, to: object) -> None:
        try:
            moves = self.desk.transfer(str(visitor), agent, str(to))
        except DeskError as e:
            raise ApiError(str(e), 409) from None
        self.apply(moves)

    def check_presence(self) -> Deferred[None]:
        """Take agents without a pushpy session off the desk (their visitors move on), and close
        the chats of visitors who have had none for ``grace`` seconds (their agents get room)."""

        def check(online: dict[str, int]) -> None:
            for agent in self.desk.available_agents():
                if AGENT + agent not in online:
                    log.info("agent {agent} is gone: their visitors move on", agent=agent)
                    self.set_available(agent, False)
            now = self.push.clock.seconds()
            for visitor in list(self.visitors):
                if VISITOR + visitor in online:
                    self.seen[visitor] = now
                elif now - self.seen.get(visitor, now) > self.grace:
                    log.info("visitor {visitor} is gone: chat closed", visitor=visitor)
                    self.close(visitor)

        return self.push.presence().addCallback(check).addErrback(
            lambda failure: log.failure("presence check failed", failure))

    # -- telling people ----------------------------------------------------------

    def apply(self, moves: list[Move]) -> None:
        """Tell the agents, visitors and conversations concerned by ``moves``; update queue places."""
        for move in moves:
            if move.previous and move.previous != move.agent:
                reason = f"transferred to {move.agent}" if move.agent else "back to the queue"
                # Taken back on the server: the previous agent's pages get nothing more of this
                # conversation, whatever they do (the authorizer refuses a new subscribe).
                self.push.unsubscribe(conversation(move.visitor), user=AGENT + move.previous, reason=reason)
                self.tell_agent(move.previous, kind="removed", visitor=move.visitor, reason=reason)
            if move.agent:
                self.tell_agent(move.agent, kind="assigned", **self.describe(move.visitor),
                                previous=move.previous or "")
                text = (f"{move.previous} transferred you to {move.agent}." if move.previous
                        else f"{move.agent} is now helping you.")
                self.push.publish(conversation(move.visitor), {"role": "system", "from": "", "text": text})
            self.tell_visitor(move.visitor)
        for visitor in list(self.desk.queue):
            self.tell_visitor(visitor)

    def tell_agent(self, agent: str, **fields: str) -> None:
        self.push.send_to_user(AGENT + agent, "/cs/desk", fields)

    def tell_visitor(self, visitor: str) -> None:
        state = self.visitor_state(visitor)
        self.push.send_to_user(VISITOR + visitor, "/cs/status", {
            "open": "yes" if state["open"] else "", "agent": state["agent"] or "",
            "position": str(state["position"] or "")})


def api(service: Service) -> JsonApi:
    """The JSON API under ``/api/``."""
    routes = JsonApi(service.user_of)

    @routes.get("visitor", public=True)
    def visitor_state(request: Any, _: None) -> dict[str, Any]:
        """The visitor of the cookie (a new one, with its cookie, when there is none)."""
        token = (request.getCookie(b"pushpy_token") or b"").decode("ascii", "replace")
        try:
            visitor = service.visitor(service.user_of(token))
        except ApiError:
            visitor, token = service.new_visitor()
            routes.set_token(request, token)
        return service.visitor_state(visitor)

    @routes.post("visitor/open")
    def open_chat(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return service.open(service.visitor(user), body.get("name"))

    @routes.post("visitor/say")
    def visitor_says(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return {"id": service.visitor_says(service.visitor(user), body.get("text"))}

    @routes.post("visitor/close")
    def close_chat(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        service.close(service.visitor(user))
        return {}

    @routes.post("agent/login", public=True)
    def agent_login(request: Any, body: dict[str, Any], _: None) -> dict[str, Any]:
        agent = display_name(body.get("name"))
        if not agent:
            raise ApiError("an agent needs a name")
        routes.set_token(request, service.token(AGENT + agent))
        return {"agent": agent}

    @routes.get("agent")
    def agent_state(request: Any, user: str) -> dict[str, Any]:
        return service.agent_state(service.agent(user))

    @routes.post("agent/available")
    def available(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return service.set_available(service.agent(user), bool(body.get("available")))

    @routes.post("agent/say")
    def agent_says(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        return {"id": service.agent_says(service.agent(user), body.get("visitor"), body.get("text"))}

    @routes.post("agent/transfer")
    def transfer(request: Any, body: dict[str, Any], user: str) -> dict[str, Any]:
        service.transfer(service.agent(user), body.get("visitor"), body.get("to"))
        return {}

    return routes


def make_site(push: PushServer, service: Service) -> Any:
    """pushpy at ``/pushlet/``, the shop at ``/``, the agents' page at ``/agent/``, the API at ``/api/``."""
    site = build_site(push)
    static = HERE / "static"
    site.resource.putChild(b"", File(str(static / "index.html")))
    desk = Resource()
    desk.putChild(b"", File(str(static / "agent.html")))
    site.resource.putChild(b"agent", desk)
    site.resource.putChild(b"static", File(str(static)))
    site.resource.putChild(b"api", api(service))
    return site


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pushpy customer-service example")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--capacity", type=int, default=3, help="visitors an agent serves at once")
    parser.add_argument("--session-timeout", type=float, default=30.0,
                        help="seconds before an agent whose pages lost their connection leaves the desk "
                             "(and twice that before a visitor's chat is closed)")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    if args.capacity < 1 or args.session_timeout <= 0:
        parser.error("--capacity and --session-timeout must be positive")
    info_and_up = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout), [info_and_up])],
                                     redirectStandardIO=False)
    # Heartbeats renew a connected session's lease, so they come well within it.
    heartbeat = int(min(5.0, args.session_timeout / 3) * 1000)
    config = Config(history_ttl_secs=24 * 3600, queue_read_timeout_millis=max(heartbeat, 200),
                    session_check_millis=500, native_session_timeout_secs=args.session_timeout)
    service = Service(secrets.token_urlsafe(32), args.capacity, grace=args.session_timeout)
    push = service.push = PushServer(config, authorizer=service.authorizer())
    push.startService()
    reactor.addSystemEventTrigger("before", "shutdown", push.stopService)
    checker = LoopingCall(service.check_presence)
    checker.start(1.0, now=False)
    port = reactor.listenTCP(args.port, make_site(push, service), interface=args.interface)
    log.info("customer service on http://{host}:{port}/ (agents: /agent/)",
             host=args.interface, port=port.getHost().port)
    reactor.run()


if __name__ == "__main__":
    main()
