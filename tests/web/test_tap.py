"""``twistd pushpy``: option parsing, the service it builds, and the plugin that offers it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import getChildForRequest
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from pushpy import tap
from pushpy.server import PushServer
from pushpy.sources import samples
from pushpy.web.origins import OriginGuard
from pushpy.web.pushlet import PushletResource


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def usage_error(*argv: str) -> str:
    with pytest.raises(UsageError) as info:
        parse(*argv)
    return str(info.value)


def resource_at(site: Site, path: bytes):
    return getChildForRequest(site.resource, DummyRequest(path.strip(b"/").split(b"/")))


# -- options --------------------------------------------------------------------


def test_default_listen_is_loopback_port_8080() -> None:
    """With no --listen, the server listens on tcp:8080 on 127.0.0.1 only."""
    assert parse("--no-sources")["listen"] == ["tcp:8080:interface=127.0.0.1"]


def test_listen_is_repeatable_and_replaces_the_default() -> None:
    """Every --listen is kept in order and the default is then not added."""
    options = parse("--no-sources", "--listen", "tcp:0", "--listen", "unix:/tmp/pushpy.sock")
    assert options["listen"] == ["tcp:0", "unix:/tmp/pushpy.sock"]


@pytest.mark.parametrize("description", ["nosuch:8080", "tcp:eighty", "tcp:8080:colour=blue"])
def test_bad_listen_names_the_description_and_an_example(description: str) -> None:
    """A --listen that is no endpoint description is refused, quoting it and showing a valid one."""
    message = usage_error("--listen", description)
    assert repr(description) in message
    assert "tcp:8080:interface=127.0.0.1" in message


def test_config_file_and_set_build_the_config(tmp_path) -> None:
    """--config is read with the Pushlet keys, and --set overrides it key by key."""
    path = tmp_path / "pushlet.properties"
    path.write_text("session.timeout.mins=7\nqueue.size=30\ncontroller.class=nl.justobjects.pushlet.core.Controller\n")
    options = parse("--no-sources", "--config", str(path), "--set", "queue.size=40", "--set", "log.level=2")
    config = options.server_config
    assert (config.session_timeout_mins, config.queue_size, config.log_level) == (7.0, 40, 2)


def test_original_pushlet_properties_is_accepted() -> None:
    """Pushlet 2.0.4's own pushlet.properties is a valid --config."""
    path = Path(__file__).resolve().parents[1] / "data" / "pushlet-2.0.4.properties"
    assert parse("--no-sources", "--config", str(path)).server_config.session_id_generation == "randomstring"


def test_unreadable_config_names_the_file(tmp_path) -> None:
    """A --config that cannot be read is refused with its path."""
    message = usage_error("--config", str(tmp_path / "nope.properties"))
    assert "nope.properties" in message
    assert "cannot read" in message


def test_unknown_key_in_config_file_names_key_and_file(tmp_path) -> None:
    """An unknown key in --config is refused with the key, a suggestion and the file."""
    path = tmp_path / "pushlet.properties"
    path.write_text("queue.sise=30\n")
    message = usage_error("--config", str(path))
    assert "'queue.sise'" in message
    assert "'queue.size'" in message
    assert str(path) in message


def test_bad_value_in_config_file_names_the_key(tmp_path) -> None:
    """A value of the wrong type in --config is refused naming the key."""
    path = tmp_path / "pushlet.properties"
    path.write_text("queue.size=lots\n")
    assert "'queue.size'" in usage_error("--config", str(path))


def test_set_unknown_key_suggests_the_closest() -> None:
    """--set with an unknown key is refused and the closest known key is suggested."""
    message = usage_error("--set", "session.timeout.min=3")
    assert message.startswith("--set")
    assert "did you mean 'session.timeout.mins'" in message


def test_set_without_equals_shows_the_form() -> None:
    """--set without '=' is refused with an example of key=value."""
    assert "key=value" in usage_error("--set", "queue.size")


def test_set_bad_value_names_the_key() -> None:
    """--set with a value that does not fit is refused naming the key."""
    assert "queue.size" in usage_error("--set", "queue.size=1")


@pytest.mark.parametrize(("given", "level"), [("debug", 5), ("WARN", 3), ("6", 6), ("1", 1)])
def test_log_level_takes_names_or_numbers(given: str, level: int) -> None:
    """--log-level sets log.level from a Pushlet level name or number."""
    assert parse("--no-sources", "--log-level", given).server_config.log_level == level


@pytest.mark.parametrize("given", ["loud", "0", "7"])
def test_bad_log_level_lists_the_choices(given: str) -> None:
    """An unknown --log-level is refused, listing the valid names."""
    message = usage_error("--log-level", given)
    assert "debug" in message
    assert "1 to 6" in message


