# test-case-name: tests.client.test_cli
"""The ``pushpy`` command: publish, listen and read a server's stats from a shell.

::

    pushpy publish /chat text=hello user=ann      # prints the event's id
    pushpy listen /chat /stocks --count 10        # one JSON line per event
    pushpy stats                                  # the server's JSON stats
    pushpy --url http://host:8080/pushlet/ listen /chat
    pushpy --url tcp://host:8081 listen /chat     # the plain TCP transport

Exit status: 0 on success, 1 when the server refuses or cannot be reached,
2 on a usage error.  ``python -m pushpy`` runs the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pushpy.client.client import DEFAULT_URL, Client, ClientEvent, Refused


class Failed(Exception):
    """The command could not do its job; the message says why."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pushpy", description="Publish to and listen on a pushpy server.")
    top.add_argument("--url", default=DEFAULT_URL,
                     help=f"the server's mount root, or tcp://HOST:PORT (default {DEFAULT_URL})")
    top.add_argument("--transport", choices=("websocket", "sse", "longpoll"), default=None,
                     help="how to connect over HTTP (default websocket)")
    top.add_argument("--timeout", type=float, default=10.0,
                     help="seconds to wait for the server (default 10)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    publish = commands.add_parser("publish", help="publish one event; prints its id")
    publish.add_argument("subject")
    publish.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    publish.add_argument("--to", metavar="SESSION", help="send to one session instead")
    listen = commands.add_parser("listen", help="print events as JSON lines until Ctrl-C")
    listen.add_argument("subjects", nargs="+", metavar="SUBJECT")
    listen.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")
    listen.add_argument("--last-event-id", default=None, metavar="ID",
                        help="resume after this event id")
    commands.add_parser("stats", help="print the server's stats as JSON")
    return top


def parse_fields(items: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments as a dict; the value may contain ``=``."""
    fields: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {item!r}")
        fields[key] = value
    return fields


async def run(reactor: Any, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
    """Run one parsed command on ``reactor``; raise :class:`Failed` to exit with status 1."""
    if args.command == "stats":
        await stats(reactor, args, out)
        return
    client = Client(args.url, transport=args.transport, reactor=reactor,
                    last_event_id=getattr(args, "last_event_id", None))
    errors: list[str] = []
    client.on("error", lambda info: errors.append(str(info.get("reason"))))
    reactor.addSystemEventTrigger("before", "shutdown", client.close)
    try:
        if args.command == "publish":
            await publish(reactor, client, args, out, errors)
        else:
            await listen(reactor, client, args, out, errors)
    finally:
        await client.close()


async def _open(reactor: Any, client: Client, args: argparse.Namespace, errors: list[str]) -> None:
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    try:
        await client.connect().addTimeout(args.timeout, reactor)
    except DeferredTimeout:
        reason = errors[-1] if errors else "no answer"
        raise Failed(f"cannot connect to {args.url}: {reason}") from None


async def publish(reactor: Any, client: Client, args: argparse.Namespace, out: TextIO,
                  errors: list[str]) -> None:
    fields = parse_fields(args.fields)
    await _open(reactor, client, args, errors)
    try:
        event_id = await client.publish(args.subject, fields, to=args.to)
    except Refused as e:
        raise Failed(f"publish refused: {e.reason}") from None
    out.write(f"{event_id if event_id is not None else ''}\n")
    out.flush()


async def listen(reactor: Any, client: Client, args: argparse.Namespace, out: TextIO,
                 errors: list[str]) -> None:
    from twisted.internet.defer import Deferred

    done: Deferred[None] = Deferred()
    seen = 0

    def printed(event: ClientEvent) -> None:
        nonlocal seen
        if done.called:
            return
        out.write(json.dumps(event.as_json(), ensure_ascii=False) + "\n")
        out.flush()
        seen += 1
        if args.count and seen >= args.count:
            done.callback(None)

    def gap(info: dict[str, Any]) -> None:
        sys.stderr.write(f"pushpy: events were lost ({info.get('reason')})\n")

    client.on("gap", gap)
    for subject in args.subjects:
        client.subscribe(subject, printed)
    await _open(reactor, client, args, errors)
    await done


async def stats(reactor: Any, args: argparse.Namespace, out: TextIO) -> None:
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    if not args.url.startswith(("http://", "https://")):
        raise Failed("stats needs the HTTP URL of the server (--url http://HOST:PORT/pushlet/)")
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    url = args.url.rstrip("/") + "/stats"
    try:
        response = await http.get(url, timeout=args.timeout)
        body = await response.content()
    except Exception as e:
        raise Failed(f"cannot read {url}: {e}") from None
    finally:
        await pool.closeCachedConnections()
    if response.code != 200:
        raise Failed(f"{url} answered HTTP {response.code}")
    try:
        value = json.loads(body)
    except ValueError:
        raise Failed(f"{url} did not answer JSON") from None
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: parse ``argv``, run the command, exit with its status."""
    from twisted.internet import task

    top = parser()
    args = top.parse_args(argv)
    if args.command == "publish":
        try:
            parse_fields(args.fields)
        except argparse.ArgumentTypeError as e:
            top.error(str(e))

    async def command(reactor: Any) -> None:
        try:
            await run(reactor, args)
        except Failed as e:
            sys.stderr.write(f"pushpy: {e}\n")
            raise SystemExit(1) from None
        except Refused as e:  # interrupted (Ctrl-C, SIGTERM) while connecting or waiting
            sys.stderr.write(f"pushpy: {e.reason}\n")
            raise SystemExit(1) from None
        except ValueError as e:  # a bad --url
            sys.stderr.write(f"pushpy: {e}\n")
            raise SystemExit(2) from None

    task.react(command)


if __name__ == "__main__":
    main()
