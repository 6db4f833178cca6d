"""Packaging: setup.cfg lists every package, the twistd plugin stays cheap, the web root is found."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

from pushpy.web.site import find_webroot

REPO = Path(__file__).resolve().parents[1]


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    return parser


def test_setup_cfg_lists_every_package_folder() -> None:
    """Each folder of pushpy/ with an __init__.py is listed in setup.cfg, plus the plugin and web root."""
    listed = set(_setup_cfg()["options"]["packages"].split())
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "pushpy").rglob("__init__.py")}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
    assert {"twisted.plugins", "pushpy._webroot"} <= listed
    assert not {name for name in listed - found - {"twisted.plugins", "pushpy._webroot"}}


def test_web_root_ships_recursively() -> None:
    """setup.cfg maps webroot/ to pushpy._webroot and ships every file below it."""
    cfg = _setup_cfg()
    assert cfg["options"]["package_dir"].split() == ["pushpy._webroot", "=", "webroot"]
    assert cfg["options.package_data"]["pushpy._webroot"].strip() == "**/*"


def test_plugin_folder_has_no_init_and_plugin_imports_no_pushpy() -> None:
    """twisted/plugins has no __init__.py; the plugin imports only Twisted (pushpy.tap loads on use)."""
    assert not (REPO / "twisted" / "__init__.py").exists()
    assert not (REPO / "twisted" / "plugins" / "__init__.py").exists()
    tree = ast.parse((REPO / "twisted" / "plugins" / "pushpy_plugin.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert imported == {"twisted.application.service"}


def test_find_webroot_prefers_installed_copy(tmp_path) -> None:
    """An installed pushpy serves pushpy/_webroot; a checkout serves the webroot/ beside the package."""
    package = tmp_path / "pushpy"
    package.mkdir()
    assert find_webroot(package) == tmp_path / "webroot"
    (package / "_webroot").mkdir()
    assert find_webroot(package) == package / "_webroot"


def test_checkout_serves_repository_webroot() -> None:
    """In this checkout the default web root is the repository's webroot/ folder."""
    assert find_webroot() == REPO / "webroot"
