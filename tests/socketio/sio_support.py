"""Helpers of the Socket.IO tests: the ``serve.py`` subprocess and its hooks."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
JS = HERE / "js"


class SioServer:
    """``serve.py`` in a subprocess with the given config settings."""

    def __init__(self, *settings: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, str(HERE / "serve.py"), *settings],
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError("serve.py did not start")
        self.origin = f"http://127.0.0.1:{json.loads(line)['port']}"

    def hook(self, name: str, body: Any = None, sid: str = "") -> Any:
        url = f"{self.origin}/test/{name}" + (f"?sid={sid}" if sid else "")
        request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
