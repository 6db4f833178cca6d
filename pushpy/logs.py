# test-case-name: tests.ops.test_logs
"""Logging: one line per session join and end, and the ``log.level`` filter.

Pushlet's ``log.level`` (1 fatal ... 6 trace, ``twistd pushpy --log-level``)
maps to a Twisted :class:`~twisted.logger.LogLevel`; :func:`level_filter`
wraps an observer in a :class:`~twisted.logger.FilteringLogObserver` that
drops events below it.  ``twistd pushpy`` installs that filter in front of
the log file or stdout twistd would have used (:func:`install_level_filter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
)

from pushpy import protocol as P
from pushpy.core.sessions import EndReason, Session

if TYPE_CHECKING:
    from pushpy.server import PushServer

#: Pushlet's ``log.level`` numbers and the Twisted levels they stand for.
LEVELS = {1: LogLevel.critical, 2: LogLevel.error, 3: LogLevel.warn, 4: LogLevel.info,
          5: LogLevel.debug, 6: LogLevel.debug}

log = Logger(namespace="pushpy.sessions")


def log_level(level: int) -> LogLevel:
    """The Twisted level of a Pushlet ``log.level`` (out-of-range numbers are clamped)."""
    return LEVELS[min(6, max(1, int(level)))]


def level_filter(observer: Any, level: int) -> FilteringLogObserver:
    """``observer`` behind a filter that drops events below ``log.level`` ``level``."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=log_level(level))
    return FilteringLogObserver(observer, [predicate])


def install_level_filter(application: Any, level: int, twistd_options: Any) -> bool:
    """Make twistd log through a ``log.level`` filter; whether it could.

    twistd asks its application for an ``ILogObserver`` before it starts
    logging; this gives it the observer twistd would have made itself (file,
    stdout or syslog, from ``twistd_options``), behind the filter.  Nothing
    is done when twistd has its own ``--logger``, when the application has an
    observer already, or outside twistd.
    """
    from twisted.python.components import Componentized

    if not isinstance(application, Componentized) or twistd_options is None:
        return False
    if application.getComponent(ILogObserver, None) is not None or twistd_options.get("logger"):
        return False
    try:
        from twisted.scripts.twistd import _SomeApplicationRunner

        observer = _SomeApplicationRunner.loggerFactory(twistd_options)._getLogObserver()
    except Exception:
        log.failure("cannot set up the log.level filter; logging everything")
        return False
    application.setComponent(ILogObserver, level_filter(observer, level))
    return True


def protocol_name(session: Session) -> str:
    """``pushlet/<format>`` for Pushlet sessions, ``native`` for pushpy's own transports."""
    return "native" if session.format == P.FORMAT_JSON else f"pushlet/{session.format}"


def watch_sessions(server: PushServer) -> None:
    """Log every session join and end of ``server``, one ``info`` line each."""

    def joined(session: Session) -> None:
        log.info("session {session} joined ({protocol}) from {address}", session=session.id,
                 protocol=protocol_name(session), address=session.address or "-")

    def ended(session: Session, reason: EndReason) -> None:
        log.info("session {session} ended: {reason} after {duration:.1f}s", session=session.id,
                 reason=reason.value, duration=max(0.0, server.clock.seconds() - session.created),
                 protocol=protocol_name(session))

    server.dispatcher.on_join.append(joined)
    server.dispatcher.on_end.append(ended)
