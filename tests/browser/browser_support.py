"""Helpers of the browser tests: the ``serve.py`` subprocess and a test page wrapper."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from script_server import start_script, stop_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Fast timings for the server under test: a heartbeat every second, so a client notices a dead
#: stream that the browser does not report (a cut iframe stays "loading") within 4 s.
SERVER_SETTINGS = ["queue.read.timeout.millis=1000", "session.check.millis=200"]


class Server:
    """``serve.py`` in a subprocess, and its test hooks."""

    def __init__(self, *args: str) -> None:
        self.process, info = start_script(HERE / "serve.py", *args, timeout=20)
        self.origin = f"http://127.0.0.1:{info['port']}"
        self.proxy = f"http://127.0.0.1:{info['proxy']}" if info["proxy"] else None
        self.page_url = self.origin + "/test/page.html"

    def hook(self, name: str, body: Any = None, session: str = "") -> Any:
        url = f"{self.origin}/test/{name}" + (f"?session={session}" if session else "")
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def publish(self, subject: str, fields: dict[str, str] | None = None, *,
                numbers: tuple[int, int] | None = None) -> list[str]:
        """``server.publish`` in the server process; the new events' ids."""
        body: dict[str, Any] = {"subject": subject, "fields": fields or {}}
        if numbers:
            body["numbers"] = list(numbers)
        return self.hook("publish", body)

    def drop(self, session: str) -> int:
        """Abort the TCP connections of ``session``'s channels; how many there were."""
        return self.hook("drop", session=session)

    def end(self, session: str) -> bool:
        """End ``session`` on the server (its client is told ``close``)."""
        return self.hook("end", session=session)

    def revoke(self, session: str, subject: str | None = None) -> str:
        """``unsubscribe(subject, session=...)`` in the server, or ``disconnect`` without a subject."""
        return self.hook("revoke", {"subject": subject}, session=session)

    def subscriptions(self, session: str) -> list[str]:
        """The subjects of ``session``'s subscriptions on the server."""
        return self.hook("subscriptions", session=session)

    def stop(self) -> None:
        stop_process(self.process)


class Page:
    """A test page with ``pushpy.js`` and ``harness.js`` loaded, and what it saw."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.dialogs: list[str] = []
        page.on("dialog", self._dialog)
        page.goto(url)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def start(self, subjects: list[str], **options: Any) -> int:
        """Connect a client subscribed to ``subjects``; its index."""
        return self.page.evaluate("([options, subjects]) => H.start(options, subjects)",
                                  [options, subjects])

    def open(self, subjects: list[str], **options: Any) -> int:
        """Like :meth:`start`, and wait until the client is open."""
        index = self.start(subjects, **options)
        self.wait_opens(index, 1)
        return index

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait(self, expression: str, arg: Any = None, timeout: float = 10_000) -> Any:
        """Wait until ``expression`` (a JS function of ``arg``) is truthy."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            return self.page.wait_for_function(expression, arg=arg, timeout=timeout).json_value()
        except PlaywrightTimeout:
            states = self.js("() => H.clients.map((c, i) => H.state(i))")
            raise AssertionError(f"timed out waiting for {expression} {arg!r}; clients: {states}") from None

    def state(self, index: int) -> dict[str, Any]:
        return self.js("i => H.state(i)", index)

    def wait_opens(self, index: int, count: int, timeout: float = 10_000) -> None:
        self.wait("([i, n]) => H.clients[i].opens.length >= n", [index, count], timeout)

    def wait_received(self, index: int, count: int, timeout: float = 10_000) -> None:
        self.wait("([i, n]) => H.clients[i].got.length >= n", [index, count], timeout)

    def got(self, index: int) -> list[dict[str, Any]]:
        return self.js("i => H.clients[i].got.map(e => ({subject: e.subject, id: e.id, fields: e.fields}))",
                       index)

    def numbers(self, index: int, prefix: str) -> list[int]:
        return self.js("([i, p]) => H.numbers(i, p)", [index, prefix])

    def publish(self, index: int, subject: str, fields: dict[str, Any],
                to: str | None = None) -> tuple[str | None, dict]:
        """Publish from the page (to one session with ``to``); ``(error, ack)``."""
        error, ack = self.js("([i, s, f, t]) => H.publish(i, s, f, t)", [index, subject, fields, to])
        return error, ack
