"""Helpers of the Socket.IO tests: the ``serve.py`` subprocess and its hooks."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from script_server import start_script, stop_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
JS = HERE / "js"


class SioServer:
    """``serve.py`` in a subprocess with the given config settings."""

    def __init__(self, *settings: str) -> None:
        self.process, info = start_script(HERE / "serve.py", *settings)
        self.origin = f"http://127.0.0.1:{info['port']}"

    def hook(self, name: str, body: Any = None, sid: str = "") -> Any:
        url = f"{self.origin}/test/{name}" + (f"?sid={sid}" if sid else "")
        request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        stop_process(self.process)
