"""Live feeds: a stock ticker and a system dashboard, pushed by pushpy from event sources.

Run ``python examples/feeds/app.py --port 8080`` and open http://127.0.0.1:8080/feeds/
(``?watch=/stocks/aex`` follows one market, ``?watch=/stocks/aex/asml`` one stock).
The sources are in :mod:`feeds`, the page in ``static/``; pushpy serves its
endpoints and ``lib/pushpy.js`` under ``/pushlet/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This example's modules, and the checkout's pushpy (an installed pushpy serves when there is none).
sys.path[:0] = [str(HERE), *([str(HERE.parents[1])] if (HERE.parents[1] / "pushpy").is_dir() else [])]

from feeds import feed_sources  # noqa: E402
from twisted.internet import endpoints  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.static import File  # noqa: E402
from twisted.web.util import Redirect  # noqa: E402

from pushpy import PushServer  # noqa: E402
from pushpy.web.site import build_site  # noqa: E402

log = Logger()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="how many times faster than normal the feeds tick (default 1)")
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    return args


def make_site(server: PushServer):
    """pushpy's site (``/pushlet/``) with the example's page at ``/feeds/``, and ``/`` leading to it."""
    site = build_site(server)
    site.resource.putChild(b"feeds", File(str(HERE / "static")))
    site.resource.putChild(b"", Redirect(b"/feeds/"))
    return site


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor

    args = parse_args(argv)
    info = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout), [info])],
                                     redirectStandardIO=False)
    server = PushServer(sources=feed_sources(args.speed))
    server.startService()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
    endpoint.listen(make_site(server)).addCallbacks(
        lambda port: log.info("live feeds on http://{host}:{port}/feeds/",
                              host=args.interface, port=port.getHost().port),
        lambda failure: (log.failure("cannot listen", failure), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
