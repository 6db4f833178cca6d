"""Each user's notifications, kept by the notifications example.

A notification is a user event on :data:`SUBJECT`: it reaches every session
of the user (tabs, devices) whoever sends it, the application through
:meth:`Inbox.notify` (``PushServer.send_to_user``) or a back end through
pushpy's HTTP publish API (``api/publish`` with a ``user`` target).  The
inbox watches the backplane (``IBackplane.attach``) and keeps every such
event, so unread counts survive a reload and a user who was offline finds
what was sent to them.  Marking read sends :data:`READ_SUBJECT` to the user's
sessions so all of them show the new count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pushpy import Event, Route

#: The subject of a notification event; its fields are ``title``, ``body`` and ``from`` (optional).
SUBJECT = "/notifications"
#: The subject telling a user's sessions their unread count changed (field ``unread``).
READ_SUBJECT = "/notifications/read"
#: Longest title and body kept (characters).
MAX_TITLE, MAX_BODY = 200, 2000


@dataclass(slots=True)
class Notification:
    """One notification of a user."""

    id: str
    title: str
    body: str
    time: float
    sender: str = ""
    read: bool = False


class Inbox:
    """The notifications of every user, newest last, at most ``keep`` per user.

    :param server: the :class:`pushpy.PushServer` whose events it watches.
    """

    def __init__(self, server: Any, *, keep: int = 50) -> None:
        self.server = server
        self.keep = keep
        self._items: dict[str, list[Notification]] = {}
        self._ids = itertools.count(1)
        server.backplane.attach(self.record)

    def record(self, event: Event) -> None:
        """Keep ``event`` if it is a notification to a user."""
        if event.route is not Route.USER or event.subject != SUBJECT or not event.target:
            return
        fields = event.fields
        title = (fields.get("title") or fields.get("body") or "Notification")[:MAX_TITLE]
        items = self._items.setdefault(event.target, [])
        items.append(Notification(id=str(next(self._ids)), title=title,
                                  body=(fields.get("body") or "")[:MAX_BODY],
                                  sender=(fields.get("from") or "")[:MAX_TITLE],
                                  time=self.server.clock.seconds()))
        del items[:-self.keep]

    def notify(self, user: str, title: str, body: str = "", sender: str = "") -> None:
        """Send a notification to every session of ``user`` (kept for later if none is open)."""
        fields = {"title": title, "body": body}
        if sender:
            fields["from"] = sender
        self.server.send_to_user(user, SUBJECT, fields)

    def listing(self, user: str) -> dict[str, Any]:
        """``{"unread": n, "items": [...]}`` for ``user``, newest first."""
        items = self._items.get(user, [])
        return {"unread": self.unread(user), "items": [asdict(n) for n in reversed(items)]}

    def unread(self, user: str) -> int:
        return sum(not n.read for n in self._items.get(user, ()))

    def mark_read(self, user: str, ids: Iterable[str] | None = None) -> int:
        """Mark ``ids`` (every notification for ``None``) read; tell the user's sessions; how many changed."""
        wanted = None if ids is None else set(ids)
        changed = 0
        for notification in self._items.get(user, ()):
            if not notification.read and (wanted is None or notification.id in wanted):
                notification.read = True
                changed += 1
        if changed:
            self.server.send_to_user(user, READ_SUBJECT, {"unread": self.unread(user)})
        return changed
