"""The sans-IO rule: the core, the wire codecs and the config loader never import Twisted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _sans_io_modules() -> list[str]:
    files = [*sorted((REPO / "pushpy" / "core").glob("*.py")),
             *sorted((REPO / "pushpy" / "wire").glob("*.py")),
             REPO / "pushpy" / "config.py"]
    names = []
    for path in files:
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _sans_io_modules()

PROBE = """\
import importlib, sys
importlib.import_module(sys.argv[1])
print(" ".join(sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted."))))
"""


def test_module_list_covers_core_and_wire() -> None:
    """The probe list holds the core, the codecs and the config loader: the test below is never empty."""
    expected = {"pushpy.core.dispatcher", "pushpy.core.events", "pushpy.wire.pushlet", "pushpy.config"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_without_twisted(module: str) -> None:
    """Importing the module in a fresh interpreter leaves ``twisted`` out of ``sys.modules``."""
    result = subprocess.run([sys.executable, "-c", PROBE, module], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"
