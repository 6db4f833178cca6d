"""Logging through twisted.logger: session lifecycle and request errors, one line each; log.level filters."""

from __future__ import annotations

import pytest_twisted
from twisted.application.service import Application
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, capturedLogs, formatEvent
from twisted.scripts.twistd import ServerOptions

from pushpy import tap
from pushpy.config import Config
from pushpy.core.sessions import EndReason
from pushpy.logs import install_level_filter, level_filter, log_level
from pushpy.server import PushServer


def lines(events, namespace_prefix: str = "pushpy") -> list[tuple[LogLevel, str]]:
    return [(e["log_level"], formatEvent(e)) for e in events
            if e.get("log_namespace", "").startswith(namespace_prefix)]


def test_session_join_and_end_are_one_info_line_each():
    """A join logs one info line with the session, protocol and address; its end one with the reason and
    how long it lived."""
    clock = Clock()
    server = PushServer(Config(), reactor=clock)
    with capturedLogs() as events:
        session = server.dispatcher.join(clock.seconds(), format="xml", address="10.0.0.7")
        clock.advance(12.5)
        server.dispatcher.end(session, EndReason.EXPIRED)
        native = server.dispatcher.join(clock.seconds(), format="json", address="10.0.0.8")
        server.dispatcher.end(native, EndReason.SHUTDOWN)
    assert lines(events) == [
        (LogLevel.info, f"session {session.id} joined (pushlet/xml) from 10.0.0.7"),
        (LogLevel.info, f"session {session.id} ended: expired after 12.5s"),
        (LogLevel.info, f"session {native.id} joined (native) from 10.0.0.8"),
        (LogLevel.info, f"session {native.id} ended: shutdown after 0.0s"),
    ]
    assert events[1]["session"] == session.id and events[1]["reason"] == "expired"


@pytest_twisted.ensureDeferred
async def test_refused_requests_are_one_line_each(pushpy_server):
    """A refused request logs one line with method, path, status and reason (not the query)."""
    server = pushpy_server()
    with capturedLogs() as events:
        await server.get("pushlet.srv?p_event=listen&p_id=secret123")
    refused = [text for level, text in lines(events, "pushpy.web.stats")]
    assert refused == ["refused GET /pushlet/pushlet.srv: HTTP 400 Invalid or expired id: secret123"]


def test_level_filter_drops_events_below_the_level():
    """level_filter passes events at or above log.level and drops the others."""
    seen: list[str] = []
    observer = level_filter(lambda event: seen.append(event["log_format"]), 3)  # warn
    log = Logger(observer=observer)
    log.debug("debug")
    log.info("info")
    log.warn("warn")
    log.error("error")
    log.critical("critical")
    assert seen == ["warn", "error", "critical"]


def test_pushlet_levels_map_to_twisted_levels():
    """Pushlet's 1 to 6 map to critical, error, warn, info, debug, debug; out of range is clamped."""
    assert [log_level(n) for n in range(0, 8)] == [
        LogLevel.critical, LogLevel.critical, LogLevel.error, LogLevel.warn, LogLevel.info,
        LogLevel.debug, LogLevel.debug, LogLevel.debug]


def test_twistd_logs_through_the_filter_into_its_log_file(tmp_path):
    """Under twistd, the application's log observer writes twistd's --logfile through the log.level filter."""
    options = ServerOptions()
    options.parseOptions(["--logfile", str(tmp_path / "t.log"), "pushpy", "--no-sources",
                          "--log-level", "error", "--listen", "tcp:0"])
    application = Application("pushpy")
    service = tap.makeService(options.subOptions)
    assert isinstance(service, tap.PushpyService) and service.log_level == 2
    service.setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    assert observer is not None
    log = Logger(observer=observer)
    log.info("an info line")
    log.error("an error line")
    text = (tmp_path / "t.log").read_text()
    assert "an error line" in text and "an info line" not in text


def test_no_filter_outside_twistd_or_with_its_own_logger():
    """Nothing is installed for an application without twistd options or when twistd has --logger."""
    application = Application("pushpy")
    assert not install_level_filter(application, 2, None)
    options = ServerOptions()
    options.parseOptions(["--logger", "twisted.logger.textFileLogObserver", "pushpy", "--no-sources"])
    assert not install_level_filter(application, 2, options)
    assert application.getComponent(ILogObserver) is None
