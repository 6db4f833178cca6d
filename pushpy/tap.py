# test-case-name: tests.web.test_tap
"""``twistd pushpy``: command-line options and the service they build.

``twistd -n pushpy`` serves the demo sources and web root on
``127.0.0.1:8080`` under ``/pushlet/``.  Every option is checked while the
command line is parsed, so a mistake stops ``twistd`` with a message saying
what to fix instead of failing after start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.python import usage

from pushpy import errors
from pushpy.config import Config, known_keys, load_config, unknown_key_message

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEFAULT_ROOT = "/pushlet/"

#: ``--log-level`` names and the Pushlet ``log.level`` numbers they stand for.
LOG_LEVELS = {"fatal": 1, "error": 2, "warn": 3, "info": 4, "debug": 5, "trace": 6}


class Options(usage.Options):
    """Options of ``twistd pushpy``; ``--listen`` and ``--set`` may be repeated."""

    synopsis = "[options]"
    longdesc = (
        "Serve the Pushlet 2.0.4 protocol at <root>pushlet.srv and a static web root at <root>. "
        "With no --listen, listens on " + DEFAULT_LISTEN + ".")

    optParameters = [
        ["config", "c", None, "A pushlet.properties file (Pushlet 2.0.4 keys and pushpy's own)."],
        ["sources", None, None,
         "A sources.properties file: lines key=module.ClassName. Default: the demo sources."],
        ["webroot", None, None, "Folder served at the mount root. Default: pushpy's demo web root."],
        ["root", None, DEFAULT_ROOT, "Mount root of the web root and pushlet.srv."],
        ["log-level", None, None,
         "Sets log.level: fatal, error, warn, info, debug, trace or 1 to 6 (as --set log.level=N)."],
        ["backplane", None, None,
         "Share events, history and sessions with other processes through Redis: "
         "redis://host:port/db (as --set backplane=...). See docs/scaling.md."],
        ["workers", None, "1",
         "Run this many worker processes sharing the --listen sockets (needs --backplane); "
         "dead workers are restarted, SIGTERM stops them all cleanly."],
    ]
    optFlags = [
        ["no-sources", None, "Run no event sources."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["tcp"] = []
        self["set"] = {}
        self["adopt"] = []
        #: The :class:`~pushpy.config.Config` built by :meth:`postOptions`.
        self.server_config: Config = Config()
        #: The :class:`~pushpy.interfaces.IEventSource` providers to run.
        self.event_sources: list[Any] = []

    def opt_listen(self, description: str) -> None:
        """Listen on a strports endpoint such as tcp:8080:interface=127.0.0.1 (repeatable)."""
        self["listen"].append(_check_endpoint(description))

    def opt_tcp(self, description: str) -> None:
        """Also serve the plain TCP transport (JSON lines) on a strports endpoint such as
        tcp:8081:interface=127.0.0.1 (repeatable; off by default)."""
        self["tcp"].append(_check_endpoint(description, "--tcp"))

    def opt_adopt(self, spec: str) -> None:
        """(Used by --workers) listen on an inherited socket FD:AF_INET."""
        self["adopt"].append(spec)

    def opt_set(self, assignment: str) -> None:
        """Override a configuration key, as key=value, e.g. session.timeout.mins=10 (repeatable)."""
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise usage.UsageError(
                f"--set expects key=value (for example --set session.timeout.mins=10), not {assignment!r}")
        if key not in known_keys():
            raise usage.UsageError(f"--set: {unknown_key_message(key)}")
        self["set"][key] = value

    def postOptions(self) -> None:
        if not self["listen"] and not self["adopt"]:
            self["listen"] = [DEFAULT_LISTEN]
        if self["backplane"] is not None:
            self["set"]["backplane"] = self["backplane"]
        settings = dict(self["set"])
        if self["log-level"] is not None:
            settings["log.level"] = str(_log_level(self["log-level"]))
        try:
            self.server_config = load_config(self["config"], settings=settings, strict=True)
        except errors.UsageError as e:
            given = []
            if self["config"]:
                given.append(f"--config {self['config']}")
            if settings:
                given.append("--set/--log-level")
            raise usage.UsageError(f"{e} (check {' and '.join(given)})") from e
        if self["webroot"] is not None and not Path(self["webroot"]).is_dir():
            raise usage.UsageError(f"--webroot {self['webroot']!r} is not a folder; give an existing folder")
        try:
            from pushpy.web.site import normalize_root

            normalize_root(self["root"])
        except errors.UsageError as e:
            raise usage.UsageError(f"--root: {e}") from e
        self.event_sources = self._load_sources()
        self._check_workers()

    def _check_workers(self) -> None:
        if self.server_config.backplane:
            from pushpy.cluster.link import parse_redis_url

            try:
                parse_redis_url(self.server_config.backplane)
            except errors.UsageError as e:
                raise usage.UsageError(f"--backplane: {e}") from e
        text = str(self["workers"])
        if not text.isdigit() or not 1 <= int(text) <= 256:
            raise usage.UsageError(f"--workers {text!r}: give a number from 1 to 256")
        self["workers"] = int(text)
        if self["workers"] > 1:
            if not self.server_config.backplane:
                raise usage.UsageError(
                    "--workers needs a shared backplane: add --backplane redis://127.0.0.1:6379/0")
            if self["tcp"]:
                raise usage.UsageError("--workers does not share --tcp listeners; run it without --tcp")
            bad = [d for d in self["listen"] if not d.startswith("tcp:")]
            if bad:
                raise usage.UsageError(f"--workers shares tcp: listeners only, not {bad[0]!r}")

    def worker_arguments(self) -> list[str]:
        """The options of one worker of ``--workers``: these, without listeners."""
        args = ["--root", self["root"]]
        for name in ("config", "sources", "webroot", "log-level"):
            if self[name] is not None:
                args += [f"--{name}", str(self[name])]
        if self["no-sources"]:
            args.append("--no-sources")
        for key, value in self["set"].items():
            args += ["--set", f"{key}={value}"]
        return args

    def _load_sources(self) -> list[Any]:
        if self["no-sources"]:
            if self["sources"] is not None:
                raise usage.UsageError("--sources and --no-sources exclude each other; give one")
            return []
        from pushpy.sources import load_sources

        try:
            return list(load_sources(self["sources"]))
        except errors.UsageError as e:
            raise usage.UsageError(f"--sources: {e}") from e


class PushpyService(MultiService):
    """The service of ``twistd pushpy``: the server and its listeners.

    Made the child of twistd's application, it has twistd log through the
    ``log.level`` filter (:func:`pushpy.logs.install_level_filter`); with
    ``gc.freeze`` it freezes the startup heap once running (:mod:`pushpy.heap`).
    """

    def __init__(self, log_level: int = 4, twistd_options: Any = None, *, gc_freeze: bool = False) -> None:
        super().__init__()
        self.log_level = log_level
        self.twistd_options = twistd_options
        self.gc_freeze = gc_freeze

    def setServiceParent(self, parent: Any) -> None:
        from pushpy.logs import install_level_filter

        install_level_filter(parent, self.log_level, self.twistd_options)
        super().setServiceParent(parent)

    def startService(self) -> None:
        super().startService()
        if self.gc_freeze:
            from twisted.internet import reactor

            from pushpy.heap import freeze_startup_heap

            reactor.callWhenRunning(freeze_startup_heap)  # after every service has started


def makeService(options: Options) -> MultiService:
    """The push server, one listening service per ``--listen`` and per ``--tcp``, as one service."""
    from pushpy.server import PushServer
    from pushpy.web.site import build_site
    from pushpy.web.tcp import tcp_factory

    config = options.server_config
    top = PushpyService(config.log_level, getattr(options, "parent", None), gc_freeze=config.gc_freeze)
    if options["workers"] > 1:
        from pushpy.cluster.workers import WorkerSupervisor

        WorkerSupervisor(options["workers"], options.worker_arguments(),
                         options["listen"]).setServiceParent(top)
        return top
    server = PushServer(config, sources=options.event_sources)
    IService(server).setServiceParent(top)
    site = build_site(server, webroot=options["webroot"], root=options["root"])
    listeners: MultiService = top
    if getattr(server.backplane, "start", None) is not None:
        # A clustered backplane: accept clients once it is connected and caught up, so
        # no session starts from a position of an unknown log.
        from pushpy.cluster.workers import AfterBackplane

        listeners = AfterBackplane(server.backplane)
        listeners.setServiceParent(top)
    for description in options["listen"]:
        strports.service(description, site).setServiceParent(listeners)
    if options["adopt"]:
        from pushpy.cluster.workers import AdoptedPortService

        for spec in options["adopt"]:
            AdoptedPortService(spec, site).setServiceParent(listeners)
    if options["tcp"]:
        lines = tcp_factory(server)
        for description in options["tcp"]:
            strports.service(description, lines).setServiceParent(top)
    return top


def _check_endpoint(description: str, option: str = "--listen") -> str:
    """``description`` if it parses as a server endpoint, else a UsageError saying so."""
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:  # each endpoint parser raises its own kind (ValueError, TypeError, OSError...)
        raise usage.UsageError(
            f"{option} {description!r} is not a valid endpoint description ({e}); "
            f"write it like {DEFAULT_LISTEN} or unix:/path/to/socket") from e
    return description


def _log_level(text: str) -> int:
    value = text.strip().lower()
    level = LOG_LEVELS.get(value) or (int(value) if value.isdigit() else 0)
    if not 1 <= level <= 6:
        raise usage.UsageError(
            f"--log-level {text!r}: use one of {', '.join(LOG_LEVELS)} or a number from 1 to 6")
    return level
