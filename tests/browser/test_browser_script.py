"""The source of webroot/lib/pushpy.js: plain ES5, and no way to run data as code or markup."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "webroot" / "lib" / "pushpy.js"

#: Comments and string literals, removed before looking at the code.
_NOISE = re.compile(r"/\*.*?\*/|//[^\n]*|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"", re.S)
_ES2015 = {
    "arrow function": r"=>",
    "let": r"\blet\s",
    "const": r"\bconst\s",
    "template literal": r"`",
    "class": r"\bclass\s",
    "spread or rest": r"\.\.\.",
    "for-of": r"\bfor\s*\([^;)]*\bof\b",
    "default parameter": r"function\s*\w*\s*\([^)]*=",
}
_UNSAFE = {"eval": r"\beval\s*\(", "Function constructor": r"\bFunction\s*\(",
           "innerHTML": r"innerHTML|outerHTML|insertAdjacentHTML", "document.write": r"document\.write"}


def code() -> str:
    return _NOISE.sub(" ", SCRIPT.read_text(encoding="utf-8"))


def test_script_is_plain_es5():
    """pushpy.js uses no syntax newer than ES5, so it loads in old browsers without a build step."""
    source = code()
    found = [name for name, pattern in _ES2015.items() if re.search(pattern, source)]
    assert found == []
    assert source.count("'use strict'") == 0 and "'use strict'" in SCRIPT.read_text()


def test_script_never_evaluates_or_renders_data():
    """pushpy.js has no eval, Function constructor, innerHTML or document.write."""
    source = code()
    assert [name for name, pattern in _UNSAFE.items() if re.search(pattern, source)] == []
