"""The ``pushpy`` command run as a subprocess against a real server on loopback."""

from __future__ import annotations

import configparser
import json

import pytest_twisted
from client_support import ROOT, run_cli, spawn_cli
from server_support import eventually
from twisted.internet import reactor

from pushpy.client import cli


@pytest_twisted.ensureDeferred
async def test_publish_prints_the_event_id_and_subscribers_get_it(pushpy_server):
    """``pushpy publish SUBJECT key=value ...`` publishes the fields and prints the event's id."""
    server = pushpy_server()
    got = []
    listener = server.client()
    listener.subscribe("/chat", got.append)
    await listener.connect()
    process = await run_cli("--url", server.url, "publish", "/chat", "text=hello world", "expr=a=b")
    assert process.code == 0, process.err
    assert process.lines == [server.push.backplane.position]
    await eventually(lambda: got)
    assert got[0].fields["text"] == "hello world" and got[0].fields["expr"] == "a=b"


@pytest_twisted.ensureDeferred
async def test_listen_prints_json_lines_until_count(pushpy_server):
    """``pushpy listen SUBJECT --count N`` prints one JSON object per event and exits after N."""
    server = pushpy_server()
    process = spawn_cli("--url", server.url, "--transport", "sse", "listen", "/a", "/b", "--count", "2")
    dispatcher = server.push.dispatcher
    await eventually(lambda: any(s.channels and s.subscriptions for s in dispatcher.sessions.values()),
                     timeout=15)
    first = server.push.publish("/a/1", {"text": "un"}).position
    server.push.publish("/c", {"text": "not asked"})
    second = server.push.publish("/b", {"text": "deux"}).position
    await process.ended.addTimeout(15, reactor)
    assert process.code == 0, process.err
    lines = [json.loads(line) for line in process.lines]
    assert [(e["subject"], e["id"], e["fields"]["text"]) for e in lines] == [
        ("/a/1", first, "un"), ("/b", second, "deux")]


@pytest_twisted.ensureDeferred
async def test_stats_prints_the_server_stats(pushpy_server):
    """``pushpy stats`` prints the JSON of ``<root>stats``."""
    server = pushpy_server()
    server.push.publish("/x", {"n": "1"})
    process = await run_cli("--url", server.url, "stats")
    assert process.code == 0, process.err
    stats = json.loads(process.out)
    assert stats["events"]["published"] == 1 and "sessions" in stats


@pytest_twisted.ensureDeferred
async def test_refused_publish_exits_1_with_the_reason(pushpy_server):
    """A publish the server refuses exits with status 1 and says why."""
    server = pushpy_server()
    process = await run_cli("--url", server.url, "publish", "/x", "bad name=1")
    assert process.code == 1
    assert b"publish refused: invalid field name" in process.err


@pytest_twisted.ensureDeferred
async def test_unreachable_server_exits_1():
    """Without a server the command gives up after --timeout with status 1 and the reason."""
    url = "http://127.0.0.1:9/pushlet/"
    process = await run_cli("--url", url, "--timeout", "0.5", "publish", "/x", "a=1")
    assert process.code == 1
    assert b"cannot connect to http://127.0.0.1:9/pushlet/" in process.err


@pytest_twisted.ensureDeferred
async def test_usage_errors_exit_2():
    """A field without '=' is a usage error (status 2)."""
    process = await run_cli("publish", "/x", "novalue")
    assert process.code == 2
    assert b"expected KEY=VALUE, not 'novalue'" in process.err


def test_console_script_is_declared():
    """setup.cfg installs a ``pushpy`` console script running the CLI's main()."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"].strip().splitlines()
    assert "pushpy = pushpy.client.cli:main" in scripts
    assert callable(cli.main)


def test_fields_parse_key_value_pairs():
    """KEY=VALUE arguments become fields; the value keeps later '=' signs and may be empty."""
    assert cli.parse_fields(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
