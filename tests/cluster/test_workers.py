"""``twistd pushpy --workers 2``: one port, two processes, restarts, clean stop (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster_support import (
    REDIS_URL,
    ROOT,
    PushletPullClient,
    free_port,
    http,
    publish,
    unique_prefix,
    wait_until,
)
from redis_keys import delete_prefix


def children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_workers_share_one_port_are_restarted_and_stop_on_sigterm(tmp_path):
    port = free_port()
    prefix = unique_prefix()
    args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon",
            "--pidfile=", "--logfile", str(tmp_path / "parent.log"), "pushpy", "--no-sources",
            "--workers", "2", "--backplane", REDIS_URL, "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--set", f"backplane.prefix={prefix}", "--set", "api.key=cluster-test-key",
            "--set", "queue.read.timeout.millis=1000", "--set", "pull.refresh.wait.max.millis=0",
            "--set", "pull.refresh.wait.min.millis=0", "--set", "stats.interval.secs=0"]
    parent = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(children(parent.pid)) == 2, timeout=20)

        def answers() -> bool:
            try:
                return http(port, "GET", "/pushlet/stats", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout=30)
        client = PushletPullClient(lambda: [port], "/w")
        for i in range(20):
            publish(port, "/w/x", n=str(i))
        wait_until(lambda: len(client.events) >= 20 or client.refresh() is None, timeout=20, step=0)
        assert [int(e["n"]) for e in client.events] == list(range(20))

        first = children(parent.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(parent.pid)) == 2 and victim not in children(parent.pid),
                   timeout=20)
        wait_until(answers, timeout=30)

        workers = children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) in (0, -signal.SIGTERM)  # twistd ends with the signal it got
        assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for pid in children(parent.pid):
            os.kill(pid, signal.SIGKILL)
        delete_prefix(prefix)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_and_backplane_options_are_checked():
    import pytest
    from twisted.python import usage

    from pushpy import tap

    def parse(*argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    options = parse("--backplane", REDIS_URL, "--workers", "3", "--no-sources")
    assert options.server_config.backplane == REDIS_URL and options["workers"] == 3
    assert "--workers" not in options.worker_arguments()
    assert f"backplane={REDIS_URL}" in options.worker_arguments()
    for argv, message in [(("--workers", "2"), "needs a shared backplane"),
                          (("--workers", "many"), "give a number"),
                          (("--workers", "2", "--backplane", REDIS_URL, "--listen", "unix:/tmp/x"),
                           "tcp: listeners only"),
                          (("--backplane", "http://redis"), "--backplane: .*redis://")]:
        with pytest.raises(usage.UsageError, match=message):
            parse(*argv)
