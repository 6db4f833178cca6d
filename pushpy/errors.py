"""One error family for pushpy.

:class:`ClientError` means the peer sent something we refuse; it carries the
HTTP status to answer with (when the refusal is an HTTP error) and the reason
text that goes into a ``nack``.  :class:`UsageError` means local code called
pushpy wrongly.  The web layer maps these; the core never formats HTTP.
"""

from __future__ import annotations


class PushpyError(Exception):
    """Base of every error pushpy raises on purpose."""


class ClientError(PushpyError):
    """The client's request is refused.

    :param reason: human-readable text, sent as ``p_reason`` or in the error page.
    :param status: HTTP status to answer with, or ``None`` when the refusal is
        a ``nack`` inside an ordinary 200 response.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BackplaneUnavailable(PushpyError):
    """The backplane cannot be reached now: a known, temporary state (it reconnects by itself)."""


class UsageError(PushpyError, ValueError):
    """Local code misused the API (bad argument, bad configuration)."""
