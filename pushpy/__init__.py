"""pushpy: a Comet (HTTP server-push) framework for Twisted, wire-compatible with Pushlet 2.0.4."""

from pushpy.config import Config, load_config
from pushpy.core.events import Event, Route
from pushpy.errors import ClientError, PushpyError, UsageError
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
