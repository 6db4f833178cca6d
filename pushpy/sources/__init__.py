"""Event sources: feeds that publish from inside the server (spec 11).

:class:`PullSource` is the base of timer-driven sources; :mod:`pushpy.sources.samples`
holds the Pushlet demo sources; :func:`load_sources` reads ``sources.properties``.
See :mod:`pushpy.sources.base` for publishing from your own code and threads.
"""

from pushpy.sources.base import PullSource
from pushpy.sources.loader import load_sources

__all__ = ["PullSource", "load_sources"]
