"""The Python client of pushpy (Twisted), and the ``pushpy`` command built on it.

See :class:`~pushpy.client.client.Client`; ``pushpy --help`` for the command.
"""

from __future__ import annotations

from pushpy.client.client import DEFAULT_URL, Client, ClientEvent, Refused

__all__ = ["DEFAULT_URL", "Client", "ClientEvent", "Refused"]
