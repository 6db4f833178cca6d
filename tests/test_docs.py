"""The configuration reference (docs/configuration.md) matches pushpy.config.Config key by key."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from pushpy.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `([a-z0-9.]+)` \| `([^`]*)` \| (.+) \|$")


def documented() -> dict[str, tuple[str, str]]:
    """``{key: (default, meaning)}`` of every table row of the reference."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is documented twice"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def shown(value: object) -> str:
    """A default as the reference writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value) or "(empty)"
    if value == "":
        return "(empty)"
    return str(value)


def test_every_config_key_is_documented_with_its_default():
    """Each Config field has a row with its dotted key and its default; no row names an unknown key."""
    rows = documented()
    defaults = {f.name.replace("_", "."): f.default if f.default is not MISSING else f.default_factory()
                for f in fields(Config)}
    assert sorted(set(defaults) - set(rows)) == [], "document these keys in docs/configuration.md"
    assert sorted(set(rows) - set(defaults)) == [], "these documented keys do not exist in Config"
    wrong = {key: (rows[key][0], shown(value)) for key, value in defaults.items()
             if rows[key][0] != shown(value)}
    assert wrong == {}, "documented default != Config default"
    assert all(len(meaning.strip()) > 10 for _, meaning in rows.values())
