"""Running an example app (``examples/<name>/``) for the end-to-end tests, as its README says.

:class:`ExampleApp` starts ``examples/<name>/app.py`` in a subprocess with the
command its ``README.md`` documents (the first line of a code block starting
``python examples/<name>/``), its ``--port`` replaced by a free port and any
extra arguments appended, and waits until it answers HTTP.  So the README
command is what the tests run.  :func:`wait_for` waits on a page condition and
fails with what the page shows.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLES = ROOT / "examples"

from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ExampleApp", "readme_command", "wait_for"]


def readme_command(name: str) -> list[str]:
    """The start command ``examples/<name>/README.md`` documents, as arguments (``python`` first).

    :raises AssertionError: the README has no line ``python examples/<name>/...`` in a code block.
    """
    readme = EXAMPLES / name / "README.md"
    in_code = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("```"):
            in_code = not in_code
        elif in_code and text.startswith(f"python examples/{name}/"):
            return shlex.split(text)
    raise AssertionError(f"{readme} documents no start command 'python examples/{name}/...' in a code block")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_port(command: list[str], port: int) -> list[str]:
    """``command`` with the value of its ``--port`` (or ``--port=N``) replaced, or one added."""
    out, replaced, skip = [], False, False
    for i, arg in enumerate(command):
        if skip:
            skip = False
            continue
        if arg == "--port" and i + 1 < len(command):
            out += ["--port", str(port)]
            replaced = skip = True
        elif arg.startswith("--port="):
            out.append(f"--port={port}")
            replaced = True
        else:
            out.append(arg)
    return out if replaced else [*out, "--port", str(port)]


class ExampleApp:
    """``examples/<name>/app.py`` running in a subprocess on a free loopback port.

    :param name: the example's folder name.
    :param extra: arguments appended to the README command (e.g. ``"--speed", "10"``).
    :param ready_path: the path polled until it answers (any status below 500).
    :param timeout: seconds to wait for it.

    ``origin`` is ``http://127.0.0.1:<port>``; :meth:`url` makes a page URL,
    :meth:`request` makes HTTP calls; :attr:`output` is what the app printed so far.
    """

    def __init__(self, name: str, *extra: str, ready_path: str = "/", timeout: float = 30.0) -> None:
        self.name = name
        self.ready_path = ready_path
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.process: subprocess.Popen[str] | None = None
        for _attempt in range(3):  # another process may take the free port before the app binds it
            self.port = free_port()
            self.origin = f"http://127.0.0.1:{self.port}"
            self.command = [*with_port(readme_command(name), self.port), *extra]
            if self._start(timeout):
                return
        raise RuntimeError(f"{name} did not start: {self.command}\n{self.output}")

    def _start(self, timeout: float) -> bool:
        command = [sys.executable if self.command[0] in ("python", "python3") else self.command[0],
                   *self.command[1:]]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(command, cwd=str(ROOT), env=env, text=True,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url(self.ready_path), timeout=5):
                    return True
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        output = self.output
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s: {self.command}\n{output}")

    @property
    def output(self) -> str:
        """Everything the app wrote to stdout and stderr so far (empty once stopped)."""
        if self.log.closed:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on the app."""
        return self.origin + path

    def request(self, path: str, body: Any = None, *, method: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """An HTTP call; ``body`` is sent as JSON (POST by default).  ``(status, parsed JSON or text)``."""
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        sent.update(headers or {})
        request = urllib.request.Request(self.url(path), data=data, headers=sent,
                                         method=method or ("POST" if data is not None else "GET"))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def stop(self) -> None:
        """Terminate the app (kill it after 10 s) and close its log."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_for(page: Any, expression: str, arg: Any = None, timeout: float = 15_000) -> Any:
    """Wait until ``expression`` (a JS function of ``arg``) returns a truthy value; return that value.

    On timeout, fail with the expression and the start of the page's text.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(expression, arg=arg, timeout=timeout).json_value()
    except PlaywrightTimeout:
        shown = page.evaluate("() => document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise AssertionError(f"timed out waiting for {expression} {arg!r} on {page.url}; "
                             f"the page shows:\n{shown}") from None
