"""A test server script (``serve.py``) in a subprocess: started, its ready line read, stopped.

The script prints one JSON line (its ports) once it listens; the checkout is put first on its path.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def start_script(script: Path, *args: str, timeout: float = 30.0) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Run ``python script ARGS`` from the checkout; the process and its ready line's JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, str(script), *args],
                               stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        stop_process(process)
        raise RuntimeError(f"{script.name} did not start")
    return process, json.loads(line)


def stop_process(process: subprocess.Popen) -> None:
    """Terminate ``process`` (kill it after 10 s) and close its output."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()
