"""Reading ``sources.properties`` (spec 10.2).

Each line is ``<any key>=<class>``: a Python ``module.ClassName`` (or
``module:ClassName``) whose no-argument call gives an
:class:`~pushpy.interfaces.IEventSource`.  The Java class names of Pushlet's
sample sources map to :mod:`pushpy.sources.samples`, so an original file
works as is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pushpy.config import parse_properties
from pushpy.errors import UsageError
from pushpy.interfaces import IEventSource
from pushpy.sources import samples

_JAVA_PREFIX = "nl.justobjects.pushlet.test.TestEventPullSources$"

#: Pushlet's Java class names and the pushpy classes that replace them.
JAVA_CLASSES: dict[str, type] = {
    _JAVA_PREFIX + "TemperatureEventPullSource": samples.TemperatureSource,
    _JAVA_PREFIX + "SystemStatusEventPullSource": samples.SystemStatusSource,
    _JAVA_PREFIX + "PushletStatusEventPullSource": samples.PushletStatusSource,
    _JAVA_PREFIX + "AEXStocksEventPullSource": samples.AEXStocksSource,
    _JAVA_PREFIX + "WebPresentationEventPullSource": samples.WebPresentationSource,
    _JAVA_PREFIX + "PingEventPullSource": samples.PingSource,
    _JAVA_PREFIX + "TestEventPullSource": samples.TestSource,
}


def load_sources(path: str | Path | None) -> list[IEventSource]:
    """New event sources: the six demo sources for ``None``, else those of the file.

    :raises UsageError: the file cannot be read, or a line names a class that
        cannot be imported, built, or is no event source (the message names the line).
    """
    if path is None:
        return [cls() for cls in samples.DEFAULT_SOURCES]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = Path(path).read_text(encoding="latin-1")
    except OSError as e:
        raise UsageError(f"cannot read sources file {path}: {e.strerror}") from e
    return [_build(path, key, name.strip()) for key, name in parse_properties(text).items()]


def _build(path: str | Path, key: str, name: str) -> IEventSource:
    where = f"sources file {path}, line {key}={name}"
    cls = JAVA_CLASSES.get(name) or _import(name, where)
    try:
        source = cls()
    except Exception as e:
        raise UsageError(f"{where}: cannot create the source: {e!r}") from e
    if not IEventSource.providedBy(source):
        raise UsageError(f"{where}: {name} is not an event source (it must provide IEventSource)")
    return source


def _import(name: str, where: str) -> type:
    if name.startswith("nl.justobjects."):
        raise UsageError(f"{where}: a Pushlet Java class with no pushpy equivalent")
    module_name, sep, attribute = name.rpartition(":") if ":" in name else name.rpartition(".")
    if not sep or not module_name or not attribute:
        raise UsageError(f"{where}: expected module.ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or whatever the module raises on import
        raise UsageError(f"{where}: cannot import {module_name}: {e!r}") from e
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UsageError(f"{where}: {module_name} has no {attribute}") from None
