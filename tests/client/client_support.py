"""Helpers of the client tests: the ``pushpy`` command line in a subprocess.

Servers come from the ``pushpy_server`` fixture (:mod:`server_support`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

# -- the command line -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment of a ``python -m pushpy`` subprocess: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class CLIProcess(ProcessProtocol):
    """``python -m pushpy ARGS`` running, its output collected."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred = Deferred()
        self.code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.code = reason.value.exitCode
        self.ended.callback(self)

    @property
    def lines(self) -> list[str]:
        return self.out.decode().splitlines()


def spawn_cli(*args: str) -> CLIProcess:
    """Start ``python -m pushpy ARGS`` (on this reactor: the test's server keeps serving)."""
    process = CLIProcess()
    reactor.spawnProcess(process, sys.executable, [sys.executable, "-m", "pushpy", *args],
                         env=cli_env(), path=str(ROOT))
    return process


async def run_cli(*args: str, timeout: float = 20.0) -> CLIProcess:
    """Run ``python -m pushpy ARGS`` to its end."""
    process = spawn_cli(*args)
    await process.ended.addTimeout(timeout, reactor)
    return process