def test_default_sources_are_the_demo_sources() -> None:
    """Without --sources, the six demo sources of spec 11.2 are loaded."""
    options = parse()
    assert [type(s) for s in options.event_sources] == list(samples.DEFAULT_SOURCES)


def test_no_sources_loads_none() -> None:
    """--no-sources runs no event source."""
    assert parse("--no-sources").event_sources == []


def test_sources_file_is_loaded(tmp_path) -> None:
    """--sources reads key=module.ClassName lines."""
    path = tmp_path / "sources.properties"
    path.write_text("ping=pushpy.sources.samples.PingSource\n")
    assert [type(s) for s in parse("--sources", str(path)).event_sources] == [samples.PingSource]


def test_bad_sources_file_is_refused(tmp_path) -> None:
    """A --sources line naming no importable class is refused, naming the option."""
    path = tmp_path / "sources.properties"
    path.write_text("x=no_such_module.Source\n")
    message = usage_error("--sources", str(path))
    assert message.startswith("--sources")
    assert "no_such_module" in message


def test_sources_and_no_sources_exclude_each_other(tmp_path) -> None:
    """--sources with --no-sources is refused."""
    assert "--no-sources" in usage_error("--no-sources", "--sources", str(tmp_path / "s.properties"))


def test_missing_webroot_is_refused(tmp_path) -> None:
    """A --webroot that is not a folder is refused with its path."""
    assert "nowhere" in usage_error("--no-sources", "--webroot", str(tmp_path / "nowhere"))


def test_root_containing_lib_is_refused() -> None:
    """A --root with 'lib' in it is refused (Pushlet clients cut their URL at 'lib')."""
    assert usage_error("--no-sources", "--root", "/library/").startswith("--root")


# -- makeService ----------------------------------------------------------------


def test_make_service_holds_server_then_one_listener_per_listen(tmp_path) -> None:
    """makeService gives a MultiService: the PushServer first, then each --listen serving the site."""
    options = parse("--no-sources", "--set", "queue.size=30", "--listen", "tcp:8123:interface=127.0.0.1",
                    "--listen", f"unix:{tmp_path / 'sock'}")
    top = tap.makeService(options)
    assert isinstance(top, MultiService)
    server, tcp, unix = list(top)
    assert isinstance(server, PushServer)
    assert server.config is options.server_config
    assert server.sources == []
    assert isinstance(tcp.endpoint, TCP4ServerEndpoint)
    assert (tcp.endpoint._port, tcp.endpoint._interface) == (8123, "127.0.0.1")
    assert isinstance(unix.endpoint, UNIXServerEndpoint)
    assert tcp.factory is unix.factory
    assert isinstance(tcp.factory, Site)
    guard = resource_at(tcp.factory, b"/pushlet/pushlet.srv")
    assert isinstance(guard, OriginGuard) and isinstance(guard.resource, PushletResource)


def test_make_service_mounts_at_root_and_webroot(tmp_path) -> None:
    """--root moves pushlet.srv and --webroot is served beside it."""
    (tmp_path / "hello.html").write_text("hi")
    options = parse("--no-sources", "--root", "/push/", "--webroot", str(tmp_path), "--listen", "tcp:0")
    site = list(tap.makeService(options))[1].factory
    assert isinstance(resource_at(site, b"/push/pushlet.srv").resource, PushletResource)
    assert resource_at(site, b"/push/hello.html").path == str(tmp_path / "hello.html")


def test_make_service_gives_server_the_sources() -> None:
    """The loaded sources are handed to the PushServer, which runs them."""
    options = parse("--listen", "tcp:0")
    server = next(iter(tap.makeService(options)))
    assert server.sources == options.event_sources
    assert len(server.sources) == len(samples.DEFAULT_SOURCES)


@pytest_twisted.ensureDeferred
async def test_service_answers_join_and_stops_cleanly() -> None:
    """The built service listens, answers a Pushlet join with a join-ack, and stops."""
    top = tap.makeService(parse("--no-sources", "--listen", "tcp:0:interface=127.0.0.1"))
    top.startService()
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        listener = list(top)[1]
        port = await listener._waitingForPort  # the listening port; no public accessor exists
        url = f"http://127.0.0.1:{port.getHost().port}/pushlet/pushlet.srv?p_event=join&p_format=xml"
        response = await treq.get(url, pool=pool)
        body = await response.text()
        assert response.code == 200
        assert 'p_event="join-ack"' in body
    finally:
        await top.stopService()
        await pool.closeCachedConnections()
    assert not next(iter(top)).running


# -- the plugin -----------------------------------------------------------------


def test_plugin_offers_pushpy() -> None:
    """getPlugins(IServiceMaker) finds the pushpy plugin, which points at pushpy.tap."""
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "pushpy" in makers
    maker = makers["pushpy"]
    assert maker.options is tap.Options
    assert maker.makeService.__module__ == "pushpy.tap"
    assert maker.description

