"""The examples' page scripts: plain ES5 using pushpy.js, nothing from the server run as code or markup."""

from __future__ import annotations

import re

import pytest
from example_support import EXAMPLES
from test_browser_script import _ES2015, _NOISE, _UNSAFE

SCRIPTS = sorted(EXAMPLES.rglob("*.js"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_script_is_plain_es5_and_renders_no_markup(script):
    """An example's page script has no syntax newer than ES5, and no eval, innerHTML or document.write."""
    source = _NOISE.sub(" ", script.read_text(encoding="utf-8"))
    assert [name for name, pattern in _ES2015.items() if re.search(pattern, source)] == []
    assert [name for name, pattern in _UNSAFE.items() if re.search(pattern, source)] == []


def test_every_example_documents_its_start_command():
    """Each example's README names the command that starts its app.py."""
    from example_support import readme_command

    names = sorted(p.parent.name for p in EXAMPLES.glob("*/app.py"))
    assert {"feeds", "notifications"} <= set(names)
    for name in names:
        assert readme_command(name)[:2] == ["python", f"examples/{name}/app.py"]
