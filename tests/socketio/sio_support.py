"""Helpers of the Socket.IO tests: the ``serve.py`` subprocess and its hooks."""

from __future__ import annotations

import json
import shutil
import subprocess
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


def ensure_js() -> Path:
    """``js/`` with ``node_modules`` installed (``npm ci`` from the lock file when missing)."""
    if not (JS / "node_modules" / "socket.io-client").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is missing: Node 20 and npm are needed for the Socket.IO tests")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
    return JS


def scenario(js: Path, name: str, origin: str) -> dict[str, Any]:
    """Run one scenario of ``js/scenarios.js`` against ``origin``; what the client saw."""
    node = shutil.which("node")
    assert node, "node (20) is needed"
    done = subprocess.run([node, str(js / "scenarios.js"), name, origin], capture_output=True,
                          text=True, timeout=60, cwd=js)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"{name}: {done.stdout}\n{done.stderr}"
    return json.loads(lines[-1])
