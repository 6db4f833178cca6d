"""pushpy: a Comet (HTTP server-push) framework for Twisted, wire-compatible with Pushlet 2.0.4.

:class:`PushServer` is imported on first use, so importing ``pushpy.core``,
``pushpy.wire`` or ``pushpy.config`` never loads Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushpy.config import Config, load_config
from pushpy.core.events import Event, Route
from pushpy.errors import ClientError, PushpyError, UsageError

if TYPE_CHECKING:
    from pushpy.server import PushServer

__all__ = [
    "ClientError",
    "Config",
    "Event",
    "PushServer",
    "PushpyError",
    "Route",
    "UsageError",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name == "PushServer":
        from pushpy.server import PushServer

        return PushServer
    raise AttributeError(f"module 'pushpy' has no attribute {name!r}")
